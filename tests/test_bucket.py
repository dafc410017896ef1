"""`TokenBucket`: the rate limit every check and submit of one key shares.

The properties are checked on schedules hypothesis generates (acquires, pauses and
cancellations at random virtual times) run under trio's `MockClock`, so a schedule
spanning minutes costs milliseconds.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_dispatch import TokenBucket, UsageError

EPSILON = 1e-6


def run_virtual(main: Any, *args: Any) -> Any:
    """Run `main(*args)` on trio with a clock that jumps whenever everything is idle."""
    return trio.run(main, *args, clock=trio.testing.MockClock(autojump_threshold=0))


# -- the contract on generated schedules ------------------------------------------------


@attrs.frozen
class Event:
    #: Virtual seconds after the previous event.
    delay: float
    kind: str  # "acquire", "cancel" or "pause"
    #: For "cancel": which waiting acquirer (modulo their number); for "pause": seconds.
    arg: float


events = st.lists(
    st.builds(
        Event,
        delay=st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.3, 1.0, 2.5]),
        kind=st.sampled_from(["acquire"] * 5 + ["cancel", "pause"]),
        arg=st.floats(min_value=0.0, max_value=5.0),
    ),
    max_size=60,
)


@attrs.define
class Trace:
    """What happened, in the order it happened (`order` is a global sequence number)."""

    order: int = 0
    #: (order, time, ticket) per grant; tickets number acquirers in the order they called.
    grants: list[tuple[int, float, int]] = attrs.Factory(list)
    #: (order, time, seconds) per pause.
    pauses: list[tuple[int, float, float]] = attrs.Factory(list)
    cancelled: set[int] = attrs.Factory(set)

    def next(self) -> int:
        self.order += 1
        return self.order


async def play(rate: float, burst: int, schedule: list[Event]) -> tuple[Trace, TokenBucket]:
    bucket = TokenBucket(rate, burst)
    trace = Trace()
    waiting: dict[int, anyio.CancelScope] = {}

    async def acquirer(ticket: int, scope: anyio.CancelScope) -> None:
        with scope:
            await bucket.acquire()
            trace.grants.append((trace.next(), anyio.current_time(), ticket))
        waiting.pop(ticket, None)

    async with anyio.create_task_group() as tg:
        for ticket, event in enumerate(schedule):
            await anyio.sleep(event.delay)
            if event.kind == "acquire":
                waiting[ticket] = scope = anyio.CancelScope()
                tg.start_soon(acquirer, ticket, scope)
                await anyio.lowlevel.checkpoint()  # let it call acquire() now, in order
            elif event.kind == "cancel" and waiting:
                victim = sorted(waiting)[int(event.arg * 1000) % len(waiting)]
                trace.cancelled.add(victim)
                waiting.pop(victim).cancel()
            elif event.kind == "pause":
                await bucket.pause(event.arg)
                trace.pauses.append((trace.next(), anyio.current_time(), event.arg))
        # Everyone still queued is served eventually: a lost wake-up would hang here.
        with anyio.fail_after(10_000):
            while waiting:  # noqa: ASYNC110
                await anyio.sleep(1)
    return trace, bucket


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0, 100.0]),
    burst=st.integers(min_value=1, max_value=6),
    schedule=events,
)
def test_generated_schedules_keep_the_contract(
    rate: float, burst: int, schedule: list[Event]
) -> None:
    trace, bucket = run_virtual(play, rate, burst, schedule)
    times = [t for _, t, _ in trace.grants]
    tickets = [ticket for _, _, ticket in trace.grants]

    # No window of length t ever sees more than rate * t + burst grants.
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= rate * (times[j] - times[i]) + burst + EPSILON

    # FIFO: grants go out in the order acquire() was called.
    assert tickets == sorted(tickets)

    # Nothing is granted during a pause, whoever asked and whenever.
    for order, start, seconds in trace.pauses:
        for grant_order, t, _ in trace.grants:
            if grant_order > order:
                assert t >= start + seconds - EPSILON

    # A cancelled acquirer never got a token (cancelled ones are dropped before granting).
    granted = set(tickets)
    assert trace.cancelled.isdisjoint(granted)
    acquires = sum(1 for e in schedule if e.kind == "acquire")
    assert len(granted) + len(trace.cancelled) == acquires
    assert bucket.waiting == 0


@pytest.mark.parametrize(("rate", "burst"), [(7.3, 5), (0.9, 1), (250.0, 20)])
def test_a_saturated_bucket_grants_at_rate(rate: float, burst: int) -> None:
    seconds = 3000 / rate  # virtual: about 3,000 grants, whatever the rate

    async def main() -> int:
        bucket = TokenBucket(rate, burst)
        grants = 0

        async def hammer() -> None:
            nonlocal grants
            while True:
                await bucket.acquire()
                grants += 1

        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(hammer)
        return grants

    grants = run_virtual(main)
    assert rate * seconds * 0.98 <= grants <= rate * seconds + burst + 1


def test_the_pause_restarts_the_bucket_empty() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(10, 5)
        await bucket.pause(3)
        start = anyio.current_time()
        granted = []
        for _ in range(4):
            await bucket.acquire()
            granted.append(anyio.current_time() - start)
        return granted

    assert run_virtual(main) == pytest.approx([3.0, 3.1, 3.2, 3.3])


def test_pause_landing_while_the_head_sleeps_delays_it() -> None:
    async def main() -> float:
        bucket = TokenBucket(1, 1)
        assert bucket.try_acquire()
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(bucket.acquire)  # due at +1 s
            await anyio.sleep(0.5)
            await bucket.pause(2)
        return anyio.current_time() - start

    assert run_virtual(main) == pytest.approx(2.5)


def test_cancelling_the_head_hands_over_to_the_next() -> None:
    async def main() -> list[tuple[str, float]]:
        bucket = TokenBucket(1, 1)
        assert bucket.try_acquire()  # the next token is due at +1 s
        log: list[tuple[str, float]] = []
        head_scope = anyio.CancelScope()

        async def take(name: str) -> None:
            await bucket.acquire()
            log.append((name, anyio.current_time()))

        async def cancellable_head() -> None:
            with head_scope:
                await take("head")

        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancellable_head)
            await anyio.lowlevel.checkpoint()
            tg.start_soon(take, "second")
            await anyio.sleep(0.5)
            assert bucket.waiting == 2
            head_scope.cancel()
        return [(name, t - start) for name, t in log]

    assert run_virtual(main) == [("second", pytest.approx(1.0))]


# -- small promises ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 1), (-1, 1), (math.inf, 1), (math.nan, 1), (1, 0), (1, -2), (1, True), (1, 1.5)],
)
def test_bad_arguments_are_refused(rate: float, burst: Any) -> None:
    with pytest.raises(UsageError):
        TokenBucket(rate, burst)


@pytest.mark.anyio
async def test_try_acquire_spends_the_burst_then_refuses() -> None:
    bucket = TokenBucket(0.001, 3)
    assert repr(bucket) == "TokenBucket(rate=0.001, burst=3)"
    assert bucket.rate == pytest.approx(0.001)
    assert (bucket.burst, bucket.waiting) == (3, 0)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]


@pytest.mark.anyio
async def test_pauses_do_not_stack_and_the_later_end_wins() -> None:
    bucket = TokenBucket(1000, 10)
    await bucket.pause(0)
    await bucket.pause(-3)
    await bucket.pause(math.nan)
    assert bucket.paused_for() == 0.0
    assert bucket.try_acquire()
    await bucket.pause(50)
    await bucket.pause(10)
    assert 49 < bucket.paused_for() <= 50
    assert not bucket.try_acquire()
    await bucket.pause(math.inf)  # a day at most: nothing parks a client for ever
    assert 86_000 < bucket.paused_for() <= 86_400


@pytest.mark.serial  # measures elapsed time: runs alone (see Makefile)
@pytest.mark.anyio
async def test_a_newcomer_cannot_jump_the_queue() -> None:
    bucket = TokenBucket(1000, 1)
    await bucket.pause(0.05)
    order: list[str] = []

    async def take(name: str) -> None:
        await bucket.acquire()
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "first")
        await anyio.sleep(0.01)
        assert bucket.waiting == 1
        assert not bucket.try_acquire()  # queued callers come first, even after the pause
        tg.start_soon(take, "second")
    assert order == ["first", "second"]
