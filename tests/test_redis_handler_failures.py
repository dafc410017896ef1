"""An outcome handler that raises loses nothing (issue #20 item 7).

`DispatchRuntime` calls ``on_outcome`` with every outcome; when it raises, the outcome is
not acknowledged but given back (`Poller.redeliver`): a fleet's `RedisStore` hands it to a
replica again after a short delay with ``deliveries`` one higher, and after three
deliveries moves it to the fleet's dead-letter stream, which ``async-dispatch fleet``
counts. A `MemoryStore` queues it again in the process, with the same bound. Against a
real Redis, on asyncio and trio.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from _logs import capture_logs
from async_dispatch import MemoryStore, Outcome, TaskStore
from async_dispatch._cli._output import fleet_lines
from async_dispatch.redis import RedisConnection, RedisStore
from async_dispatch.redis._fleet_view import read_fleet
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations
from async_dispatch.webhooks import DispatchRuntime
from redis_support import redis_command

pytestmark = [pytest.mark.anyio]

FAST: dict[str, Any] = {"initial_interval": 0.05, "max_interval": 0.1, "rate": 200.0}


class Flaky:
    """A handler that fails the first `failures` deliveries of every outcome."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: Counter[str] = Counter()
        self.handled: list[Outcome] = []

    def __call__(self, outcome: Outcome) -> None:
        self.calls[outcome.request_id] += 1
        if self.calls[outcome.request_id] <= self.failures:
            raise RuntimeError("the database is down (test)")
        self.handled.append(outcome)


async def run_runtime(store: TaskStore, handler: Flaky, n: int, until: int) -> list[str]:
    """Submit `n` tasks through a runtime over `store`; wait until `until` handler calls
    per task were made (or the dead letters say so)."""
    async with simulator(seed=7, durations=Durations.fixed(0.05)) as sim:  # noqa: SIM117
        async with DispatchRuntime(
            sim.client(), callback_url=None, on_outcome=handler, store=store, **FAST
        ) as runtime:
            ids = [await runtime.submit(f"task {i}", deadline=30) for i in range(n)]
            with anyio.fail_after(20):
                while min((handler.calls[rid] for rid in ids), default=0) < until:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                await anyio.sleep(0.3)  # room for a (wrong) extra delivery
    return ids


@pytest.mark.redis
async def test_a_failed_handler_gets_the_outcome_again_in_a_fleet(
    redis_url: str, redis_name: str
) -> None:
    handler = Flaky(failures=1)
    store = RedisStore(redis_url, name=redis_name, outcome_idle=0.4)
    with capture_logs() as logs:
        ids = await run_runtime(store, handler, 5, until=2)
    assert sorted(o.request_id for o in handler.handled) == sorted(ids)
    assert all(o.deliveries == 2 for o in handler.handled)  # the second delivery, said so
    assert all(handler.calls[rid] == 2 for rid in ids)
    failed = [e for e in logs if e["event"] == "outcome_handler_failed"]
    assert len(failed) == 5
    assert all(e["deliveries"] == 1 for e in failed)
    # Its own given-back outcomes are not mistaken for a dead replica's.
    assert [e["event"] for e in logs].count("outcome_redelivered") == 5
    assert "outcome_taken_over" not in [e["event"] for e in logs]
    dead = RedisConnection.key(redis_name, "deadletter")
    assert redis_command(redis_url, "XLEN", dead) == 0
    assert redis_command(redis_url, "XLEN", RedisConnection.key(redis_name, "outcomes")) == 0


@pytest.mark.redis
async def test_a_handler_that_always_fails_dead_letters_the_outcome(
    redis_url: str, redis_name: str
) -> None:
    handler = Flaky(failures=99)
    store = RedisStore(redis_url, name=redis_name, outcome_idle=0.4)
    with capture_logs() as logs:
        ids = await run_runtime(store, handler, 3, until=3)
    assert handler.handled == []
    assert all(handler.calls[rid] == 3 for rid in ids)  # bounded: three deliveries each
    dead = RedisConnection.key(redis_name, "deadletter")
    entries = redis_command(redis_url, "XRANGE", dead, "-", "+")
    assert isinstance(entries, list)
    assert len(entries) == 3
    text = str(entries)
    assert "outcome handler failed on delivery 3 (RuntimeError)" in text
    assert all(rid in text for rid in ids)  # the outcome itself is kept, to act on
    assert "the database is down" not in text  # only the error's type: messages may hold secrets
    lettered = [e for e in logs if e["event"] == "outcome_dead_lettered"]
    assert len(lettered) == 3
    assert redis_command(redis_url, "XLEN", RedisConnection.key(redis_name, "outcomes")) == 0
    async with RedisConnection(redis_url) as connection:
        view = await read_fleet(connection, redis_name)
    assert view.dead_letters == 3
    assert view.as_dict()["outcomes"]["dead_letters"] == 3
    assert any(line.startswith("dead letters: 3") for line in fleet_lines(view, "redis://x"))


async def test_a_failed_handler_gets_the_outcome_again_from_memory() -> None:
    handler = Flaky(failures=1)
    ids = await run_runtime(MemoryStore(), handler, 5, until=2)
    assert sorted(o.request_id for o in handler.handled) == sorted(ids)
    assert all(o.deliveries == 2 for o in handler.handled)


async def test_a_memory_store_gives_up_after_three_deliveries_and_says_so() -> None:
    handler = Flaky(failures=99)
    with capture_logs() as logs:
        ids = await run_runtime(MemoryStore(), handler, 2, until=3)
    assert all(handler.calls[rid] == 3 for rid in ids)
    gave_up = [e for e in logs if e["event"] == "outcome_handler_gave_up"]
    assert sorted(e["request_id"] for e in gave_up) == sorted(ids)
    assert all(e["error"] == "RuntimeError" for e in gave_up)
