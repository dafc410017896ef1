"""`async_dispatch.instrumentation`: events, `Instrumentation`, and the three hook sets.

The integrations are tested against the real libraries: a `prometheus_client` registry read
back sample by sample, and the OpenTelemetry SDK's in-memory metric reader and span
exporter.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator, Mapping
from typing import Any, cast

import anyio
import anyio.lowlevel
import attrs
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, generate_latest

from _logs import capture_logs
from async_dispatch import OutcomeKind, UsageError
from async_dispatch.instrumentation import (
    CHECK_RESULTS,
    RATE_LIMIT_SOURCES,
    RESOLVED_VIA,
    SPAN_CHECK,
    SPAN_SUBMIT,
    SUBMIT_RESULTS,
    WEBHOOK_REASONS,
    CheckDone,
    Event,
    Hook,
    Instrumentation,
    LoggingHook,
    RateLimitPaused,
    SubmitDone,
    TaskForgotten,
    TaskResolved,
    TaskTracked,
    TokenWaited,
    TracingHook,
    WebhookAnswered,
)
from async_dispatch.instrumentation.otel import OpenTelemetryHook
from async_dispatch.instrumentation.prometheus import PrometheusHook

KINDS = tuple(kind.value for kind in OutcomeKind)
#: Every label (Prometheus) or metric attribute (OTel) and the values it may take.
BOUNDED_LABELS: dict[str, set[str]] = {
    "result": {*CHECK_RESULTS, *SUBMIT_RESULTS, "other"},
    "kind": {*KINDS, "other"},
    "via": {*RESOLVED_VIA, "other"},
    "source": {*RATE_LIMIT_SOURCES, "other"},
    "reason": {*WEBHOOK_REASONS, "other"},
}
#: What a span may carry: the attributes the core is documented to pass, prefixed.
SPAN_ATTRIBUTES = {"async_dispatch.request_id", "async_dispatch.attempt"}


def rid() -> str:
    return "req_" + secrets.token_hex(8)


def a_day_of_events(n: int) -> Iterator[Event]:
    """``n`` rounds of every event type, each with a request id never seen before, and a
    few values outside their documented sets (a buggy core must not break the bound)."""
    for i in range(n):
        request_id = rid()
        yield TaskTracked(request_id=request_id)
        yield TokenWaited(seconds=0.01 * i)
        yield CheckDone(
            request_id=request_id,
            result=CHECK_RESULTS[i % len(CHECK_RESULTS)],
            latency=0.05,
            attempt=i + 1,
        )
        yield SubmitDone(result=SUBMIT_RESULTS[i % len(SUBMIT_RESULTS)], latency=0.2)
        yield RateLimitPaused(seconds=1.0, source=RATE_LIMIT_SOURCES[i % 3])
        yield WebhookAnswered(reason=WEBHOOK_REASONS[i % len(WEBHOOK_REASONS)], status_code=200)
        yield WebhookAnswered(reason=f"new_reason_{request_id}", status_code=400)
        yield CheckDone(request_id=request_id, result=cast(Any, request_id), latency=0.1, attempt=1)
        yield SubmitDone(result=cast(Any, request_id), latency=0.1)
        yield RateLimitPaused(seconds=1.0, source=cast(Any, request_id))
        yield TaskResolved(
            request_id=request_id,
            kind=list(OutcomeKind)[i % len(OutcomeKind)],
            polls=i,
            age=3.0,
            detection_delay=0.5,
            via=cast(Any, request_id) if i % 2 else "poll",
        )


class Recorder:
    """A hook that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event, /) -> None:
        self.events.append(event)


def broken_hook(event: Event) -> None:
    raise RuntimeError("this hook is broken")


# -- events -------------------------------------------------------------------------------


def test_events_are_frozen_slotted_keyword_only_values() -> None:
    event = CheckDone(request_id="req_1", result="pending", latency=0.1, attempt=1)

    assert not hasattr(event, "__dict__")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.attempt = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        CheckDone("req_1", "pending", 0.1, 1)  # type: ignore[call-arg]
    assert event == CheckDone(request_id="req_1", result="pending", latency=0.1, attempt=1)


def test_closed_sets_are_the_documented_ones() -> None:
    assert CHECK_RESULTS == (
        "pending",
        "success",
        "error",
        "input-required",
        "unknown-status",
        "not-found",
        "rejected",
        "rate-limited",
        "transient",
        "refused",
        "abandoned",
    )
    assert SUBMIT_RESULTS == ("accepted", "uncertain", "rejected", "rate-limited", "failed")
    assert RESOLVED_VIA == ("poll", "webhook", "deadline", "other")
    assert RATE_LIMIT_SOURCES == ("check", "submit", "client")
    assert {"accepted", "duplicate", "bad_secret", "too_large", "unknown_request"} <= set(
        WEBHOOK_REASONS
    )


# -- Instrumentation ----------------------------------------------------------------------


def test_without_hooks_nothing_is_enabled_and_every_span_is_one_shared_no_op() -> None:
    first, second = Instrumentation(), Instrumentation([])

    assert not first.enabled
    assert not first.tracing
    span = first.span(SPAN_CHECK, request_id="req_1", attempt=1)
    assert span is second.span(SPAN_SUBMIT)
    with span, span:  # re-entrant: one instance serves every caller at once
        pass


def test_emit_calls_every_hook_in_order() -> None:
    calls: list[tuple[str, Event]] = []
    event = TaskTracked(request_id="req_1")
    instrumentation = Instrumentation(
        [lambda e: calls.append(("first", e)), lambda e: calls.append(("second", e))]
    )

    assert instrumentation.enabled
    assert not instrumentation.tracing
    instrumentation.emit(event)

    assert calls == [("first", event), ("second", event)]


def test_a_hook_that_raises_is_logged_once_and_breaks_nothing() -> None:
    recorder = Recorder()
    instrumentation = Instrumentation([broken_hook, recorder])

    with capture_logs() as logs:
        for _ in range(3):
            instrumentation.emit(TokenWaited(seconds=1.0))

    assert len(recorder.events) == 3  # the hook after the broken one still gets everything
    assert [log["event"] for log in logs] == ["instrumentation_hook_failed"]
    assert logs[0]["error"] == "RuntimeError"
    assert "broken_hook" in logs[0]["hook"]


def test_default_is_the_logging_hook_only() -> None:
    instrumentation = Instrumentation.default()

    assert instrumentation.enabled
    assert [type(hook) for hook in instrumentation.hooks] == [LoggingHook]


def test_hooks_satisfy_their_protocols() -> None:
    hooks: list[Hook] = [
        Recorder(),
        broken_hook,
        LoggingHook(),
        PrometheusHook(CollectorRegistry()),
    ]
    tracing: TracingHook = OpenTelemetryHook()

    assert not any(isinstance(hook, TracingHook) for hook in hooks)
    assert isinstance(tracing, TracingHook)
    assert Instrumentation([*hooks, tracing]).tracing


# -- LoggingHook --------------------------------------------------------------------------


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="async_dispatch")


@pytest.fixture
def info_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="async_dispatch")


@pytest.mark.usefixtures("info_logging")
def test_logging_hook_says_only_what_a_person_should_act_on() -> None:
    hook = LoggingHook()

    with capture_logs(logging.INFO) as logs:
        for event in a_day_of_events(1):
            hook(event)

    refused = [log for log in logs if log["event"] == "webhook_refused"]
    assert logs[0] == {
        "event": "rate_limited",
        "log_level": "warning",
        "seconds": 1.0,
        "source": "check",
    }
    assert refused == [
        {
            "event": "webhook_refused",
            "log_level": "info",
            "reason": refused[0]["reason"],
            "status_code": 400,
        }
    ]
    # Per-request events, an accepted webhook, tracking and token waits: not at info level.
    assert {log["event"] for log in logs} == {"rate_limited", "webhook_refused"}


@pytest.mark.usefixtures("debug_logging")
def test_logging_hook_traces_every_request_at_debug_level() -> None:
    hook = LoggingHook()

    with capture_logs() as logs:
        hook(CheckDone(request_id="req_1", result="pending", latency=0.12345, attempt=2))
        hook(SubmitDone(result="accepted", latency=0.5))
        hook(
            TaskResolved(
                request_id="req_1",
                kind=OutcomeKind.SUCCESS,
                polls=3,
                age=12.0,
                detection_delay=1.5,
                via="poll",
            )
        )

    assert logs == [
        {
            "event": "checked",
            "log_level": "debug",
            "request_id": "req_1",
            "result": "pending",
            "latency": 0.123,
            "attempt": 2,
        },
        {
            "event": "submitted",
            "log_level": "debug",
            "request_id": None,
            "result": "accepted",
            "latency": 0.5,
        },
        {
            "event": "resolved",
            "log_level": "debug",
            "request_id": "req_1",
            "kind": "success",
            "final": True,
            "polls": 3,
            "age": 12.0,
            "detection_delay": 1.5,
            "via": "poll",
        },
    ]


# -- Prometheus ---------------------------------------------------------------------------


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_prometheus_counts_checks_outcomes_and_tracked_tasks(registry: CollectorRegistry) -> None:
    hook = PrometheusHook(registry)
    value = registry.get_sample_value

    for request_id in ("req_1", "req_2", "req_3"):
        hook(TaskTracked(request_id=request_id))
    hook(CheckDone(request_id="req_1", result="pending", latency=0.02, attempt=1))
    hook(CheckDone(request_id="req_1", result="success", latency=0.3, attempt=2))
    hook(
        TaskResolved(
            request_id="req_1",
            kind=OutcomeKind.SUCCESS,
            polls=2,
            age=5.0,
            detection_delay=4.0,
            via="poll",
        )
    )
    hook(
        TaskResolved(
            request_id="req_2",
            kind=OutcomeKind.INPUT_REQUIRED,
            polls=1,
            age=5.0,
            detection_delay=None,
            via="webhook",
            final=False,
        )
    )
    hook(TaskForgotten(request_id="req_3"))

    assert value("async_dispatch_checks_total", {"result": "pending"}) == 1
    assert value("async_dispatch_checks_total", {"result": "success"}) == 1
    assert value("async_dispatch_checks_total", {"result": "transient"}) == 0  # made at zero
    assert value("async_dispatch_check_duration_seconds_count", {"result": "pending"}) == 1
    assert value("async_dispatch_check_duration_seconds_sum", {"result": "success"}) == 0.3
    assert (
        value("async_dispatch_check_duration_seconds_bucket", {"result": "pending", "le": "0.025"})
        == 1
    )
    assert value("async_dispatch_outcomes_total", {"kind": "success"}) == 1
    assert value("async_dispatch_outcomes_total", {"kind": "input-required"}) == 1
    assert value("async_dispatch_detection_delay_seconds_count", {"via": "poll"}) == 1
    assert value("async_dispatch_detection_delay_seconds_bucket", {"via": "poll", "le": "5.0"}) == 1
    assert value("async_dispatch_detection_delay_seconds_count", {"via": "webhook"}) == 0
    # req_2 is still tracked after its input request; req_1 resolved, req_3 was forgotten.
    assert value("async_dispatch_tracked_tasks") == 1


def test_prometheus_counts_submits_pauses_token_waits_and_webhooks(
    registry: CollectorRegistry,
) -> None:
    hook = PrometheusHook(registry)
    value = registry.get_sample_value

    hook(SubmitDone(result="accepted", latency=0.4))
    hook(SubmitDone(result="uncertain", latency=30.0))
    hook(RateLimitPaused(seconds=2.0, source="submit"))
    hook(TokenWaited(seconds=0.2))
    hook(WebhookAnswered(reason="bad_secret", status_code=401))
    hook(WebhookAnswered(reason="a reason from next year", status_code=400))

    assert value("async_dispatch_submits_total", {"result": "accepted"}) == 1
    assert value("async_dispatch_submits_total", {"result": "uncertain"}) == 1
    assert (
        value(
            "async_dispatch_submit_duration_seconds_bucket", {"result": "uncertain", "le": "10.0"}
        )
        == 0
    )
    assert value("async_dispatch_rate_limit_pauses_total", {"source": "submit"}) == 1
    assert value("async_dispatch_token_wait_seconds_count") == 1
    assert value("async_dispatch_token_wait_seconds_bucket", {"le": "0.25"}) == 1
    assert value("async_dispatch_webhook_answers_total", {"reason": "bad_secret"}) == 1
    assert value("async_dispatch_webhook_answers_total", {"reason": "other"}) == 1


def test_prometheus_namespace(registry: CollectorRegistry) -> None:
    hook = PrometheusHook(registry, namespace="dispatch_eu")
    hook(TokenWaited(seconds=1.0))

    assert registry.get_sample_value("dispatch_eu_token_wait_seconds_count") == 1


def test_a_second_prometheus_hook_in_one_registry_is_refused_whole(
    registry: CollectorRegistry,
) -> None:
    first = PrometheusHook(registry)

    with pytest.raises(UsageError, match="share it"):
        PrometheusHook(registry)

    first(TaskTracked(request_id="req_1"))
    assert registry.get_sample_value("async_dispatch_tracked_tasks") == 1
    # Nothing of the refused hook stayed behind; another namespace still fits.
    PrometheusHook(registry, namespace="other_dispatch")


def test_prometheus_labels_stay_bounded_whatever_the_events_carry(
    registry: CollectorRegistry,
) -> None:
    hook = PrometheusHook(registry)

    def series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        return {
            (sample.name, tuple(sorted(sample.labels.items())))
            for metric in registry.collect()
            for sample in metric.samples
        }

    before = series()
    for event in a_day_of_events(200):
        hook(event)
    after = series()

    assert after == before  # 2,200 events with fresh ids made no new series
    for _, labels in after:
        for name, label_value in labels:
            if name == "le":
                continue
            assert label_value in BOUNDED_LABELS[name], (name, label_value)
    assert "req_" not in generate_latest(registry).decode()


# -- OpenTelemetry metrics ----------------------------------------------------------------


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[metric_reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def otel_hook(meter_provider: MeterProvider, tracer_provider: TracerProvider) -> OpenTelemetryHook:
    return OpenTelemetryHook(meter_provider=meter_provider, tracer_provider=tracer_provider)


def data_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every metric's data points, by metric name."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def point(points: list[Any], **attributes: str) -> Any:
    """The one data point with exactly these attributes."""
    (found,) = [p for p in points if dict(p.attributes) == attributes]
    return found


def test_otel_records_the_same_metrics(
    otel_hook: OpenTelemetryHook, metric_reader: InMemoryMetricReader
) -> None:
    otel_hook(TaskTracked(request_id="req_1"))
    otel_hook(TaskTracked(request_id="req_2"))
    otel_hook(CheckDone(request_id="req_1", result="pending", latency=0.02, attempt=1))
    otel_hook(CheckDone(request_id="req_1", result="pending", latency=0.04, attempt=2))
    otel_hook(
        TaskResolved(
            request_id="req_1",
            kind=OutcomeKind.TIMED_OUT,
            polls=2,
            age=60.0,
            detection_delay=None,
            via="deadline",
        )
    )
    otel_hook(SubmitDone(result="rate-limited", latency=0.1))
    otel_hook(RateLimitPaused(seconds=3.0, source="check"))
    otel_hook(TokenWaited(seconds=0.5))
    otel_hook(WebhookAnswered(reason="duplicate", status_code=200))

    points = data_points(metric_reader)

    assert point(points["async_dispatch.checks"], result="pending").value == 2
    duration = point(points["async_dispatch.check.duration"], result="pending")
    assert isinstance(duration, HistogramDataPoint)
    assert duration.count == 2
    assert duration.explicit_bounds[0] == 0.005  # seconds, not the SDK's millisecond default
    assert point(points["async_dispatch.outcomes"], kind="timed-out").value == 1
    assert "async_dispatch.detection_delay" not in points  # no delay known for a timeout
    assert point(points["async_dispatch.tracked_tasks"]).value == 1
    assert point(points["async_dispatch.submits"], result="rate-limited").value == 1
    assert point(points["async_dispatch.submit.duration"], result="rate-limited").sum == 0.1
    assert point(points["async_dispatch.rate_limit_pauses"], source="check").value == 1
    assert point(points["async_dispatch.token_wait"]).sum == 0.5
    assert point(points["async_dispatch.webhook_answers"], reason="duplicate").value == 1


def test_otel_metric_attributes_stay_bounded_whatever_the_events_carry(
    otel_hook: OpenTelemetryHook, metric_reader: InMemoryMetricReader
) -> None:
    for event in a_day_of_events(200):
        otel_hook(event)

    points = data_points(metric_reader)

    assert len(points) == 10
    for name, metric_points in points.items():
        for data_point in metric_points:
            for key, value in data_point.attributes.items():
                assert value in BOUNDED_LABELS[key], (name, key, value)


# -- spans --------------------------------------------------------------------------------


def finished(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def context(span: ReadableSpan) -> trace.SpanContext:
    found: trace.SpanContext | None = span.context
    assert found is not None
    return found


def test_a_span_is_a_child_of_the_callers_span(
    otel_hook: OpenTelemetryHook,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    instrumentation = Instrumentation([otel_hook])
    tracer = tracer_provider.get_tracer("the application")

    with tracer.start_as_current_span("handle request"):
        with instrumentation.span(SPAN_CHECK, request_id="req_1", attempt=3):
            pass
        with instrumentation.span(SPAN_SUBMIT):
            pass

    spans = finished(span_exporter)
    parent = spans["handle request"].context
    assert parent is not None
    for name in (SPAN_CHECK, SPAN_SUBMIT):
        assert parent_id(spans[name]) == parent.span_id
        assert context(spans[name]).trace_id == parent.trace_id
    assert dict(spans[SPAN_CHECK].attributes or {}) == {
        "async_dispatch.request_id": "req_1",
        "async_dispatch.attempt": 3,
    }
    assert not spans[SPAN_SUBMIT].attributes


def test_without_a_callers_span_a_span_is_a_root(
    otel_hook: OpenTelemetryHook, span_exporter: InMemorySpanExporter
) -> None:
    with Instrumentation([otel_hook]).span(SPAN_CHECK, request_id="req_1"):
        pass

    assert parent_id(finished(span_exporter)[SPAN_CHECK]) is None


@pytest.mark.anyio
async def test_a_span_stays_current_across_awaits(
    otel_hook: OpenTelemetryHook,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    instrumentation = Instrumentation([otel_hook])
    tracer = tracer_provider.get_tracer("the application")
    seen: list[trace.Span] = []

    async def check(request_id: str) -> None:
        with instrumentation.span(SPAN_CHECK, request_id=request_id):
            await anyio.lowlevel.checkpoint()
            seen.append(trace.get_current_span())

    with tracer.start_as_current_span("fan out") as parent:
        async with anyio.create_task_group() as tg:
            for request_id in ("req_1", "req_2"):
                tg.start_soon(check, request_id)

    checks = [span for span in span_exporter.get_finished_spans() if span.name == SPAN_CHECK]
    assert len(checks) == 2
    for span in checks:
        assert parent_id(span) == parent.get_span_context().span_id
    assert {span.get_span_context().span_id for span in seen} == {
        context(span).span_id for span in checks
    }


def test_a_failing_body_marks_its_span_and_propagates_unchanged(
    otel_hook: OpenTelemetryHook, span_exporter: InMemorySpanExporter
) -> None:
    error = ConnectionError("the service went away")

    with pytest.raises(ConnectionError) as caught, Instrumentation([otel_hook]).span(SPAN_SUBMIT):
        raise error

    assert caught.value is error
    span = finished(span_exporter)[SPAN_SUBMIT]
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


@attrs.define
class FlakyTracer:
    """A tracing hook broken in one of the ways a third-party tracer could be."""

    fail_in: str  # "span", "enter", "exit" or "swallow"
    entered: int = 0

    def __call__(self, event: Event, /) -> None:
        pass

    def span(
        self, name: str, attributes: Mapping[str, str | int | float]
    ) -> contextlib.AbstractContextManager[object]:
        if self.fail_in == "span":
            raise RuntimeError("cannot make a span")
        return self._span()

    @contextlib.contextmanager
    def _span(self) -> Iterator[None]:
        if self.fail_in == "enter":
            raise RuntimeError("cannot enter")
        self.entered += 1
        try:
            yield
        except Exception:
            if self.fail_in != "swallow":
                raise
        if self.fail_in == "exit":
            raise RuntimeError("cannot exit")


@pytest.mark.parametrize("fail_in", ["span", "enter", "exit", "swallow"])
def test_a_broken_tracer_breaks_neither_the_body_nor_the_other_tracers(
    fail_in: str, otel_hook: OpenTelemetryHook, span_exporter: InMemorySpanExporter
) -> None:
    instrumentation = Instrumentation([FlakyTracer(fail_in), otel_hook])
    ran = []

    with capture_logs() as logs:
        for _ in range(2):
            with instrumentation.span(SPAN_CHECK, request_id="req_1"):
                ran.append(True)
        with pytest.raises(KeyError), instrumentation.span(SPAN_CHECK, request_id="req_1"):
            raise KeyError("the body's own error")

    assert len(ran) == 2
    assert len(span_exporter.get_finished_spans()) == 3
    expected = [] if fail_in == "swallow" else ["instrumentation_hook_failed"]
    assert [log["event"] for log in logs] == expected


def test_nothing_unbounded_or_secret_reaches_metrics_or_spans(
    monkeypatch: pytest.MonkeyPatch,
    registry: CollectorRegistry,
    otel_hook: OpenTelemetryHook,
    metric_reader: InMemoryMetricReader,
    span_exporter: InMemorySpanExporter,
) -> None:
    key = "sk_live_" + secrets.token_hex(16)
    monkeypatch.setenv("DISPATCH_API_KEY", key)
    instrumentation = Instrumentation([LoggingHook(), PrometheusHook(registry), otel_hook])
    request_ids = []

    for event in a_day_of_events(20):
        instrumentation.emit(event)
        if isinstance(event, CheckDone):
            request_ids.append(event.request_id)
            with instrumentation.span(SPAN_CHECK, request_id=event.request_id, attempt=1):
                pass
    with instrumentation.span(SPAN_SUBMIT):
        pass

    exposition = generate_latest(registry).decode()
    metrics_data = metric_reader.get_metrics_data()
    assert metrics_data is not None
    metrics_json = metrics_data.to_json()
    spans = span_exporter.get_finished_spans()
    for request_id in request_ids:
        assert request_id not in exposition
        assert request_id not in metrics_json
    for span in spans:
        assert set(span.attributes or {}) <= SPAN_ATTRIBUTES
        assert key not in span.to_json()
    assert key not in exposition
    assert key not in metrics_json
