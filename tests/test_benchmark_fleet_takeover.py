"""`benchmarks.fleet`'s takeover run finds the victim's leases the way the store keeps them.

It waits for the replica it is about to kill to hold a lease: a reader left on an older
key layout (a hash per task) found none, so the run timed out on every machine and its
figures went stale. This reads a lease a real `RedisStore` claim made, and no other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fleet import _victim_leases

from async_dispatch import CheckEnd
from async_dispatch._store import TrackedTask
from async_dispatch.redis import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_the_leases_a_claim_holds_are_found_for_their_replica_only(
    redis_url: str, redis_name: str
) -> None:
    store = RedisStore(redis_url, name=redis_name, lease=30.0)
    async with store.attach(lambda *_: None, anyio.current_time, lambda: None,
                            last_check_lead=1.0):  # fmt: skip
        now = anyio.current_time()
        for rid in ("req_held", "req_waiting"):
            task = TrackedTask(rid, started=now, deadline=now + 60.0, context=None)
            task.due = now if rid == "req_held" else now + 30.0
            assert await store.add(task)
        claimed = await store.claim(anyio.current_time())
        assert claimed is not None
        assert claimed.request_id == "req_held"
        assert await _victim_leases(redis_url, redis_name, store.consumer) == ["req_held"]
        assert await _victim_leases(redis_url, redis_name, "another-replica") == []
        await store.end_check(claimed, CheckEnd(due=anyio.current_time() + 30.0))
        await store.get("req_held")  # an end is queued for the next claim: written first
        assert await _victim_leases(redis_url, redis_name, store.consumer) == []
