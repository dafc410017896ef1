"""A fleet's claim that takes its check's token in the same script (`claim_with_token`).

`RedisStore.claim_with_token` reserves a token of a `RedisTokenBucket` on the same Redis
inside store_claim.lua, only when it claims a check. These tests hold it to the bucket's
own promises: the fleet's limit is never exceeded (store replicas and plain acquirers
together), a 429 pause holds claims back, nothing claimed takes no token, a cancelled wait
hands its token back, and the claim's lease covers the wait for the slot. Slots and
leases are read in the Redis server's clock, so the checks are exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from async_dispatch import CheckEnd, OutcomeKind, Poller, TokenBucket
from async_dispatch.redis import RedisConnection, RedisStore, RedisTokenBucket
from async_dispatch.redis._connection import ScriptArg
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations, OutcomeMix
from redis_support import redis_command
from test_redis_bucket import assert_within_limit
from test_redis_integrity import SECRET, Fleet
from test_redis_store import attached, new_task

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


class SlotBucket(RedisTokenBucket):
    """Writes down each slot it let a caller use, in the server's microseconds."""

    def __init__(self, *args: object, used: list[int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.used = used

    async def _await_slot(
        self, wait_us: int, now_us: int, paused_until_us: int, tat: bytes
    ) -> bool:
        usable = await super()._await_slot(wait_us, now_us, paused_until_us, tat)
        if usable:
            self.used.append(now_us + wait_us)
        return usable


class CountingConnection(RedisConnection):
    """Writes down the name of each script it runs."""

    __slots__ = ("calls",)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[str] = []

    async def run_script(
        self, filename: str, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> list[object]:
        self.calls.append(filename)
        return await super().run_script(filename, keys, args)


async def recorded_errors(store: RedisStore, request_id: str) -> int:
    """The task's errors as its record in Redis says."""
    task = await store.get(request_id)
    assert task is not None
    return task.errors


def bucket_field(redis_url: str, name: str, field: str) -> bytes | None:
    value = redis_command(redis_url, "HGET", RedisConnection.key(name, "bucket"), field)
    assert value is None or isinstance(value, bytes)
    return value


async def test_only_a_claimed_check_takes_a_token(redis_url: str, redis_name: str) -> None:
    connection = RedisConnection(redis_url)
    bucket = RedisTokenBucket(connection, name=redis_name, rate=2)
    store = RedisStore(connection, name=redis_name)
    async with connection, attached(store):
        assert store.claims_tokens_of(bucket)
        assert await store.claim_with_token(anyio.current_time(), bucket) is None
        assert bucket_field(redis_url, redis_name, "tat") is None  # nothing was reserved
        await store.add(new_task("req_a"))
        task = await store.claim_with_token(anyio.current_time(), bucket)
        assert task is not None
        assert task.request_id == "req_a"
        taken = bucket_field(redis_url, redis_name, "tat")
        assert taken is not None
        # Nothing else is due (req_a is claimed): no second token.
        assert await store.claim_with_token(anyio.current_time(), bucket) is None
        assert bucket_field(redis_url, redis_name, "tat") == taken


async def test_which_limiters_a_claim_can_take_tokens_of(redis_url: str, redis_name: str) -> None:
    store = RedisStore(redis_url, name=redis_name)
    assert store.claims_tokens_of(RedisTokenBucket(redis_url, name=redis_name, rate=1))
    # Another fleet's bucket on the same single server: one script may touch both.
    assert store.claims_tokens_of(RedisTokenBucket(redis_url, name="other", rate=1))
    elsewhere = redis_url.rstrip("/") + "/5"  # another database: another keyspace
    assert not store.claims_tokens_of(RedisTokenBucket(elsewhere, name=redis_name, rate=1))
    assert not store.claims_tokens_of(TokenBucket(5))


@pytest.mark.serial  # saturates the bucket for a second: runs alone (see Makefile)
async def test_replicas_claiming_with_tokens_stay_within_the_limit(
    redis_url: str, redis_name: str
) -> None:
    """Two store replicas that take tokens with their claims, and a third replica that
    only acquires, share one bucket: together they never exceed it."""
    rate, burst = 40.0, 4
    used: list[int] = []
    buckets = [
        SlotBucket(redis_url, name=redis_name, rate=rate, burst=burst, used=used) for _ in range(3)
    ]
    stores = [RedisStore(redis_url, name=redis_name, lease=5.0) for _ in range(2)]
    claimed = 0

    async def claimer(store: RedisStore, bucket: RedisTokenBucket) -> None:
        nonlocal claimed
        while True:
            task = await store.claim_with_token(anyio.current_time(), bucket)
            if task is None:
                await anyio.sleep(0.005)
                continue
            claimed += 1
            await store.end_check(task, CheckEnd(due=anyio.current_time()))

    async def acquirer(bucket: RedisTokenBucket) -> None:
        while True:
            await bucket.acquire()

    async with buckets[0], buckets[1], buckets[2], attached(stores[0]), attached(stores[1]):
        for index in range(20):
            await stores[0].add(new_task(f"req_{index}"))
        with anyio.move_on_after(1.5):
            async with anyio.create_task_group() as tg:
                for store, bucket in zip(stores, buckets, strict=False):
                    for _ in range(3):
                        tg.start_soon(claimer, store, bucket)
                tg.start_soon(acquirer, buckets[2])
    assert claimed > 0
    assert_within_limit(used, rate, burst)


async def test_a_pause_holds_claims_back(redis_url: str, redis_name: str) -> None:
    used: list[int] = []
    other = RedisTokenBucket(redis_url, name=redis_name, rate=50, burst=5)
    bucket = SlotBucket(redis_url, name=redis_name, rate=50, burst=5, used=used)
    store = RedisStore(redis_url, name=redis_name)
    async with other, bucket, attached(store):
        await store.add(new_task("req_a"))
        await other.pause(0.3)  # another replica met a 429
        paused_until = bucket_field(redis_url, redis_name, "paused_until")
        assert paused_until is not None
        task = await store.claim_with_token(anyio.current_time(), bucket)
        assert task is not None
    assert used[0] >= float(paused_until)


async def test_a_pause_heard_of_while_waiting_moves_the_token_after_it(
    redis_url: str, redis_name: str
) -> None:
    used: list[int] = []
    other = RedisTokenBucket(redis_url, name=redis_name, rate=5)
    bucket = SlotBucket(redis_url, name=redis_name, rate=5, used=used)
    store = RedisStore(redis_url, name=redis_name)
    async with other, bucket, attached(store):
        await store.add(new_task("req_a"))
        await bucket.acquire()  # the claim's slot is now 0.2 s away
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.claim_with_token, anyio.current_time(), bucket)
            await anyio.sleep(0.05)
            await other.pause(0.5)
            with anyio.move_on_after(0.01):
                await bucket.acquire()  # any reply to `bucket` tells it of the pause
        paused_until = bucket_field(redis_url, redis_name, "paused_until")
    assert paused_until is not None
    # The first slot the claim was given fell inside the pause: not used.
    assert used[-1] >= float(paused_until)


async def test_a_cancelled_claim_hands_its_token_back(redis_url: str, redis_name: str) -> None:
    bucket = RedisTokenBucket(redis_url, name=redis_name, rate=2)
    store = RedisStore(redis_url, name=redis_name)
    async with bucket, attached(store):
        await store.add(new_task("req_a"))
        await bucket.acquire()
        before = bucket_field(redis_url, redis_name, "tat")
        with anyio.move_on_after(0.1):
            await store.claim_with_token(anyio.current_time(), bucket)  # waits 0.5 s
        assert bucket_field(redis_url, redis_name, "tat") == before


async def test_the_lease_covers_the_wait_for_the_slot(redis_url: str, redis_name: str) -> None:
    lease = 0.3
    used: list[int] = []
    bucket = SlotBucket(redis_url, name=redis_name, rate=1, used=used)
    a = RedisStore(redis_url, name=redis_name, lease=lease)
    b = RedisStore(redis_url, name=redis_name, lease=lease)
    async with bucket, attached(a), attached(b):
        await a.add(new_task("req_a"))
        await bucket.acquire()  # the next slot is a second away: three leases
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.claim_with_token, anyio.current_time(), bucket)
            await anyio.sleep(2 * lease)  # past a lease counted from the claim
            # Still a's: b finds nothing to claim while a waits for its slot.
            assert await b.claim(anyio.current_time()) is None
            score = redis_command(
                redis_url, "ZSCORE", RedisConnection.key(redis_name, "due"), "req_a"
            )
        assert isinstance(score, bytes)
        assert float(score) >= used[-1] / 1e6 + lease - 1e-6  # held from the slot on


async def test_ends_of_checks_ride_with_the_next_claim(redis_url: str, redis_name: str) -> None:
    """A check's end costs no round trip of its own when a claim follows: the claim
    writes it first (and may claim the same task again), and another replica sees it."""
    connection = RedisConnection(redis_url)
    bucket = RedisTokenBucket(connection, name=redis_name, rate=100, burst=10)
    a = RedisStore(connection, name=redis_name)
    b = RedisStore(redis_url, name=redis_name)
    async with connection, attached(a), attached(b):
        await a.add(new_task("req_a"))
        task = await a.claim_with_token(anyio.current_time(), bucket)
        assert task is not None
        await a.end_check(task, CheckEnd(due=anyio.current_time(), errors=2))
        again = await a.claim_with_token(anyio.current_time(), bucket)
        assert again is not None
        assert again.request_id == "req_a"
        assert again.errors == 2  # the end was written before the claim
        assert again.polls == 2
        await a.end_check(again, CheckEnd(due=math.inf, errors=3))
    # Detaching wrote the end still owed.
    async with attached(b):
        assert await recorded_errors(b, "req_a") == 3


async def test_an_end_never_written_is_checked_again_elsewhere(
    redis_url: str, redis_name: str
) -> None:
    """A replica that dies with an end owed loses only that check: once the lease runs
    out another replica claims the task again, and the dead one's late end is a no-op."""
    a = RedisStore(redis_url, name=redis_name, lease=0.3)
    b = RedisStore(redis_url, name=redis_name, lease=5.0)
    async with attached(a), attached(b):
        await a.add(new_task("req_a"))
        task = await a.claim(anyio.current_time())
        assert task is not None
        a._held.clear()  # this replica "hangs": nothing renews its lease...
        await a.end_check(task, CheckEnd(due=anyio.current_time(), errors=5))
        a._ends_owed.clear()  # ...and its end never reaches Redis
        with anyio.fail_after(5):
            while (fresh := await b.claim(anyio.current_time())) is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert fresh.request_id == "req_a"
        assert fresh.errors == 0
        await a.end_check(task, CheckEnd(due=anyio.current_time(), errors=5))
        await a._pay_ends()  # late, under the old token: changes nothing
        assert await recorded_errors(b, "req_a") == 0


async def test_a_poller_takes_its_check_tokens_with_its_claims(
    redis_url: str, redis_name: str
) -> None:
    """Under a `Poller`, the fleet's checks take no token of their own: one script per
    claim, the token with it."""
    connection = CountingConnection(redis_url)
    bucket = RedisTokenBucket(connection, name=redis_name, rate=50, burst=5)
    store = RedisStore(connection, name=redis_name, lease=5.0)
    calls = connection.calls
    kwargs: dict[str, Any] = {"initial_interval": 0.05, "max_interval": 0.1}
    async with (
        simulator(
            seed=3, durations=Durations.fixed(0.3), outcomes=OutcomeMix.only("success")
        ) as sim,
        connection,
        sim.client(bucket=bucket) as client,
        Poller(client, store=store, **kwargs) as poller,
    ):
        ids = [await poller.submit(f"/Operator claim-token {n}") for n in range(3)]
        calls.clear()  # the submits' own tokens, before the checks
        with anyio.fail_after(20):
            outcomes = [outcome async for outcome in poller]
    assert sorted(o.request_id for o in outcomes) == sorted(ids)
    assert "store_claim.lua" in calls
    assert "token_bucket_acquire.lua" not in calls


async def test_a_signed_claim_whose_record_was_changed_hands_its_token_back(
    redis_url: str, redis_name: str
) -> None:
    """With a fleet secret, a claimed record that fails the check ends FAILED: the token
    the claim reserved for its check is handed back, and a sound record is claimed."""
    fleet = Fleet(redis_url, redis_name, secret=SECRET)
    bucket = RedisTokenBucket(fleet.connection, name=redis_name, rate=2)
    async with fleet.connection, fleet.attached():
        store = fleet.store
        assert await store.add(new_task("req_changed"))
        await fleet.rewrite("req_changed", "c", json.dumps({"who": "someone else"}))
        await bucket.acquire()
        before = bucket_field(redis_url, redis_name, "tat")
        assert await store.claim_with_token(anyio.current_time(), bucket) is None
        assert bucket_field(redis_url, redis_name, "tat") == before
        (failed,) = await fleet.wait_for(1)
        assert failed.kind is OutcomeKind.FAILED
        assert await store.add(new_task("req_sound", context={"ok": 1}))
        task = await store.claim_with_token(anyio.current_time(), bucket)
        assert task is not None
        assert task.context == {"ok": 1}
