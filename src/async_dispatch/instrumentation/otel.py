"""`OpenTelemetryHook`: the library's metrics and spans through the OpenTelemetry API.

Needs the ``otel`` extra (``pip install 'async-remote-dispatch[otel]'``): the API only.
Which SDK, exporters and views you install is your application's business; with none,
the API's no-op providers make this hook nearly free.

The metrics are those of `PrometheusHook`, named the OpenTelemetry way: dotted, the unit
in the instrument rather than the name, no ``_total``. An OpenTelemetry Prometheus
exporter turns ``async_dispatch.checks`` back into ``async_dispatch_checks_total`` and
``async_dispatch.check.duration`` (unit ``s``) into ``async_dispatch_check_duration_seconds``.
Metric attributes follow the same rule as Prometheus labels: closed sets, ``"other"`` for
anything else, never a request id.

Spans are another matter: a span is one operation, so it may name its task. Each span
gets the attributes the core passes, prefixed with ``async_dispatch.``
(``async_dispatch.request_id``, ``async_dispatch.attempt``), and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Final

from opentelemetry import metrics, trace

from .._outcome import OutcomeKind
from .._version import __version__
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
    TaskTracked,
    TokenWaited,
    WebhookAnswered,
)

__all__ = ["ATTRIBUTE_PREFIX", "OpenTelemetryHook"]

#: The instrumentation scope: what the meter and the tracer are named.
_SCOPE: Final = "async_dispatch"
#: Prepended to each span attribute the core passes, per OpenTelemetry's naming rules.
ATTRIBUTE_PREFIX: Final = "async_dispatch."

_Attributes = Mapping[str, str]


class OpenTelemetryHook:
    """Records events as OpenTelemetry metrics, and traces submits and checks.

    Args:
        meter_provider: Where the metrics go; the global one (`metrics.set_meter_provider`)
            by default, looked up lazily, so the hook may be built before the SDK is set up.
        tracer_provider: Where the spans go; the global one by default, likewise.
    """

    __slots__ = (
        "_check_duration",
        "_checks",
        "_detection_delay",
        "_outcomes",
        "_pauses",
        "_submit_duration",
        "_submits",
        "_token_wait",
        "_tracer",
        "_tracked",
        "_webhooks",
    )

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        self._checks = meter.create_counter(
            "async_dispatch.checks", unit="{check}", description="Status checks, by result."
        )
        self._check_duration = meter.create_histogram(
            "async_dispatch.check.duration",
            unit="s",
            description="Time a status check took, retries included, by result.",
            explicit_bucket_boundaries_advisory=REQUEST_DURATION_BUCKETS,
        )
        self._submits = meter.create_counter(
            "async_dispatch.submits", unit="{submit}", description="Submits, by result."
        )
        self._submit_duration = meter.create_histogram(
            "async_dispatch.submit.duration",
            unit="s",
            description="Time a submit took, by result.",
            explicit_bucket_boundaries_advisory=REQUEST_DURATION_BUCKETS,
        )
        self._outcomes = meter.create_counter(
            "async_dispatch.outcomes", unit="{outcome}", description="Outcomes, by kind."
        )
        self._detection_delay = meter.create_histogram(
            "async_dispatch.detection_delay",
            unit="s",
            description="Time from a task's completedAt to our noticing it, by how we did.",
            explicit_bucket_boundaries_advisory=DETECTION_DELAY_BUCKETS,
        )
        self._tracked = meter.create_up_down_counter(
            "async_dispatch.tracked_tasks", unit="{task}", description="Tasks being tracked."
        )
        self._pauses = meter.create_counter(
            "async_dispatch.rate_limit_pauses",
            unit="{pause}",
            description="Shared pauses caused by rate-limited answers, by source.",
        )
        self._token_wait = meter.create_histogram(
            "async_dispatch.token_wait",
            unit="s",
            description="Time one acquirer waited for a rate-limit token (waits only).",
            explicit_bucket_boundaries_advisory=TOKEN_WAIT_BUCKETS,
        )
        self._webhooks = meter.create_counter(
            "async_dispatch.webhook_answers",
            unit="{answer}",
            description="Webhook deliveries answered, by reason.",
        )

    def __repr__(self) -> str:
        return "OpenTelemetryHook()"

    def __call__(self, event: Event) -> None:
        if isinstance(event, CheckDone):
            attributes = _pick(_CHECK_RESULT, event.result)
            self._checks.add(1, attributes)
            self._check_duration.record(event.latency, attributes)
        elif isinstance(event, TaskResolved):
            self._outcomes.add(1, _pick(_OUTCOME_KIND, event.kind.value))
            if event.detection_delay is not None:
                self._detection_delay.record(event.detection_delay, _pick(_VIA, event.via))
            if event.final:
                self._tracked.add(-1)
        elif isinstance(event, TaskTracked):
            self._tracked.add(1)
        elif isinstance(event, TaskForgotten):
            self._tracked.add(-1)
        elif isinstance(event, TokenWaited):
            self._token_wait.record(event.seconds)
        elif isinstance(event, SubmitDone):
            attributes = _pick(_SUBMIT_RESULT, event.result)
            self._submits.add(1, attributes)
            self._submit_duration.record(event.latency, attributes)
        elif isinstance(event, RateLimitPaused):
            self._pauses.add(1, _pick(_SOURCE, event.source))
        elif isinstance(event, WebhookAnswered):
            self._webhooks.add(1, _pick(_REASON, event.reason))

    def span(
        self, name: str, attributes: Mapping[str, str | int | float]
    ) -> contextlib.AbstractContextManager[object]:
        """A span named ``name``, child of the current one, made current for the body.

        If the body raises, the span records the exception and ends with an error status;
        the exception goes on to the caller.
        """
        return self._tracer.start_as_current_span(
            name,
            attributes={ATTRIBUTE_PREFIX + key: value for key, value in attributes.items()},
            record_exception=True,
            set_status_on_exception=True,
        )


def _by_value(key: str, values: Iterable[str]) -> dict[str, _Attributes]:
    """One attributes mapping per value (``"other"`` included), built once and shared."""
    return {value: {key: value} for value in (*values, OTHER)}


def _pick(table: Mapping[str, _Attributes], value: str) -> _Attributes:
    attributes = table.get(value)
    return table[OTHER] if attributes is None else attributes


_CHECK_RESULT: Final = _by_value("result", CHECK_RESULTS)
_SUBMIT_RESULT: Final = _by_value("result", SUBMIT_RESULTS)
_OUTCOME_KIND: Final = _by_value("kind", (kind.value for kind in OutcomeKind))
_VIA: Final = _by_value("via", RESOLVED_VIA)
_SOURCE: Final = _by_value("source", RATE_LIMIT_SOURCES)
_REASON: Final = _by_value("reason", WEBHOOK_REASONS)
