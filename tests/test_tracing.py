"""One trace per task (issue #23), in one process and through each store.

The OpenTelemetry SDK's in-memory exporter records the spans; what is checked is the
shape a tracing backend shows: the track span in the caller's trace, every check and the
task's life its children, the outcome carrying the context for its consumer to link to,
whichever store (memory, Redis, a SQLite file reopened by a new poller) kept the task.
The multi-process version (three replicas, one Redis) is tests/test_trace_replicas.py.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _logs import capture_logs
from async_dispatch import Outcome, OutcomeKind, Poller, ResubmitPolicy, TaskStore
from async_dispatch._outcome_codec import decode_outcome, encode_outcome, trace_of, trace_text
from async_dispatch.instrumentation import (
    SPAN_CHECK,
    SPAN_TASK,
    SPAN_TRACK,
    Event,
    Instrumentation,
    TaskTracingHook,
    TracingHook,
)
from async_dispatch.instrumentation.otel import OpenTelemetryHook, task_context, task_links
from async_dispatch.redis import RedisStore
from async_dispatch.sqlite import SQLiteStore
from async_dispatch.testing import Durations, OutcomeMix, simulator

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"initial_interval": 0.1, "max_interval": 0.2, "rate": 500, "burst": 50}


class Traced:
    """An SDK tracer provider with an in-memory exporter, and the hook on it."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.hook = OpenTelemetryHook(tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer("app")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.exporter.get_finished_spans()
        return [s for s in found if name is None or s.name == name]


@pytest.fixture
def traced() -> Iterator[Traced]:
    tracing = Traced()
    yield tracing
    tracing.provider.shutdown()


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def parent_id(span: ReadableSpan) -> int | None:
    return int(span.parent.span_id) if span.parent is not None else None


@pytest.mark.virtual_clock
async def test_each_task_is_one_trace_from_its_request_to_its_consumer(traced: Traced) -> None:
    durations = Durations(median=0.5, sigma=0.3, minimum=0.2, maximum=1.0)
    async with (
        simulator(seed=3, durations=durations, outcomes=OutcomeMix.only("success")) as sim,
        sim.client(hooks=[traced.hook]) as client,
        Poller(client, **FAST) as poller,
    ):
        with traced.tracer.start_as_current_span("POST /jobs") as request:
            submitted = await poller.submit("/Operator first", deadline=30)
        await poller.track(submitted + "-unknown", deadline=30)  # a 404: FAILED, untraced caller
        handled: dict[str, Outcome] = {}
        with anyio.fail_after(30):
            async for outcome in poller:
                with traced.tracer.start_as_current_span("handle", links=task_links(outcome)):
                    handled[outcome.request_id] = outcome
    request_ctx = request.get_span_context()
    tracks = traced.spans(SPAN_TRACK)
    assert len(tracks) == 2
    submit_track = next(s for s in tracks if parent_id(s) == request_ctx.span_id)
    assert submit_track.kind is trace.SpanKind.PRODUCER
    assert submit_track.attributes == {
        "async_dispatch.operation": "submit",
        "messaging.system": "async_dispatch",
        "messaging.operation.type": "create",
    }
    outcome = handled[submitted]
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.trace_context is not None
    assert set(outcome.trace_context) <= {"traceparent", "tracestate"}
    # The consumer's link and `task_context` name the track span.
    (link,) = task_links(outcome)
    assert link.context.span_id == span_id(submit_track)
    assert trace.get_current_span(task_context(outcome)).get_span_context() == link.context
    # Every check of the task and its life are children of its track span, in the
    # caller's trace.
    checks = [s for s in traced.spans(SPAN_CHECK) if parent_id(s) == span_id(submit_track)]
    assert len(checks) == outcome.polls >= 1
    assert all(s.context is not None and s.context.trace_id == request_ctx.trace_id for s in checks)
    assert all(s.kind is trace.SpanKind.CLIENT for s in checks)
    lives = {parent_id(s): s for s in traced.spans(SPAN_TASK)}
    life = lives[span_id(submit_track)]
    assert dict(life.attributes or {}) == {
        "async_dispatch.kind": "success",
        "async_dispatch.via": "poll",
        "async_dispatch.polls": outcome.polls,
        "async_dispatch.attempts": 1,
    }
    assert life.status.status_code is trace.StatusCode.UNSET
    failed = lives[span_id(next(s for s in tracks if s is not submit_track))]
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert len(traced.spans("handle")) == 2


@pytest.mark.virtual_clock
async def test_a_resubmitted_task_stays_one_trace_and_counts_its_attempts(
    traced: Traced,
) -> None:
    """Every attempt's checks are children of the task's one track span, and the task's
    life says how many submits it took."""
    async with (
        simulator(seed=5, durations=Durations.fixed(0.2), outcomes=OutcomeMix.only("error")) as sim,
        sim.client(hooks=[traced.hook]) as client,
        Poller(client, resubmit=ResubmitPolicy(attempts=3, wait=0.5), **FAST) as poller,
    ):
        with traced.tracer.start_as_current_span("POST /jobs"):
            await poller.submit("/Operator fails every time", deadline=60)
        with anyio.fail_after(60):
            outcomes = [outcome async for outcome in poller]
    [outcome] = outcomes
    assert outcome.kind is OutcomeKind.ERROR
    assert len(outcome.attempts) == 3
    [track] = traced.spans(SPAN_TRACK)
    checks = traced.spans(SPAN_CHECK)
    assert {parent_id(s) for s in checks} == {span_id(track)}  # all attempts, one trace
    assert len(checks) >= 3
    [life] = traced.spans(SPAN_TASK)
    assert parent_id(life) == span_id(track)
    assert life.attributes is not None
    assert life.attributes["async_dispatch.attempts"] == 3
    assert life.status.status_code is trace.StatusCode.ERROR


@pytest.mark.virtual_clock
async def test_a_restored_snapshot_goes_on_with_each_tasks_trace(traced: Traced) -> None:
    durations = Durations.fixed(1.0)  # outlives the first poller: it forgets at once
    async with (
        simulator(seed=4, durations=durations, outcomes=OutcomeMix.only("success")) as sim,
        sim.client(hooks=[traced.hook]) as client,
    ):
        async with Poller(client, **FAST) as first:
            await first.submit("/Operator outlives its process", deadline=60)
            snapshot = first.snapshot()
            await first.forget(snapshot[0]["request_id"])
        assert snapshot[0]["trace"]["traceparent"]
        async with Poller(client, **FAST) as second:
            assert await second.restore(json.loads(json.dumps(snapshot))) == 1
            with anyio.fail_after(60):
                [outcome] = [outcome async for outcome in second]
    [track] = traced.spans(SPAN_TRACK)  # the restore opened no new trace
    assert outcome.trace_context == snapshot[0]["trace"]
    [life] = traced.spans(SPAN_TASK)
    assert parent_id(life) == span_id(track)
    assert {parent_id(s) for s in traced.spans(SPAN_CHECK)} == {span_id(track)}


@pytest.mark.virtual_clock
async def test_untraced_tasks_carry_no_context() -> None:
    async with (
        simulator(seed=3, outcomes=OutcomeMix.only("success")) as sim,
        sim.client(hooks=[]) as client,
        Poller(client, **FAST) as poller,
    ):
        await poller.submit("/Operator untraced", deadline=30)
        with anyio.fail_after(30):
            outcomes = [outcome async for outcome in poller]
    assert [o.trace_context for o in outcomes] == [None]
    assert task_links(outcomes[0]) == []
    assert not trace.get_current_span(task_context(outcomes[0])).get_span_context().is_valid


@pytest.mark.virtual_clock
async def test_one_span_for_a_batch_of_tracks(traced: Traced) -> None:
    async with (
        simulator(seed=3, outcomes=OutcomeMix.only("never")) as sim,
        sim.client(hooks=[traced.hook]) as client,
        Poller(client, **FAST) as poller,
    ):
        with traced.tracer.start_as_current_span("import"):
            await poller.track_many([f"req_{n:08d}" for n in range(3)], deadline=0.5)
        with anyio.fail_after(30):
            outcomes = [outcome async for outcome in poller]
    (track,) = traced.spans(SPAN_TRACK)
    assert {o.kind for o in outcomes} == {OutcomeKind.FAILED}  # the simulator knows none
    assert {str(o.trace_context) for o in outcomes} == {str(outcomes[0].trace_context)}
    assert all(task_links(o)[0].context.span_id == span_id(track) for o in outcomes)


# -- the stores keep it -----------------------------------------------------------------------


async def _track_traced(
    poller: Poller, traced: Traced, deadline: float, *, submit: bool = False
) -> dict[str, str]:
    """Track (or submit: a task the service knows, never finishing) one task inside a
    span; the context the store keeps for it."""
    with traced.tracer.start_as_current_span("caller"):
        if submit:
            request_id = await poller.submit("/Operator never ends", deadline=deadline)
        else:
            request_id = "req_00000001"
            await poller.track(request_id, deadline=deadline)
    task = await poller.store.get(request_id)
    assert task is not None
    assert task.trace is not None
    return dict(task.trace)


@pytest.mark.redis
async def test_a_redis_store_keeps_the_context_for_every_replica(
    traced: Traced, redis_url: str, redis_name: str
) -> None:
    other = Traced()
    async with (
        simulator(seed=3, outcomes=OutcomeMix.only("never")) as sim,
        sim.client(hooks=[traced.hook]) as client,
        sim.client(hooks=[other.hook]) as other_client,
        Poller(client, store=RedisStore(redis_url, name=redis_name), **FAST) as a,
        Poller(other_client, store=RedisStore(redis_url, name=redis_name), **FAST) as b,
    ):
        context = await _track_traced(a, traced, deadline=1.5)
        # The other replica reads the task record, context included.
        task = await b.store.get("req_00000001")
        assert task is not None
        assert task.trace == context
        with anyio.fail_after(30):
            outcomes = [o async for o in a] + [o async for o in b]
    (outcome,) = outcomes
    # FAILED (a 404) or TIMED_OUT (store_expire.lua builds that outcome itself): either
    # way the context came back out of Redis.
    assert outcome.trace_context == context
    (track,) = traced.spans(SPAN_TRACK)
    checks = traced.spans(SPAN_CHECK) + other.spans(SPAN_CHECK)
    assert checks
    assert all(parent_id(s) == span_id(track) for s in checks)
    other.provider.shutdown()


@pytest.mark.redis
async def test_a_timed_out_outcome_from_redis_carries_the_context(
    traced: Traced, redis_url: str, redis_name: str
) -> None:
    slow = {**FAST, "initial_interval": 30.0, "max_interval": 30.0}  # no check: the deadline
    async with (
        simulator(seed=3, outcomes=OutcomeMix.only("never")) as sim,
        sim.client(hooks=[traced.hook]) as client,
        Poller(client, store=RedisStore(redis_url, name=redis_name), **slow) as poller,
    ):
        context = await _track_traced(poller, traced, deadline=1.0, submit=True)
        with anyio.fail_after(30):
            (outcome,) = [o async for o in poller]
    assert (outcome.kind, outcome.via) == (OutcomeKind.TIMED_OUT, "deadline")
    assert outcome.trace_context == context
    (life,) = traced.spans(SPAN_TASK)
    assert dict(life.attributes or {})["async_dispatch.via"] == "deadline"


async def test_a_sqlite_store_keeps_the_context_across_a_restart(
    traced: Traced, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.db"
    slow = {**FAST, "initial_interval": 30.0, "max_interval": 30.0}
    async with simulator(seed=3, outcomes=OutcomeMix.only("never")) as sim:
        async with (
            sim.client(hooks=[traced.hook]) as client,
            Poller(client, store=SQLiteStore(path), **slow) as poller,
        ):
            context = await _track_traced(poller, traced, deadline=1.0, submit=True)
        # A new poller on the file: the task resumes with its context, and times out.
        async with (
            sim.client(hooks=[traced.hook]) as client,
            Poller(client, store=SQLiteStore(path), **slow) as poller,
        ):
            with anyio.fail_after(30):
                (outcome,) = [o async for o in poller]
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert outcome.trace_context == context
    (track,) = traced.spans(SPAN_TRACK)
    (life,) = traced.spans(SPAN_TASK)
    assert parent_id(life) == span_id(track)


async def test_a_sqlite_file_from_before_trace_contexts_opens(tmp_path: Path) -> None:
    """A file whose tasks table has no trace column gains one; its tasks resume untraced."""
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema', '1');
            CREATE TABLE tasks (request_id TEXT PRIMARY KEY, context TEXT,
                started REAL NOT NULL, deadline REAL NOT NULL, due REAL,
                polls INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
                last_error TEXT, last_status TEXT, last_input TEXT);
            INSERT INTO tasks (request_id, context, started, deadline, due)
                VALUES ('req_old', 'null', 1.0, 9999999999.0, NULL);
            """
        )
        db.commit()

    store: TaskStore = SQLiteStore(path)
    async with store.attach(
        lambda o, r: None, anyio.current_time, lambda: None, last_check_lead=1.0
    ):
        task = await store.get("req_old")
        assert task is not None
        assert task.trace is None
        assert (task.spec, task.phase) == (None, "")
    with contextlib.closing(sqlite3.connect(path)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(tasks)")]
    # Added in place (the resubmission's spec and phase came with the same version).
    assert columns[-3:] == ["trace", "spec", "phase"]


# -- the codec and the seam -------------------------------------------------------------------

contexts = st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=4)


@given(contexts)
def test_a_trace_context_survives_the_stores_text(context: dict[str, str]) -> None:
    assert trace_of(trace_text(context)) == (context or None)
    outcome = Outcome(
        request_id="req_1",
        kind=OutcomeKind.SUCCESS,
        status=None,
        error=None,
        context=None,
        polls=1,
        elapsed=0.5,
        trace_context=context or None,
    )
    assert decode_outcome(encode_outcome(outcome), 1).trace_context == (context or None)


@given(st.one_of(st.text(), st.integers(), st.none(), st.lists(st.text())))
def test_a_stored_trace_context_that_is_not_one_is_none(value: object) -> None:
    """A store is not trusted to hold only what we wrote: anything else reads as none."""
    text = value if isinstance(value, str) else json.dumps(value)
    result = trace_of(text)
    assert result is None or (
        isinstance(result, dict) and all(isinstance(v, str) for v in result.values())
    )
    assert trace_of(json.dumps(["00-abc"])) is None
    assert trace_of(json.dumps({"traceparent": 1})) is None
    assert trace_of("x" * 10_000) is None


class BrokenCapture:
    """A task tracer whose `capture` fails: the task is tracked anyway, untraced."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Mapping[str, Any] | None, str]] = []

    def __call__(self, event: Event, /) -> None:
        pass

    def span(self, name: str, attributes: Mapping[str, str | int | float]) -> Any:
        return contextlib.nullcontext()

    def capture(self) -> dict[str, str] | None:
        raise RuntimeError("broken tracer")

    def task_span(
        self,
        name: str,
        attributes: Mapping[str, str | int | float],
        *,
        trace: Mapping[str, str] | None,
        kind: str,
    ) -> Any:
        self.spans.append((name, trace, kind))
        return contextlib.nullcontext()


class PlainTracer:
    """A `TracingHook` from before task tracing: it gets plain spans, as before."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, event: Event, /) -> None:
        pass

    def span(self, name: str, attributes: Mapping[str, str | int | float]) -> Any:
        self.names.append(name)
        return contextlib.nullcontext()


@pytest.mark.virtual_clock
async def test_a_failing_capture_loses_the_trace_not_the_task() -> None:
    broken, plain = BrokenCapture(), PlainTracer()
    assert isinstance(broken, TaskTracingHook)
    assert isinstance(plain, TracingHook)
    assert not isinstance(plain, TaskTracingHook)
    with capture_logs() as logs:
        async with (
            simulator(seed=3, outcomes=OutcomeMix.only("success")) as sim,
            sim.client(hooks=[broken, plain]) as client,
            Poller(client, **FAST) as poller,
        ):
            await poller.submit("/Operator anyway", deadline=30)
            await poller.submit("/Operator again", deadline=30)
            with anyio.fail_after(30):
                outcomes = [o async for o in poller]
    assert [o.kind for o in outcomes] == [OutcomeKind.SUCCESS] * 2
    assert all(o.trace_context is None for o in outcomes)
    assert ("async_dispatch.track", None, "producer") in broken.spans
    assert ("async_dispatch.check", None, "client") in broken.spans
    assert {"async_dispatch.track", "async_dispatch.check"} <= set(plain.names)
    failures = [e for e in logs if e["event"] == "instrumentation_hook_failed"]
    assert len(failures) == 1  # once per hook, not per task


def test_capture_without_a_task_tracer_is_none() -> None:
    assert Instrumentation([PlainTracer()]).capture() is None
    assert Instrumentation().capture() is None
