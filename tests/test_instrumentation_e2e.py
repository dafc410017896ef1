"""The hooks end to end: a poller over the in-process simulator, with faults and a
server-side rate limit, reporting to a real `prometheus_client` registry and to the
OpenTelemetry SDK (in-memory metric reader and span exporter).

What the metrics say must be what happened: the poller's own `stats` and the simulator's
own counters are the truth they are checked against, on asyncio (real time, scaled down)
and trio (virtual time). Then the same kind of run, with a known key and a service that
echoes it back, proves that no label, attribute, span or log line carries the key, and
that no metric label carries a request id.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

import _poller_helpers as helpers
from _chaos import ChaosService, Fault, Timeline, client_for
from _logs import capture_logs
from async_dispatch import (
    DispatchClient,
    DispatchError,
    OutcomeKind,
    Poller,
    PollerStats,
    RetryPolicy,
)
from async_dispatch.instrumentation import (
    CHECK_RESULTS,
    RATE_LIMIT_SOURCES,
    SPAN_CHECK,
    SPAN_SUBMIT,
    SPAN_TASK,
    SPAN_TRACK,
    SUBMIT_RESULTS,
    Event,
    LoggingHook,
    SubmitDone,
)
from async_dispatch.instrumentation.otel import OpenTelemetryHook
from async_dispatch.instrumentation.prometheus import PrometheusHook
from async_dispatch.testing import (
    Durations,
    Faults,
    OutcomeMix,
    RateLimit,
    Simulator,
    SimulatorConfig,
    SimulatorStats,
)

pytestmark = pytest.mark.virtual_clock  # trio runs on a virtual clock
scale = helpers.scale

KEY = "sk-live-INSTRUMENTED-0123456789abcdef"
TASKS = 30
#: Faults a status read may suffer, and the check result each one becomes.
TRANSIENT_FAULTS = ("server_error", "html_error", "html_ok", "truncated_json", "drop")
FAULTS = Faults(
    server_error=0.08,
    html_error=0.03,
    html_ok=0.02,
    truncated_json=0.03,
    drop=0.03,
    unknown_status=0.05,
)
KINDS = tuple(kind.value for kind in OutcomeKind)


class Recorder:
    """A plain hook next to the real ones: the events themselves, for cross-checks."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event, /) -> None:
        self.events.append(event)


@attrs.define
class Telemetry:
    """The real libraries, wired as an application would wire them."""

    registry: CollectorRegistry
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    prometheus: PrometheusHook
    otel: OpenTelemetryHook
    recorder: Recorder

    @property
    def hooks(self) -> list[Any]:
        return [LoggingHook(), self.prometheus, self.otel, self.recorder]

    # -- reading back ------------------------------------------------------------------

    def prom(self, name: str, label: str, values: tuple[str, ...]) -> dict[str, float]:
        value = self.registry.get_sample_value
        return {v: value(f"async_dispatch_{name}", {label: v}) or 0.0 for v in values}

    def otel_points(self, name: str, label: str | None = None) -> dict[str, float]:
        """Sum (or count, for histograms) of metric ``name`` by the value of ``label``."""
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[str, float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        attributes = dict(point.attributes or {})
                        key = "" if label is None else str(attributes[label])
                        if isinstance(point, HistogramDataPoint):
                            found[key] = float(point.count)
                        else:
                            found[key] = float(getattr(point, "value", 0))
        return found

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    registry = CollectorRegistry()
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    yield Telemetry(
        registry=registry,
        reader=reader,
        exporter=exporter,
        prometheus=PrometheusHook(registry),
        otel=OpenTelemetryHook(meter_provider=meters, tracer_provider=tracers),
        recorder=Recorder(),
    )
    meters.shutdown()
    tracers.shutdown()


def config(scale: float, *, seed: int) -> SimulatorConfig:
    """Tasks of every ending, 20% of status reads failing, and a server-side limit the
    poller's own budget exceeds (so 429s, on checks and on submits)."""
    return SimulatorConfig(
        api_keys=KEY,
        durations=Durations(median=3.0, sigma=0.5, maximum=8.0),
        outcomes=OutcomeMix(success=0.55, error=0.15, input_required=0.15, never=0.15),
        input_wait=1.0,
        # Real clock seconds, unlike durations: scaled by hand.
        rate_limit=RateLimit(rate=6 / scale, burst=3),
        faults=FAULTS,
        time_scale=scale,
        seed=seed,
    )


def retry(scale: float) -> RetryPolicy:
    """Submits retry through 429s; pauses and backoffs shrink with the clock."""
    return RetryPolicy(
        attempts=20,
        initial_delay=0.1 * scale,
        max_delay=0.5 * scale,
        rate_limit_floor=0.5 * scale,
        rate_limit_ceiling=2 * scale,
        max_retry_after=2 * scale,
        max_wait=600 * scale,
    )


@attrs.frozen
class Run:
    stats: PollerStats
    server: SimulatorStats
    submitted: list[str]


@asynccontextmanager
async def poller_over(
    sim: Simulator, scale: float, hooks: list[Any]
) -> AsyncIterator[tuple[DispatchClient, Poller]]:
    async with (
        sim.client(retry=retry(scale), timeout=30, hooks=hooks) as client,
        Poller(
            client,
            rate=15 / scale,
            burst=5,
            deadline=14 * scale,
            initial_interval=0.5 * scale,
            max_interval=1.0 * scale,
            max_in_flight=4,
            seed=3,
        ) as poller,
    ):
        yield client, poller


async def run_with_faults(scale: float, hooks: list[Any], *, seed: int) -> Run:
    """Submit TASKS tasks, track an unknown id and a malformed one, consume every outcome."""
    async with (
        Simulator(config(scale, seed=seed)) as sim,
        poller_over(sim, scale, hooks) as (_, poller),
    ):
        submitted: list[str] = []

        async def submit_all() -> None:
            for n in range(TASKS):
                submitted.append(await poller.submit(f"/Operator instrumented task {n}"))

        await poller.track("req_nobody_knows_this_one")  # 404: FAILED
        await poller.track("not a request id\n")  # refused before any request: FAILED
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_all)
            async for _ in poller.results(forever=True):
                if len(submitted) == TASKS and not len(poller):
                    break
        return Run(poller.stats, sim.stats, submitted)


# -- the numbers match what happened ------------------------------------------------------


# The server's limit is in real seconds: on a loaded machine the submits may be too slow
# to meet it, and the run would not have the 429s it checks. Alone, they always do.
@pytest.mark.serial
@pytest.mark.anyio
async def test_metrics_match_the_poller_and_the_simulator(
    telemetry: Telemetry, scale: float
) -> None:
    run = await run_with_faults(scale, telemetry.hooks, seed=4)
    stats, server = run.stats, run.server

    checks = telemetry.prom("checks_total", "result", CHECK_RESULTS)
    submits = telemetry.prom("submits_total", "result", SUBMIT_RESULTS)
    outcomes = telemetry.prom("outcomes_total", "kind", KINDS)
    pauses = telemetry.prom("rate_limit_pauses_total", "source", RATE_LIMIT_SOURCES)
    abandoned = checks["abandoned"]  # hit by a deadline mid-check: maybe sent, maybe not

    # The run had what it was built to have.
    assert server.rate_limited > 0
    assert sum(server.faults[f] for f in TRANSIENT_FAULTS) > 0
    assert server.faults["unknown_status"] > 0
    assert {k for k, n in outcomes.items() if n} >= {"success", "failed", "timed-out"}

    # Checks, against the poller's own counters: exactly.
    assert sum(checks.values()) == stats.polls_sent
    assert checks["rate-limited"] == stats.rate_limited > 0
    assert checks["transient"] == stats.retries > 0
    assert checks["unknown-status"] == stats.unknown_statuses > 0
    assert checks["refused"] == checks["rejected"] == 0
    # ... and against the simulator's: what it answered is what was counted.
    reached = server.requests["status"]
    assert sum(checks.values()) - abandoned <= reached <= sum(checks.values())
    injected = sum(server.faults[f] for f in TRANSIENT_FAULTS)
    assert checks["transient"] <= injected <= checks["transient"] + abandoned
    assert checks["unknown-status"] <= server.faults["unknown_status"]
    assert checks["not-found"] == server.responses[404] == 1
    submit_429s = server.requests["submit"] - server.tasks_created  # no submit faults
    assert checks["rate-limited"] + submit_429s <= server.rate_limited
    assert server.rate_limited <= checks["rate-limited"] + submit_429s + abandoned
    assert submit_429s > 0

    # Submits: one report per Poller.submit, none twice, 429s retried inside it.
    assert submits["accepted"] == stats.submits_sent == server.tasks_created == TASKS
    assert sum(submits.values()) == TASKS

    # Outcomes: one per outcome the consumer got, by kind; readings that resolved match.
    for kind in OutcomeKind:
        assert outcomes[kind.value] == stats.outcomes[kind], kind
    assert outcomes["success"] == checks["success"]
    assert outcomes["error"] == checks["error"]
    assert outcomes["failed"] == 2  # the unknown id and the malformed one
    assert telemetry.registry.get_sample_value("async_dispatch_tracked_tasks") == 0

    # Pauses: the poller's, exactly; the submits' 429s paused the key too.
    assert pauses["check"] == stats.pauses > 0
    assert 0 < pauses["submit"] <= submit_429s
    assert pauses["client"] == 0
    assert sum(pauses.values()) <= server.rate_limited

    # OpenTelemetry counted the same, point for point.
    def otel(name: str, label: str) -> dict[str, float]:
        return {k: v for k, v in telemetry.otel_points(name, label).items() if v}

    def nonzero(values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if v}

    assert otel("async_dispatch.checks", "result") == nonzero(checks)
    assert otel("async_dispatch.check.duration", "result") == nonzero(checks)
    assert otel("async_dispatch.submits", "result") == nonzero(submits)
    assert otel("async_dispatch.outcomes", "kind") == nonzero(outcomes)
    assert otel("async_dispatch.rate_limit_pauses", "source") == nonzero(pauses)
    assert telemetry.otel_points("async_dispatch.tracked_tasks") == {"": 0}

    # Spans: one per check and one per submit, each check naming its task and attempt;
    # one track span per task tracked (30 submits, 2 `track()`s), and one task span per
    # final outcome, each a child of its task's track span, as is every check.
    spans = Counter(span.name for span in telemetry.spans())
    assert spans == {
        SPAN_CHECK: stats.polls_sent,
        SPAN_SUBMIT: TASKS,
        SPAN_TRACK: TASKS + 2,
        SPAN_TASK: TASKS + 2,  # every tracked task ends in exactly one final outcome
    }
    tracks = {span.context.span_id for span in telemetry.spans() if span.name == SPAN_TRACK}
    for span in telemetry.spans():
        if span.name in (SPAN_CHECK, SPAN_TASK, SPAN_SUBMIT):
            assert span.parent is not None
            assert span.parent.span_id in tracks, span.name
    attempts: dict[str, list[int]] = {}
    for span in telemetry.spans():
        if span.name == SPAN_CHECK:
            attributes = dict(span.attributes or {})
            request_id = str(attributes["async_dispatch.request_id"])
            attempt = attributes["async_dispatch.attempt"]
            assert isinstance(attempt, int)
            attempts.setdefault(request_id, []).append(attempt)
    for request_id, seen in attempts.items():
        assert sorted(seen) == list(range(1, len(seen) + 1)), request_id
    assert set(run.submitted) <= set(attempts)


# -- a bare client reports its own calls ----------------------------------------------------


@pytest.mark.anyio
async def test_a_bare_client_reports_submits_checks_and_its_429s(
    telemetry: Telemetry, scale: float
) -> None:
    limited = config(scale, seed=9)
    limited = attrs.evolve(limited, faults=Faults(), rate_limit=RateLimit(rate=2 / scale, burst=1))
    async with (
        Simulator(limited) as sim,
        sim.client(retry=retry(scale), hooks=telemetry.hooks) as client,
    ):
        request_id = await client.submit("/Operator one")
        await client.get_status(request_id)  # answered 429 first: the burst is spent
        await client.wait(request_id, timeout=60 * scale, interval=0.5 * scale)
    submits = telemetry.prom("submits_total", "result", SUBMIT_RESULTS)
    checks = telemetry.prom("checks_total", "result", CHECK_RESULTS)
    pauses = telemetry.prom("rate_limit_pauses_total", "source", RATE_LIMIT_SOURCES)

    assert submits["accepted"] == sum(submits.values()) == 1
    # One check per get_status call; the 429s were retried inside them.
    assert sum(checks.values()) == sim.stats.requests["status"] - sim.stats.rate_limited
    assert checks["rate-limited"] == 0
    assert pauses["client"] >= 1
    assert pauses["check"] == 0
    spans = [span for span in telemetry.spans() if span.name == SPAN_CHECK]
    assert len(spans) == sum(checks.values())
    assert [dict(span.attributes or {})["async_dispatch.attempt"] for span in spans] == [
        1,
        *range(1, len(spans)),
    ]


@pytest.mark.anyio
async def test_a_submit_span_is_a_child_of_the_callers_span(telemetry: Telemetry) -> None:
    tracer = telemetry.otel._tracer
    async with (
        Simulator(SimulatorConfig(api_keys=KEY, seed=1)) as sim,
        sim.client(hooks=telemetry.hooks) as client,
    ):
        with tracer.start_as_current_span("POST /batches") as handler:
            request_id = await client.submit("/Operator from a request handler")
    (submit,) = [span for span in telemetry.spans() if span.name == SPAN_SUBMIT]
    assert submit.parent is not None
    assert submit.parent.span_id == handler.get_span_context().span_id
    done = [e for e in telemetry.recorder.events if isinstance(e, SubmitDone)]
    assert [(e.result, e.request_id) for e in done] == [("accepted", request_id)]


# -- nothing secret, nothing unbounded ------------------------------------------------------


@pytest.mark.anyio
async def test_no_label_attribute_span_or_log_holds_the_key_or_a_request_id(
    telemetry: Telemetry, scale: float
) -> None:
    with capture_logs(logging.DEBUG) as logs:
        run = await run_with_faults(scale, telemetry.hooks, seed=8)
        # A careless proxy echoing the key in every error body, to the client's own calls.
        leaky = ChaosService(
            {"req_leaky": Timeline.finishing(0.0)},
            [Fault.HTTP_502_HTML, Fault.RATE_LIMITED, Fault.ODD_STATUS, Fault.HTTP_500],
            key=KEY,
            leaky=True,
            retry_after=0.0,
        )
        leaky.start()
        async with client_for(leaky, key=KEY, hooks=telemetry.hooks) as client:
            for _ in range(3):
                with pytest.raises(DispatchError):
                    await client.get_status("req_leaky")
            with pytest.raises(DispatchError):
                await client.submit("/Operator leaky")
    request_ids = [*run.submitted, "req_nobody_knows_this_one", "req_leaky"]

    # Prometheus: every sample's labels come from closed sets; the exposition names no id.
    exposition = generate_latest(telemetry.registry).decode()
    for family in telemetry.registry.collect():
        for sample in family.samples:
            for name, value in sample.labels.items():
                assert KEY not in value
                assert not value.startswith("req_"), (sample.name, name, value)
    assert KEY not in exposition
    for request_id in request_ids:
        assert request_id not in exposition

    # OpenTelemetry metrics: the same for every data point's attributes.
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    metrics_json = data.to_json()
    assert KEY not in metrics_json
    for request_id in request_ids:
        assert request_id not in metrics_json
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    for attribute in (point.attributes or {}).values():
                        assert not str(attribute).startswith("req_"), (metric.name, attribute)

    # Spans: names, attributes, events (exceptions included), status texts: never the key.
    spans = telemetry.spans()
    assert spans
    failed = [span for span in spans if span.events]
    assert failed  # the leaky service's errors were recorded on their spans
    # Each span's attributes are the core's own (closed sets, and the request id on the
    # spans of one request) and the conventions': nothing else can carry a secret.
    allowed = {
        SPAN_CHECK: {"async_dispatch.request_id", "async_dispatch.attempt", "http.request.method"},
        SPAN_SUBMIT: set(),
        SPAN_TRACK: {"async_dispatch.operation", "messaging.system", "messaging.operation.type"},
        SPAN_TASK: {
            "async_dispatch.kind",
            "async_dispatch.via",
            "async_dispatch.polls",
            "async_dispatch.attempts",
        },
    }
    for span in spans:
        assert span.name in allowed
        assert KEY not in span.to_json()
        assert set(span.attributes or {}) <= allowed[span.name], span.name

    # Logs, at debug level: every line the hooks and the core wrote.
    assert logs
    assert {"checked", "submitted", "resolved", "rate_limited"} <= {e["event"] for e in logs}
    assert KEY not in repr(logs)
