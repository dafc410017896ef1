"""Fleet outcomes that cannot be delivered the ordinary way still end: an acknowledgement
Redis did not get is paid later (issue #20 item 8), and an entry no replica can read goes
to the dead-letter stream after a few deliveries (item 9), so a finite `async for` ends.
Against a real Redis."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from async_dispatch import CoordinationError, OutcomeKind
from async_dispatch.redis import RedisConnection, RedisStore
from async_dispatch.redis._task_store import UNREADABLE_DELIVERIES
from redis_support import redis_command
from test_redis_store import attached, finish_new, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def xlen(url: str, key: str) -> int:
    reply = redis_command(url, "XLEN", key)
    assert isinstance(reply, int)
    return reply


class AckFailsOnce(RedisStore):
    """A store whose first acknowledgement meets an unreachable Redis."""

    failed = False

    async def _script(self, filename: str, keys: list[str], args: list[Any]) -> list[Any]:
        if filename == "store_ack.lua" and not self.failed:
            self.failed = True
            raise CoordinationError("Redis is unreachable (test)")
        return await super()._script(filename, keys, args)


async def test_a_failed_ack_is_paid_once_redis_answers(redis_url: str, redis_name: str) -> None:
    store = AckFailsOnce(redis_url, name=redis_name, outcome_idle=0.4)
    async with attached(store) as received:
        await finish_new(store, "req_a")
        await wait_for(received, 1)
        receipt = received[0][1]
        await store.ack(receipt)  # a lone one: sent (and failing) at once, owed then
        with anyio.fail_after(5):
            while not store.failed:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            assert receipt in store._acks_owed  # still owed, and held
        with anyio.fail_after(5):
            while not await store.idle():  # noqa: ASYNC110 (the reader pays the ack)
                await anyio.sleep(0.05)
    assert store.failed
    assert len(received) == 1  # held meanwhile: never delivered twice


async def test_a_lone_ack_is_in_redis_before_the_next_outcome_is_handed_out(
    redis_url: str, redis_name: str
) -> None:
    """Issue #20 item 10: an application that holds each outcome longer than the ack
    delay gets no batching from it, and a replica stalled (or killed) right after taking
    the next outcome would have the previous one delivered again too, though its
    application had finished it. So a lone ack is paid before `ack()` returns, which the
    poller awaits before handing out the next outcome."""
    store = RedisStore(redis_url, name=redis_name, outcome_idle=5.0)
    stream = RedisConnection.key(redis_name, "outcomes")
    async with attached(store) as received:
        await finish_new(store, "req_a")
        await finish_new(store, "req_b")
        await wait_for(received, 2)
        await store.ack(received[0][1])
        assert not store._acks_owed
        assert xlen(redis_url, stream) == 1  # acknowledged and deleted already
        await anyio.sleep(0.05)  # longer than the ack delay: the next is lone too
        await store.ack(received[1][1])
        assert xlen(redis_url, stream) == 0


async def test_an_unreadable_outcome_is_dead_lettered(redis_url: str, redis_name: str) -> None:
    store = RedisStore(redis_url, name=redis_name, outcome_idle=0.2)
    stream = RedisConnection.key(redis_name, "outcomes")
    dead = RedisConnection.key(redis_name, "deadletter")
    async with attached(store) as received:
        redis_command(redis_url, "XADD", stream, "*", "o", '{"kind": "from-the-future"}')
        await finish_new(store, "req_ok")  # a readable one beside it still arrives
        await wait_for(received, 1)
        with anyio.fail_after(10):  # a few takeovers of 0.2 s each
            while xlen(redis_url, dead) == 0:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            await store.ack(received[0][1])
            while not await store.idle():  # noqa: ASYNC110
                await anyio.sleep(0.05)
    assert [o.kind for o, _ in received] == [OutcomeKind.SUCCESS]
    assert xlen(redis_url, stream) == 0
    entries = redis_command(redis_url, "XRANGE", dead, "-", "+")
    assert "from-the-future" in str(entries)
    assert f"unreadable after {UNREADABLE_DELIVERIES}" in str(entries)
