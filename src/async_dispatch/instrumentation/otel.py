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
(``async_dispatch.request_id``, ``async_dispatch.attempt``), and the conventions' own
(``messaging.operation.type``, ``http.request.method``); the task span's come from closed
sets only (kind, via, polls, attempts). Never the key, the prompt, an option or a response.

One trace per task. Tracking a task (`Poller.submit`, `Poller.track`) opens a
``producer`` span, `SPAN_TRACK`, in the caller's trace (the request handler that
submitted it); its context travels with the task as W3C Trace Context headers, stored
by the task store (in memory, in a fleet's Redis, in a SQLite file). Every check
(`SPAN_CHECK`, ``client``) and webhook delivery (`SPAN_DELIVER`, ``consumer``) of the
task, in whatever replica, is a child of that context, as the messaging conventions
allow for the processing of a single message and as opentelemetry-python-contrib's
Celery, aio-pika and Kafka instrumentations do, with a *link* to the span that was
current (the webhook's HTTP request): no parent lasts hours, since the track span ends
when the submit returns. The replica that hands the final outcome to the application
records `SPAN_TASK`, the task's life from tracking to that outcome, and the outcome
carries the context (`Outcome.trace_context`), so its consumer can link its own work
(`task_links`, `task_context`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from functools import partial
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry import trace as trace_api
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._outcome import Outcome, OutcomeKind
from .._version import __version__
from ._events import Event, TaskResolved
from ._hooks import SPAN_CHECK, SPAN_TASK, SpanKind, TraceContext
from ._metrics import Kind, Metric, MetricHook, Series

__all__ = ["ATTRIBUTE_PREFIX", "OpenTelemetryHook", "task_context", "task_links"]

#: The instrumentation scope: what the meter and the tracer are named.
_SCOPE: Final = "async_dispatch"
#: Prepended to each span attribute the core passes, per OpenTelemetry's naming rules.
ATTRIBUTE_PREFIX: Final = "async_dispatch."
#: What travels with a task is W3C Trace Context, whatever the application's global
#: propagator is: the stores keep ``traceparent`` and ``tracestate`` and nothing else.
_W3C: Final = TraceContextTextMapPropagator()
_KINDS: Final[Mapping[SpanKind, trace.SpanKind]] = {
    "internal": trace.SpanKind.INTERNAL,
    "producer": trace.SpanKind.PRODUCER,
    "consumer": trace.SpanKind.CONSUMER,
    "client": trace.SpanKind.CLIENT,
}
#: The messaging conventions' ``messaging.operation.type`` of each kind of task span.
_OPERATIONS: Final[Mapping[SpanKind, str]] = {"producer": "create", "consumer": "process"}
#: How many parsed task contexts a hook keeps (`OpenTelemetryHook._parent`).
_PARENTS_KEPT: Final = 4096
#: Final kinds that mean the task did not do what was asked: the task span's status.
_FAILED_KINDS: Final = frozenset(
    {OutcomeKind.ERROR, OutcomeKind.TIMED_OUT, OutcomeKind.FAILED, OutcomeKind.SUBMIT_UNCERTAIN}
)


class OpenTelemetryHook(MetricHook):
    """Records events as OpenTelemetry metrics, and traces submits and checks.

    Args:
        meter_provider: Where the metrics go; the global one (`metrics.set_meter_provider`)
            by default, looked up lazily, so the hook may be built before the SDK is set up.
        tracer_provider: Where the spans go; the global one by default, likewise.
    """

    __slots__ = ("_parents", "_tracer")

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        #: Parsed task contexts by their headers: a task is checked many times, and
        #: parsing ``traceparent`` anew each time was most of what a task span adds.
        self._parents: dict[tuple[str, str], otel_context.Context] = {}
        super().__init__(partial(_series, meter))

    def __repr__(self) -> str:
        return "OpenTelemetryHook()"

    def __call__(self, event: Event) -> None:
        """Record `event` in the metrics; a task's final outcome also ends its trace."""
        super().__call__(event)
        if type(event) is TaskResolved and event.final and event.trace_context:
            self._task_done(event, event.trace_context)

    def _parent(self, trace: TraceContext) -> otel_context.Context:
        """The context `trace` names, parsed once per distinct headers (a bounded cache:
        emptied when full, so a poller of 100,000 tasks holds at most `_PARENTS_KEPT`)."""
        key = (trace.get("traceparent", ""), trace.get("tracestate", ""))
        parent = self._parents.get(key)
        if parent is None:
            if len(self._parents) >= _PARENTS_KEPT:
                self._parents.clear()
            parent = self._parents[key] = _W3C.extract(trace)
        return parent

    def _task_done(self, event: TaskResolved, trace_context: TraceContext) -> None:
        """`SPAN_TASK`: the task's life, from its tracking (``event.age`` ago) to now, a
        child of its track span. Made here, by the process that hands the outcome over,
        because the task may have been tracked by another process hours ago."""
        end = time.time_ns()
        span = self._tracer.start_span(
            SPAN_TASK,
            context=self._parent(trace_context),
            kind=trace.SpanKind.INTERNAL,
            start_time=end - max(0, int(event.age * 1e9)),
            attributes={
                ATTRIBUTE_PREFIX + "kind": event.kind.value,
                ATTRIBUTE_PREFIX + "via": event.via,
                ATTRIBUTE_PREFIX + "polls": event.polls,
                ATTRIBUTE_PREFIX + "attempts": event.attempts,
            },
        )
        if event.kind in _FAILED_KINDS:
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.kind.value))
        span.end(end_time=end)

    def capture(self) -> dict[str, str] | None:
        """The current span's context as ``traceparent`` (and ``tracestate``) headers."""
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        return carrier or None

    def task_span(
        self,
        name: str,
        attributes: Mapping[str, str | int | float],
        *,
        trace: TraceContext | None,
        kind: SpanKind,
    ) -> contextlib.AbstractContextManager[object]:
        """A span of the task whose context is `trace`: its child, linked to the span
        current now (a webhook's request, say), made current for the body. Without a
        context (a task tracked untraced), a child of the current span, as `span` is."""
        parent: otel_context.Context | None = None
        links: list[trace_api.Link] = []
        if trace:
            parent = self._parent(trace)
            current = trace_api.get_current_span().get_span_context()
            if current.is_valid:
                links.append(trace_api.Link(current))
        named = {ATTRIBUTE_PREFIX + key: value for key, value in attributes.items()}
        operation = _OPERATIONS.get(kind)
        if operation is not None:
            named["messaging.system"] = _SCOPE
            named["messaging.operation.type"] = operation
        if name == SPAN_CHECK:
            named["http.request.method"] = "GET"  # a check is one status request
        return self._tracer.start_as_current_span(
            name,
            context=parent,
            kind=_KINDS.get(kind, trace_api.SpanKind.INTERNAL),
            links=links,
            attributes=named,
            record_exception=True,
            set_status_on_exception=True,
        )

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


def task_context(outcome: Outcome) -> otel_context.Context:
    """A context whose current span is the outcome's task's track span: pass it as
    ``context=`` to make your own span part of the task's trace. An empty context (a new
    trace) when the task was tracked untraced."""
    return _W3C.extract(outcome.trace_context or {})


def task_links(outcome: Outcome) -> list[trace_api.Link]:
    """A link to the outcome's task's trace, as ``links=`` of the span that handles the
    outcome (the conventions' way for a consumer to point at what it consumed); empty
    when the task was tracked untraced."""
    if not outcome.trace_context:
        return []
    linked = trace_api.get_current_span(task_context(outcome)).get_span_context()
    return [trace_api.Link(linked)] if linked.is_valid else []


def _series(meter: metrics.Meter, metric: Metric) -> dict[str | None, Series]:
    """Each series of ``metric`` by label value: its instrument's ``add`` (``record``)
    and one attributes mapping, made now and shared by every event recorded into it."""
    instrument = _instrument(meter, metric)
    add = instrument.record if isinstance(instrument, metrics.Histogram) else instrument.add
    if metric.label is None:
        return {None: (add, None)}
    key = metric.label.name
    return {value: (add, {key: value}) for value in metric.label.every_value}


def _instrument(
    meter: metrics.Meter, metric: Metric
) -> metrics.Counter | metrics.UpDownCounter | metrics.Histogram:
    name, unit, description = metric.otel_name, metric.unit, metric.description
    if metric.kind is Kind.COUNTER:
        return meter.create_counter(name, unit=unit, description=description)
    if metric.kind is Kind.GAUGE:
        return meter.create_up_down_counter(name, unit=unit, description=description)
    return meter.create_histogram(
        name,
        unit=unit,
        description=description,
        explicit_bucket_boundaries_advisory=metric.buckets,
    )
