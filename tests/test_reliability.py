"""Reliability: exactly one right final outcome per task under any fault schedule, nothing
left behind by cancellation, memory that comes back, and no key in any log.

The fault-schedule and cancellation properties run hypothesis examples on trio's
`MockClock`: every example is minutes of virtual time against `_chaos.ChaosService` and
costs milliseconds. Set ``RELIABILITY_REPORT=path.json`` to get the totals of a run (they
are quoted in docs/reliability.md).
"""

from __future__ import annotations

import gc
import json
import os
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import attrs
import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _chaos import (
    KEY,
    ChaosService,
    Fault,
    Step,
    Timeline,
    client_for,
    status_payload,
)
from _logs import capture_logs
from async_dispatch import (
    AuthenticationError,
    DeliveryResult,
    NotFoundError,
    Outcome,
    OutcomeKind,
    Poller,
)

pytestmark = pytest.mark.virtual_clock  # trio runs on a virtual clock

#: Totals over the session, for docs/reliability.md.
TOTALS: Counter[str] = Counter()

#: The longest the poller may need to see a finished task once faults stop: a full 429
#: pause, a full error backoff, a check interval with jitter, and a few seconds spare.
#: (The share of the rate budget per task is added per example.)
SETTLE = 60.0 + 30.0 + 10.0 * 1.2 + 5.0


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(dict(TOTALS), f, indent=2, sort_keys=True)


def run_virtual(main: Any, *args: Any) -> Any:
    return trio.run(main, *args, clock=trio.testing.MockClock(autojump_threshold=0))


# -- the world an example lives in ------------------------------------------------------


@attrs.frozen
class TaskPlan:
    """One tracked task: its true life, its deadline, and how webhooks treat it."""

    request_id: str
    #: None: the service answers 404 for this id.
    timeline: Timeline | None
    deadline: float
    #: Seconds after completion a webhook arrives; None for no webhook.
    webhook_after: float | None
    duplicate_webhook: bool


@st.composite
def task_plans(draw: st.DrawFn, index: int) -> TaskPlan:
    request_id = f"req_{index:03}"
    shape = draw(st.sampled_from(["finish", "finish", "finish", "never", "hitl", "missing"]))
    finish = draw(st.sampled_from([0.0, 0.5, 3.0, 20.0, 60.0, 150.0, 290.0]))
    final = draw(st.sampled_from(["success", "error"]))
    timeline: Timeline | None
    if shape == "finish":
        timeline = Timeline.finishing(finish, final)
    elif shape == "never":
        timeline = Timeline.never()
    elif shape == "hitl":
        asked = {"question": f"code for {request_id}"}
        timeline = Timeline(
            (
                Step(0, "pending"),
                Step(finish, "input-required", "need a code", hitl=asked),
                Step(finish + 15, "pending"),  # answered; then going backwards once:
                Step(finish + 20, "input-required", "need a code", hitl=asked),
                Step(finish + 25, "pending"),
                Step(finish + 40, final, f"{final} after input"),
            )
        )
    else:
        timeline = None
    webhook = draw(st.sampled_from([None, None, 0.0, 0.2, 5.0]))
    return TaskPlan(
        request_id=request_id,
        timeline=timeline,
        deadline=draw(st.sampled_from([10.0, 45.0, 120.0, 200.0, 300.0])),
        webhook_after=webhook if timeline is not None and timeline.final else None,
        duplicate_webhook=draw(st.booleans()),
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[TaskPlan], list[Fault], dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=12))
    plans = [draw(task_plans(n)) for n in range(count)]
    faults = draw(st.lists(st.sampled_from(list(Fault)), max_size=80))
    poller = {
        "rate": draw(st.sampled_from([1.0, 5.0, 50.0])),
        "burst": draw(st.sampled_from([1, 5])),
        "max_in_flight": draw(st.sampled_from([1, 3, 10])),
        "initial_interval": 2.0,
        "max_interval": 10.0,
        "jitter": 0.2,
        "seed": draw(st.integers(min_value=0, max_value=2**16)),
    }
    return plans, faults, poller


async def send_webhooks(poller: Poller, service: ChaosService, plans: list[TaskPlan]) -> None:
    """Deliver each planned webhook when due (twice when planned), like a real receiver."""

    async def one(plan: TaskPlan) -> None:
        assert plan.timeline is not None
        final = plan.timeline.final
        assert final is not None
        assert plan.webhook_after is not None
        await anyio.sleep(service.origin + final.at + plan.webhook_after - anyio.current_time())
        payload = status_payload(plan.request_id, final, origin=service.origin)
        for _ in range(2 if plan.duplicate_webhook else 1):
            result = await poller.deliver(payload)
            assert result in (DeliveryResult.ACCEPTED, DeliveryResult.DUPLICATE)
            TOTALS[f"webhooks_{result.value}"] += 1

    async with anyio.create_task_group() as tg:
        for plan in plans:
            if plan.webhook_after is not None:
                tg.start_soon(one, plan)


def check_outcomes(
    plans: list[TaskPlan],
    outcomes: list[Outcome],
    service: ChaosService,
    settle: float,
) -> None:
    """Exactly one final outcome per task, and the right one."""
    finals: dict[str, Outcome] = {}
    notes: Counter[str] = Counter()
    for outcome in outcomes:
        assert outcome.request_id not in finals, f"an outcome after the final one: {outcome}"
        if outcome.final:
            finals[outcome.request_id] = outcome
        else:
            assert outcome.kind is OutcomeKind.INPUT_REQUIRED
            notes[outcome.request_id] += 1
    assert sorted(finals) == sorted(p.request_id for p in plans), "lost or unknown tasks"
    faults_over = (
        max(
            (r.at + (service.slow if r.fault is Fault.SLOW_TIMEOUT else 0.0))
            for r in service.log
            if r.fault is not Fault.NONE
        )
        if service.injected
        else 0.0
    )
    for plan in plans:
        outcome = finals[plan.request_id]
        at = outcome.elapsed  # tracking started at the service's time 0
        if plan.timeline is None:
            assert outcome.kind in (OutcomeKind.FAILED, OutcomeKind.TIMED_OUT)
            if outcome.kind is OutcomeKind.FAILED:
                assert isinstance(outcome.error, NotFoundError)
            continue
        final = plan.timeline.final
        assert notes[plan.request_id] <= 1, "one input request, reported more than once"
        if outcome.kind is OutcomeKind.TIMED_OUT:
            assert at == pytest.approx(plan.deadline, abs=1e-6)
            if final is not None:
                observable = max(final.at, faults_over) + settle
                if plan.webhook_after is not None:
                    observable = min(observable, final.at + plan.webhook_after)
                assert observable >= plan.deadline, (
                    f"{plan.request_id} finished at {final.at} but timed out at {at}"
                )
        else:
            assert final is not None, f"{plan.request_id} never finishes, got {outcome.kind}"
            assert outcome.kind.value == final.status
            assert outcome.status is not None
            assert outcome.status.text == final.text
            assert final.at <= at <= plan.deadline + 1e-6
        TOTALS[f"outcome_{outcome.kind.value}"] += 1


# -- exactly once under any fault schedule ----------------------------------------------


def exactly_one_right_outcome(
    world: tuple[list[TaskPlan], list[Fault], dict[str, Any]],
) -> None:
    plans, faults, options = world
    service = ChaosService(
        {p.request_id: p.timeline for p in plans if p.timeline is not None},
        faults,
        retry_after=7.0,
    )

    async def main() -> tuple[list[Outcome], Poller]:
        outcomes: list[Outcome] = []
        service.start()
        with anyio.fail_after(5_000):
            async with client_for(service) as client, Poller(client, **options) as poller:
                for plan in plans:
                    await poller.track(plan.request_id, deadline=plan.deadline)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send_webhooks, poller, service, plans)
                    outcomes.extend([o async for o in poller])
                    tg.cancel_scope.cancel()
        return outcomes, poller

    outcomes, poller = run_virtual(main)
    settle = SETTLE + len(plans) / options["rate"]
    check_outcomes(plans, outcomes, service, settle)
    assert service.active == 0
    assert poller.stats.polls_sent == len(service.log)
    assert (poller.stats.tracked, poller.stats.in_flight) == (0, 0)
    TOTALS["examples"] += 1
    TOTALS["tasks_tracked"] += len(plans)
    TOTALS["requests"] += len(service.log)
    TOTALS["faults_injected"] += service.injected
    TOTALS["virtual_seconds"] += int(max(p.deadline for p in plans))


def _examples(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


test_exactly_one_right_outcome_under_any_fault_schedule = _examples(40)(
    given(world=worlds())(exactly_one_right_outcome)
)
test_exactly_one_right_outcome_soak = pytest.mark.soak(
    _examples(2_000)(given(world=worlds())(exactly_one_right_outcome))
)


# -- cancellation at any point ----------------------------------------------------------


def cancellation_anywhere(
    world: tuple[list[TaskPlan], list[Fault], dict[str, Any]], cancel_at: float, what: str
) -> None:
    plans, faults, options = world
    service = ChaosService(
        {p.request_id: p.timeline for p in plans if p.timeline is not None}, faults
    )

    async def first_life(received: list[Outcome]) -> list[dict[str, Any]]:
        async with client_for(service) as client:
            poller = Poller(client, **options)

            async def life(scope: anyio.CancelScope | None) -> None:
                async with poller:
                    for plan in plans:
                        await poller.track(plan.request_id, deadline=plan.deadline)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(send_webhooks, poller, service, plans)
                        # A loop, not a comprehension: a cancelled comprehension would drop
                        # the outcomes it had already received.
                        with scope or anyio.CancelScope():
                            async for outcome in poller:
                                received.append(outcome)
                        tg.cancel_scope.cancel()

            if what == "consumer":
                async with anyio.create_task_group() as tg:
                    consumer_scope = anyio.CancelScope(deadline=anyio.current_time() + cancel_at)
                    tg.start_soon(life, consumer_scope)
            elif what == "poller":
                with anyio.move_on_after(cancel_at):
                    await life(None)
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(life, None)
                    await anyio.sleep(cancel_at)
                    tg.cancel_scope.cancel()
            assert service.active == 0
            return poller.snapshot()

    async def main() -> tuple[list[Outcome], list[Outcome], list[dict[str, Any]]]:
        service.start()
        before = {t.id for t in anyio.get_running_tasks()}
        received: list[Outcome] = []
        with anyio.fail_after(5_000):
            snapshot_entries = await first_life(received)
        assert {t.id for t in anyio.get_running_tasks()} == before, "a task outlived its poller"
        snapshot_entries = json.loads(json.dumps(snapshot_entries))
        # The second life: restore and finish everything that was left.
        again: list[Outcome] = []
        left = {e["request_id"] for e in snapshot_entries}
        with anyio.fail_after(5_000):
            async with client_for(service) as client, Poller(client, **options) as poller:
                assert await poller.restore(snapshot_entries) == len(left)
                async with anyio.create_task_group() as tg:
                    rest = [p for p in plans if p.request_id in left]
                    tg.start_soon(send_webhooks, poller, service, rest)
                    again.extend([o async for o in poller])
                    tg.cancel_scope.cancel()
        assert {t.id for t in anyio.get_running_tasks()} == before
        return received, again, snapshot_entries

    received, again, entries = run_virtual(main)
    done_first = {o.request_id for o in received if o.final}
    left = {e["request_id"] for e in entries}
    assert done_first.isdisjoint(left), "a task both finished and left in the snapshot"
    assert done_first | left == {p.request_id for p in plans}, "a task was lost"
    finals = [o.request_id for o in received + again if o.final]
    assert sorted(finals) == sorted(p.request_id for p in plans), "lost or duplicated"
    for outcome in received + again:
        plan = next(p for p in plans if p.request_id == outcome.request_id)
        final = plan.timeline.final if plan.timeline is not None else None
        if outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR):
            assert final is not None
            assert outcome.kind.value == final.status
    TOTALS["cancellation_examples"] += 1
    TOTALS["cancellation_tasks"] += len(plans)
    TOTALS[f"cancelled_{what.replace(' ', '_')}"] += 1


_cancellations = given(
    world=worlds(),
    cancel_at=st.floats(min_value=0.0, max_value=250.0),
    what=st.sampled_from(["consumer", "poller", "task group"]),
)
test_cancellation_anywhere_leaves_nothing_behind_and_loses_nothing = _examples(15)(
    _cancellations(cancellation_anywhere)
)
test_cancellation_anywhere_soak = pytest.mark.soak(
    _examples(1_000)(_cancellations(cancellation_anywhere))
)


# -- memory -----------------------------------------------------------------------------


class _Instant(httpx.AsyncBaseTransport):
    """The cheapest honest service: every task is finished (or unknown) when first read."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request_id = request.url.path.rsplit("/", 1)[-1]
        if request_id.endswith("21"):
            return httpx.Response(404, content=b'{"detail":"Not Found"}')
        body = status_payload(request_id, Step(0, "success", "ok"))
        return httpx.Response(200, content=json.dumps(body).encode())


def churn(total: int, wave: int) -> tuple[int, int, int, Counter[str]]:
    """Track and finish `total` tasks in waves; return (baseline, after, peak, kinds)."""

    async def main() -> tuple[int, int, int, Counter[str]]:
        kinds: Counter[str] = Counter()
        async with client_for(_Instant()) as client:
            options: dict[str, Any] = {"rate": 1e6, "burst": 1000, "max_in_flight": 20}
            async with Poller(client, **options) as poller:
                gc.collect()
                baseline = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                for start in range(0, total, wave):
                    ids = [f"req_{n:07}" for n in range(start, start + wave)]
                    for n, request_id in enumerate(ids):
                        # A quarter times out, one in twenty is polled (HTTP is the slow
                        # part), the rest end by webhook.
                        await poller.track(
                            request_id, deadline=0.01 if n % 4 == 0 else 600, context=n
                        )
                    for n, request_id in enumerate(ids):
                        if n % 4 and n % 20 != 1:
                            payload = status_payload(request_id, Step(0, "success", "ok"))
                            await poller.deliver(payload)
                    async for outcome in poller:
                        kinds[outcome.kind.value] += 1
                    assert len(poller) == 0
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
                peak = tracemalloc.get_traced_memory()[1]
        return baseline, after, peak, kinds

    # asyncio in real time: its scheduling is cheaper than trio's under tracemalloc.
    tracemalloc.start()
    try:
        return anyio.run(main, backend="asyncio")
    finally:
        tracemalloc.stop()


def _assert_memory_returns(total: int, wave: int) -> None:
    baseline, after, peak, kinds = churn(total, wave)
    assert sum(kinds.values()) == total
    assert kinds["timed-out"] == total // 4
    assert kinds["failed"] > 0
    # What stays is the bounded memory of recently finished ids (for late webhooks),
    # about 160 bytes each, and no trace of the tasks themselves.
    remembered = min(total, 65_536)
    grown = after - baseline
    TOTALS["memory_tasks"] += total
    TOTALS["memory_grown_bytes"] = grown
    TOTALS["memory_peak_bytes"] = peak - baseline
    assert grown < remembered * 250 + 256 * 1024, f"{grown} bytes kept after {total} tasks"


def test_memory_returns_near_baseline_after_waves() -> None:
    _assert_memory_returns(10_000, 5_000)


@pytest.mark.soak
def test_memory_returns_near_baseline_after_100k() -> None:
    _assert_memory_returns(100_000, 10_000)


# -- secrets ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_key_never_reaches_logs_outcomes_or_errors() -> None:
    timelines = {f"req_{n}": Timeline.finishing(0.0) for n in range(8)}
    service = ChaosService(
        timelines,
        # Every fault that does not wait whole seconds (those are for virtual time).
        [f for f in Fault if f not in (Fault.SLOW_TIMEOUT, Fault.RATE_LIMITED, Fault.HTTP_408)],
        retry_after=0.01,
        leaky=True,
    )
    options: dict[str, Any] = {"initial_interval": 0.01, "max_interval": 0.01, "rate": 1e3}
    texts: list[str] = []
    with capture_logs() as logs:
        service.start()
        async with client_for(service) as client:
            async with Poller(client, **options) as poller:
                await poller.track_many(timelines)
                await poller.track("req_unknown")
                async for outcome in poller:
                    texts += [repr(outcome), str(outcome.error), repr(outcome.error)]
                texts += [repr(poller), json.dumps(poller.snapshot()), repr(poller.stats)]
            texts.append(repr(client))
        service.key = "another-key"  # now every answer is a 401 that echoes the key
        service.start()
        async with (
            client_for(service) as client,
            Poller(client, **options) as poller,
        ):
            await poller.track("req_0")
            with pytest.raises(AuthenticationError) as refused:
                await poller.results().__anext__()
            texts += [str(refused.value), repr(refused.value), refused.value.body_excerpt]
    assert service.injected > 10
    assert len(logs) > 20  # tracing was on
    texts += [repr(event) for event in logs]
    leaks = [text for text in texts if KEY in text]
    assert leaks == []
    assert any("***" in text for text in texts)  # the echo was there, and redacted
