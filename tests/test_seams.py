"""The limiter and task-store protocols are enough: a poller runs on other implementations.

`CountingLimiter` is a limiter of its own (no TokenBucket inside); `ForwardingStore`
holds a `MemoryStore` but is not one, so the poller has no fast path around the protocol
and every state change goes through the methods `TaskStore` declares.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from _chaos import ChaosService, Timeline, client_for
from _logs import capture_logs
from async_dispatch import (
    CoordinationError,
    Limiter,
    MemoryStore,
    OutcomeKind,
    Poller,
    TaskStore,
)
from async_dispatch._cadence import NextCheck
from async_dispatch._models import TaskStatus
from async_dispatch._outcome import Outcome
from async_dispatch._store import OutcomeSink, TrackedTask

pytestmark = pytest.mark.anyio


class CountingLimiter:
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


class ForwardingStore:
    """A `TaskStore` that forwards to a `MemoryStore` it holds, counting the calls."""

    def __init__(self) -> None:
        self._inner = MemoryStore()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    @contextlib.asynccontextmanager
    async def attach(
        self,
        sink: OutcomeSink,
        clock: Callable[[], float],
        wake: Callable[[], None],
        *,
        last_check_lead: float,
    ) -> AsyncIterator[None]:
        async with self._inner.attach(sink, clock, wake, last_check_lead=last_check_lead):
            yield

    def __len__(self) -> int:
        return len(self._inner)

    async def add(self, task: TrackedTask) -> bool:
        self._count("add")
        return await self._inner.add(task)

    async def get(self, request_id: str) -> TrackedTask | None:
        return await self._inner.get(request_id)

    async def forget(self, request_id: str) -> bool:
        return await self._inner.forget(request_id)

    def next_due(self) -> float:
        return self._inner.next_due()

    async def claim(self, now: float) -> TrackedTask | None:
        self._count("claim")
        return await self._inner.claim(now)

    async def end_check(self, task: TrackedTask, next_check: NextCheck) -> None:
        self._count("end_check")
        await self._inner.end_check(task, next_check)

    async def resolve(self, task: TrackedTask, outcome: Outcome, *, fenced: bool) -> bool:
        self._count("resolve")
        return await self._inner.resolve(task, outcome, fenced=fenced)

    async def notify(self, task: TrackedTask, outcome: Outcome) -> None:
        await self._inner.notify(task, outcome)

    def next_deadline(self) -> float:
        return self._inner.next_deadline()

    async def expire(self, now: float) -> int:
        expired = await self._inner.expire(now)
        self.calls["expired"] = self.calls.get("expired", 0) + expired
        return expired

    async def ack(self, receipt: Any) -> None:
        self._count("ack")

    async def begin_submit(self) -> Any:
        return await self._inner.begin_submit()

    async def end_submit(self, ticket: Any, task: TrackedTask | None) -> TaskStatus | None:
        return await self._inner.end_submit(ticket, task)

    async def park(self, request_id: str, status: TaskStatus) -> bool:
        return await self._inner.park(request_id, status)

    async def finished(self, request_id: str) -> bool:
        return await self._inner.finished(request_id)

    async def idle(self) -> bool:
        return await self._inner.idle()


async def test_a_poller_runs_on_other_limiters_and_stores() -> None:
    limiter = CountingLimiter()
    store = ForwardingStore()
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
        kinds = {outcome.request_id: outcome.kind async for outcome in poller}
    assert kinds == {"req_ok": OutcomeKind.SUCCESS, "req_slow": OutcomeKind.TIMED_OUT}
    assert limiter.entered == 0
    assert limiter.acquired == store.calls["claim"] >= 2
    assert store.calls["add"] == 2
    assert store.calls["resolve"] == 1
    assert store.calls["expired"] == 1
    assert store.calls["ack"] >= 1


class FlakyStore(ForwardingStore):
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
