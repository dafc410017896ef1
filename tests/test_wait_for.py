"""One task, awaited (`Poller.wait_for`, `Poller.run`): the task's own awaitable, within the
poller's one budget; each outcome still reaches the application exactly once."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import _poller_helpers as helpers
from _chaos import ChaosService, Timeline
from _poller_helpers import drain, fast, running
from _third_store import ListStore
from async_dispatch import (
    AuthenticationError,
    LifecycleError,
    Outcome,
    OutcomeKind,
    Poller,
    UsageError,
)
from async_dispatch.testing import simulator

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_clock]  # trio on a virtual clock
scale = helpers.scale


async def test_many_tasks_run_at_once_each_gets_its_own_outcome() -> None:
    got: dict[str, Outcome] = {}
    async with (
        simulator(seed=3, time_scale=0.002) as sim,
        sim.client() as client,
        Poller(client, rate=200, burst=50, initial_interval=0.01) as poller,
    ):

        async def one(n: int) -> None:
            got[str(n)] = await poller.run(f"/Operator task {n}", context=n)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for n in range(20):
                    group.start_soon(one, n)
        assert await drain(poller) == []  # taken by `run`: not yielded again
    assert sorted(got) == sorted(str(n) for n in range(20))
    assert all(outcome.final for outcome in got.values())
    assert {outcome.context for outcome in got.values()} == set(range(20))
    assert len({outcome.request_id for outcome in got.values()}) == 20


async def test_awaited_and_iterated_outcomes_each_reach_one_consumer(scale: float) -> None:
    timelines = {f"req_{n}": Timeline.finishing(n * 0.2) for n in range(6)}
    service = ChaosService(timelines)
    async with running(service, **fast(scale)) as poller:
        await poller.track_many(timelines)
        await helpers.wait_until(lambda: poller.stats.tracked < 6, timeout=30)  # req_0 queued
        early = await poller.wait_for("req_0")  # already queued: taken out of the queue
        late = await poller.wait_for("req_4")  # still running: awaited
        rest = await drain(poller)
    assert (early.request_id, early.kind) == ("req_0", OutcomeKind.SUCCESS)
    assert (late.request_id, late.kind) == ("req_4", OutcomeKind.SUCCESS)
    assert sorted(o.request_id for o in rest) == ["req_1", "req_2", "req_3", "req_5"]


async def test_a_cancelled_wait_loses_nothing(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.finishing(1.0)})
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a")
        with anyio.move_on_after(0.1 * scale):
            await poller.wait_for("req_a")
        assert "req_a" in poller
        rest = await drain(poller)  # the iterator still gets it
    assert [(o.request_id, o.kind) for o in rest] == [("req_a", OutcomeKind.SUCCESS)]


async def test_waiting_twice_or_for_the_unknown_is_a_usage_error(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.finishing(1.0)})
    async with running(service, **fast(scale)) as poller:
        with pytest.raises(UsageError, match="not tracked"):
            await poller.wait_for("req_zzz")
        await poller.track("req_a")
        async with anyio.create_task_group() as group:
            group.start_soon(poller.wait_for, "req_a")
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(LifecycleError, match="already awaits"):
                await poller.wait_for("req_a")
        with pytest.raises(UsageError, match="not tracked"):
            await poller.wait_for("req_a")  # taken by the first wait


async def test_a_refused_key_ends_the_wait_with_the_error(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never()})
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a")
        service.key = "revoked"
        with anyio.fail_after(30), pytest.raises(AuthenticationError):
            await poller.wait_for("req_a")


async def test_a_shared_store_asks_for_the_iterator(anyio_backend: Any) -> None:
    service = ChaosService({"req_a": Timeline.finishing(0.0)})
    async with running(service, store=ListStore()) as poller:
        await poller.track("req_a")
        with pytest.raises(UsageError, match="async for"):
            await poller.wait_for("req_a")
        await drain(poller)
