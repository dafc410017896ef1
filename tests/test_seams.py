"""The limiter and task-store protocols are enough: a poller runs on other implementations.

`CountingLimiter` is a limiter of its own (no TokenBucket inside); `CountingStore` is
the third store of `tests/_third_store.py`, written from public names only and declaring
no capability, so the poller has no fast path around the protocol and every state change
goes through the methods `TaskStore` declares.
"""

from __future__ import annotations

from typing import Any

import pytest

from _chaos import ChaosService, Timeline, client_for
from _logs import capture_logs
from _third_store import ListStore
from async_dispatch import (
    CheckEnd,
    CoordinationError,
    Limiter,
    Outcome,
    OutcomeKind,
    Poller,
    TaskStore,
    TrackedTask,
)

pytestmark = pytest.mark.anyio


class CountingLimiter(Limiter):
    """No limit at all; counts what the poller asked of it."""

    def __init__(self) -> None:
        self.acquired = 0
        self.entered = 0

    async def __aenter__(self) -> CountingLimiter:
        self.entered += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.entered -= 1

    def try_acquire(self) -> bool:
        return False  # as a limiter that needs I/O would answer

    async def acquire(self) -> None:
        self.acquired += 1

    async def pause(self, seconds: float) -> None:
        return None

    def paused_for(self) -> float:
        return 0.0


class CountingStore(ListStore):
    """The third store (`tests/_third_store.py`, public names only), counting the calls
    the poller makes: there is no way around the protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.calls[name] = self.calls.get(name, 0) + n

    async def add(self, task: TrackedTask) -> bool:
        self._count("add")
        return await super().add(task)

    async def claim(self, now: float) -> TrackedTask | None:
        self._count("claim")
        return await super().claim(now)

    async def end_check(self, task: TrackedTask, end: CheckEnd) -> None:
        self._count("end_check")
        await super().end_check(task, end)

    async def resolve(self, task: TrackedTask, outcome: Outcome, *, fenced: bool) -> bool:
        self._count("resolve")
        return await super().resolve(task, outcome, fenced=fenced)

    async def reject(self, outcome: Outcome) -> None:
        self._count("reject")
        await super().reject(outcome)

    async def expire(self, now: float) -> int:
        expired = await super().expire(now)
        self._count("expired", expired)
        return expired

    async def ack(self, receipt: Any) -> None:
        self._count("ack")


async def test_a_poller_runs_on_other_limiters_and_stores() -> None:
    limiter = CountingLimiter()
    store = CountingStore()
    protocol_limiter: Limiter = limiter  # type-checks: the protocols are satisfied
    protocol_store: TaskStore = store
    service = ChaosService({"req_ok": Timeline.finishing(0.05), "req_slow": Timeline.never()})
    service.start()
    settings: dict[str, Any] = {"initial_interval": 0.01, "max_interval": 0.02, "jitter": 0}
    async with (
        client_for(service) as client,
        Poller(client, bucket=protocol_limiter, store=protocol_store, **settings) as poller,
    ):
        await poller.track("req_ok")
        await poller.track("req_slow", deadline=0.3)
        assert limiter.entered == 1
        await poller.track("not\nsendable")  # its FAILED outcome goes through the store too
        kinds = {outcome.request_id: outcome.kind async for outcome in poller}
    assert kinds == {
        "req_ok": OutcomeKind.SUCCESS,
        "req_slow": OutcomeKind.TIMED_OUT,
        "not\nsendable": OutcomeKind.FAILED,
    }
    assert store.calls["reject"] == 1
    assert limiter.entered == 0
    assert limiter.acquired == store.calls["claim"] >= 2
    assert store.calls["add"] == 2
    assert store.calls["resolve"] == 1
    assert store.calls["expired"] == 1
    assert store.calls["ack"] >= 1


class FlakyStore(CountingStore):
    """A store that is unreachable for its first few claims and expiries."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise CoordinationError("store down (test)")

    async def claim(self, now: float) -> TrackedTask | None:
        self._maybe_fail()
        return await super().claim(now)

    async def expire(self, now: float) -> int:
        self._maybe_fail()
        return await super().expire(now)


async def test_a_poller_rides_out_a_store_outage() -> None:
    store = FlakyStore(failures=6)
    service = ChaosService({f"req_{n}": Timeline.finishing(0.05) for n in range(5)})
    service.start()
    settings: dict[str, Any] = {"initial_interval": 0.01, "max_interval": 0.02, "jitter": 0}
    with capture_logs() as logs:
        async with (
            client_for(service) as client,
            Poller(client, store=store, **settings) as poller,
        ):
            await poller.track_many(f"req_{n}" for n in range(5))
            kinds = [outcome.kind async for outcome in poller]
    assert kinds == [OutcomeKind.SUCCESS] * 5
    assert store.failures == 0
    said = [log["event"] for log in logs if log["event"].startswith("coordination_")]
    assert said == ["coordination_unavailable", "coordination_recovered"]
