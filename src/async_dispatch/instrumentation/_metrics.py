"""The library's metrics, one row each: what `PrometheusHook` and `OpenTelemetryHook` record.

Both hooks are built from `METRICS`, so a metric means the same in both, with the same
label, the same closed set of label values and the same buckets; only the spelling of
the names differs, and that by a fixed rule (`Metric.prometheus_name`,
`Metric.otel_name`). Adding a metric is adding a row here.

A row says which events move the metric and by how much (`Metric.updates`), and which
field of the event gives its one label (`Label`). `MetricHook`, the base of both hooks,
turns the table into a plan when the hook is built, with every series made in advance,
so an event costs a few dict lookups and the calls that record it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any, Final

import attrs

from .._outcome import OutcomeKind
from ._buckets import DETECTION_DELAY_BUCKETS, REQUEST_DURATION_BUCKETS, TOKEN_WAIT_BUCKETS
from ._events import (
    CHECK_RESULTS,
    OTHER,
    RATE_LIMIT_SOURCES,
    RESOLVED_VIA,
    SUBMIT_RESULTS,
    WEBHOOK_REASONS,
    CheckDone,
    Event,
    RateLimitPaused,
    SubmitDone,
    TaskForgotten,
    TaskResolved,
    TaskRetrying,
    TaskTracked,
    TokenWaited,
    WebhookAnswered,
)

__all__ = ["METRICS", "Kind", "Label", "Metric", "MetricHook", "Series"]

#: How much one event moves a metric: a number (1 for a count, -1 for a gauge going
#: down), the name of the event's field that holds it (``"latency"``), or a function of
#: the event. A field or function giving None means this event does not move it (a
#: resolve without a detection delay, say).
Amount = float | str | Callable[[Any], "float | None"]
#: How a hook moves one series of one metric: a function called with the amount and,
#: unless it is None, the second item (OpenTelemetry's attributes, say). A Prometheus
#: child's own ``inc`` needs no second item; an OpenTelemetry instrument's ``add`` is
#: shared by its series and told which by their attributes.
Series = tuple[Callable[..., None], Any]
#: One series moved by one event: the amount if constant, else how to read it from the
#: event; and the series (`Series`).
_Move = tuple["float | None", "Callable[[Any], float | None] | None", Callable[..., None], Any]
#: The moves of one event type that share a label: how to read the label's value (None:
#: no label), the moves by value, and the moves for a value outside the label's set (for
#: no label, the only moves).
_Group = tuple[
    "Callable[[Any], str] | None", Mapping["str | None", tuple[_Move, ...]], tuple[_Move, ...]
]


class Kind(enum.Enum):
    """What sort of instrument a metric is."""

    #: Only goes up (Prometheus ``Counter``, OpenTelemetry ``Counter``).
    COUNTER = "counter"
    #: A distribution of observed values, in `Metric.buckets` (``Histogram`` in both).
    HISTOGRAM = "histogram"
    #: Goes up and down by the amounts added (Prometheus ``Gauge``, OpenTelemetry
    #: ``UpDownCounter``): a count of things that exist now.
    GAUGE = "gauge"


@attrs.frozen
class Label:
    """A metric's one label (an OpenTelemetry attribute), read from a field of the event.

    Its values are a closed set: any other value is counted as ``"other"``, so no event
    can add a series (see `async_dispatch.instrumentation`'s events).
    """

    #: The label's name, as exported.
    name: str
    #: Every value it may take, ``"other"`` aside.
    values: tuple[str, ...]
    #: Reads the label's value from an event; `operator.attrgetter` of the field by default.
    read: Callable[[Any], str]

    @classmethod
    def of(cls, name: str, values: tuple[str, ...], field: str | None = None) -> Label:
        """The label ``name``, read from the event field ``field`` (dotted; ``name`` itself
        by default)."""
        return cls(name, values, attrgetter(name if field is None else field))

    @property
    def every_value(self) -> tuple[str, ...]:
        """Every value a series is made for: the closed set, then ``"other"``."""
        return (*self.values, OTHER)


@attrs.frozen
class Metric:
    """One metric: what it is called, what it counts, and which events move it."""

    #: The name, without a namespace, in OpenTelemetry's spelling: words joined by ``_``,
    #: the parts of a compound name by ``.``, no unit (``check.duration``).
    name: str
    kind: Kind
    #: One sentence: the Prometheus ``HELP`` text and the OpenTelemetry description.
    description: str
    #: ``s`` for seconds, or a UCUM annotation in braces for a count (``{check}``).
    unit: str
    #: The events that move the metric, each with how much it moves it.
    updates: Mapping[type[Event], Amount]
    #: The metric's one label; None for a metric with one series.
    label: Label | None = None
    #: Bucket boundaries, in seconds, for a histogram.
    buckets: tuple[float, ...] = ()

    @property
    def otel_name(self) -> str:
        """``async_dispatch.check.duration``: the name under the library's scope."""
        return f"async_dispatch.{self.name}"

    @property
    def prometheus_name(self) -> str:
        """``check_duration_seconds``: the name under a namespace, the unit in the name
        (``prometheus_client`` adds ``_total`` to a counter's samples itself)."""
        name = self.name.replace(".", "_")
        return f"{name}_seconds" if self.unit == "s" else name


def _minus_one_if_final(event: TaskResolved) -> float | None:
    # An INPUT_REQUIRED notification leaves its task tracked.
    return -1 if event.final else None


_CHECK_RESULT: Final = Label.of("result", CHECK_RESULTS)
_SUBMIT_RESULT: Final = Label.of("result", SUBMIT_RESULTS)

#: Every metric of the library, in the order of ``docs/instrumentation.md``.
METRICS: Final[tuple[Metric, ...]] = (
    Metric(
        "checks",
        Kind.COUNTER,
        "Status checks, by what they learned.",
        "{check}",
        {CheckDone: 1},
        _CHECK_RESULT,
    ),
    Metric(
        "check.duration",
        Kind.HISTOGRAM,
        "Time a status check took, retries included, by result.",
        "s",
        {CheckDone: "latency"},
        _CHECK_RESULT,
        REQUEST_DURATION_BUCKETS,
    ),
    Metric(
        "submits",
        Kind.COUNTER,
        "Submits, by result.",
        "{submit}",
        {SubmitDone: 1},
        _SUBMIT_RESULT,
    ),
    Metric(
        "submit.duration",
        Kind.HISTOGRAM,
        "Time a submit took, by result.",
        "s",
        {SubmitDone: "latency"},
        _SUBMIT_RESULT,
        REQUEST_DURATION_BUCKETS,
    ),
    Metric(
        "outcomes",
        Kind.COUNTER,
        "Outcomes yielded, by kind.",
        "{outcome}",
        {TaskResolved: 1},
        Label.of("kind", tuple(kind.value for kind in OutcomeKind), field="kind.value"),
    ),
    Metric(
        "resubmissions",
        Kind.COUNTER,
        "Failed attempts the ResubmitPolicy resubmits, by how they ended.",
        "{resubmission}",
        {TaskRetrying: 1},
        Label.of("kind", ("error", "failed"), field="kind.value"),
    ),
    Metric(
        "detection_delay",
        Kind.HISTOGRAM,
        "Time from a task's completedAt to our noticing it, by how we did.",
        "s",
        {TaskResolved: "detection_delay"},
        Label.of("via", RESOLVED_VIA),
        DETECTION_DELAY_BUCKETS,
    ),
    Metric(
        "tracked_tasks",
        Kind.GAUGE,
        "Tasks being tracked now.",
        "{task}",
        {TaskTracked: 1, TaskResolved: _minus_one_if_final, TaskForgotten: -1},
    ),
    Metric(
        "rate_limit_pauses",
        Kind.COUNTER,
        "Shared pauses caused by rate-limited answers, by whose request drew them.",
        "{pause}",
        {RateLimitPaused: 1},
        Label.of("source", RATE_LIMIT_SOURCES),
    ),
    Metric(
        "token_wait",
        Kind.HISTOGRAM,
        "Time one acquirer waited for a rate-limit token (waits only).",
        "s",
        {TokenWaited: "seconds"},
        buckets=TOKEN_WAIT_BUCKETS,
    ),
    Metric(
        "webhook_answers",
        Kind.COUNTER,
        "Webhook deliveries answered, by reason.",
        "{answer}",
        {WebhookAnswered: 1},
        Label.of("reason", WEBHOOK_REASONS),
    ),
)


class MetricHook:
    """The part of a metrics hook that reads `METRICS`: calling it with an event updates
    every metric the event moves. `PrometheusHook` and `OpenTelemetryHook` are this plus
    a way to make each series (`Series`).

    The table is turned into a plan once, when the hook is built: per event type, the
    labels it is counted by, each read once per event, and per label value the series to
    move with their amounts, all made in advance. An event then costs a dict lookup, one
    field read and one dict lookup per label, and one call per series, in this one frame.
    """

    __slots__ = ("_plan",)

    def __init__(self, series: Callable[[Metric], Mapping[str | None, Series]]) -> None:
        """``series(metric)`` makes the `Series` of each value of ``metric``'s label
        (`Label.every_value`), or the one series under None for a metric without one."""
        # event type -> label (None: unlabelled) -> label value -> moves
        plan: dict[type[Event], dict[Label | None, dict[str | None, list[_Move]]]] = {}
        for metric in METRICS:
            by_value = series(metric)
            for event_type, amount in metric.updates.items():
                if isinstance(amount, (int, float)):
                    constant, of = float(amount), None
                else:
                    constant, of = None, attrgetter(amount) if isinstance(amount, str) else amount
                moves = plan.setdefault(event_type, {}).setdefault(metric.label, {})
                for value, (record, where) in by_value.items():
                    moves.setdefault(value, []).append((constant, of, record, where))
        self._plan: Mapping[type[Event], tuple[_Group, ...]] = {
            event_type: tuple(_group(label, moves) for label, moves in labels.items())
            for event_type, labels in plan.items()
        }

    def __call__(self, event: Event) -> None:
        for read, by_value, other in self._plan.get(type(event), ()):
            moves = other if read is None else by_value.get(read(event), other)
            for constant, of, record, where in moves:
                amount = constant if of is None else of(event)
                if amount is None:
                    continue
                if where is None:
                    record(amount)
                else:
                    record(amount, where)


def _group(label: Label | None, moves: Mapping[str | None, list[_Move]]) -> _Group:
    if label is None:
        return None, {}, tuple(moves[None])
    return label.read, {value: tuple(m) for value, m in moves.items()}, tuple(moves[OTHER])
