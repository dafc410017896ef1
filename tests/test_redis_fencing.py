"""Fencing in fleet mode (issue #20 items 10 and 11), on a real Redis.

- An INPUT_REQUIRED notification is delivered once per distinct input request, even when a
  stale replica (it stalled mid-check and reads an older status) notifies an earlier
  request after a newer one was reported: the earlier one is not reported again, and the
  newer one does not look new once more.
- `RedisStore.holds` answers without I/O while a held outcome's claim is fresh, and asks
  Redis once it is old enough that another replica may have taken it over: an outcome
  another consumer owns is no longer this replica's to hand over. (The whole story, a
  replica process stopped with SIGSTOP, is in tests/test_fleet_replicas.py.)
"""

from __future__ import annotations

import anyio
import pytest

from async_dispatch import OutcomeKind
from async_dispatch._store import make_outcome
from async_dispatch.redis import RedisStore
from async_dispatch.redis._task_store import GROUP
from test_redis_store import attached, finish_new, new_task, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_a_stale_replica_reports_no_input_request_twice(
    redis_url: str, redis_name: str
) -> None:
    fresh, stale = (RedisStore(redis_url, name=redis_name) for _ in range(2))
    async with attached(fresh) as got_fresh, attached(stale) as got_stale:
        await fresh.add(new_task("req_in"))
        old = await stale.get("req_in")  # the stale replica's view, from before
        assert old is not None
        for key in ("in-1", "in-2"):
            task = await fresh.get("req_in")
            assert task is not None
            notice = make_outcome(task, OutcomeKind.INPUT_REQUIRED, 0.0, final=False)
            await fresh.notify(task, notice, key)
        notice = make_outcome(old, OutcomeKind.INPUT_REQUIRED, 0.0, final=False)
        await stale.notify(old, notice, "in-1")  # its late reading: in-1 again
        again = await fresh.get("req_in")
        assert again is not None
        assert again.last_input == "in-2"  # not set back to in-1
        notice = make_outcome(again, OutcomeKind.INPUT_REQUIRED, 0.0, final=False)
        await fresh.notify(again, notice, "in-2")  # a later poll still reads in-2
        await anyio.sleep(0.5)
    assert len(got_fresh) + len(got_stale) == 2  # in-1 and in-2, once each


async def test_an_outcome_taken_over_elsewhere_is_no_longer_held(
    redis_url: str, redis_name: str
) -> None:
    mine = RedisStore(redis_url, name=redis_name, outcome_idle=0.4)
    async with attached(mine) as received:
        await finish_new(mine, "req_f")
        await wait_for(received, 1)
        receipt = received[0][1]
        assert await mine.holds(receipt)  # fresh: answered without asking Redis
        # Another replica takes it over (as after this one stalled past outcome_idle).
        client = mine.connection.client
        await client.xclaim(mine._stream, GROUP, "another-replica", 0, [receipt])
        mine._holding[receipt] -= 10.0  # its last renewal, long ago (a stall)
        assert not await mine.holds(receipt)
    again = RedisStore(redis_url, name=redis_name, outcome_idle=0.4)
    async with attached(again) as others:
        await wait_for(others, 1, timeout=5)  # the other side delivers it (taken over)
        assert others[0][0].request_id == "req_f"
