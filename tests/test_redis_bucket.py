"""`RedisTokenBucket`: one rate limit and one 429 pause for a fleet of processes.

Several bucket instances on one name stand in for replicas. Times of grants are read from
the reservations themselves, in the Redis server's clock, so the limit is checked exactly
and only the saturation checks depend on this machine's speed (with wide margins).
"""

from __future__ import annotations

import gc
import math
import time

import anyio
import pytest

from async_dispatch import Limiter, UsageError
from async_dispatch.redis import CoordinationError, RedisConnection, RedisTokenBucket
from redis_support import RedisServer, free_port, redis_command

EPSILON_US = 1.0

# coredis 6.9.0 leaves the memory object streams of a connection that failed to connect
# unclosed, so each one warns (ResourceWarning) when collected. Not ours to fix: tests that
# make connections fail ignore that warning and collect the garbage before they end.
coredis_failed_connects = pytest.mark.filterwarnings(
    "ignore:Unclosed <MemoryObject:ResourceWarning"
)  # the script's replies are whole microseconds


class RecordingBucket(RedisTokenBucket):
    """Writes down each reserved slot, in the server's microseconds."""

    def __init__(self, *args: object, slots: list[int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.slots = slots

    async def _reserve(self) -> tuple[int, int, int, bytes]:
        wait_us, now_us, paused_until_us, tat = await super()._reserve()
        self.slots.append(now_us + wait_us)
        return wait_us, now_us, paused_until_us, tat


def assert_within_limit(slots: list[int], rate: float, burst: int) -> None:
    """No window [a, b] of the server's clock holds more than rate * (b - a) + burst."""
    times = sorted(slots)
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            allowed = rate * (times[j] - start + EPSILON_US) / 1e6 + burst
            assert j - i + 1 <= allowed + 1e-9, (i, j, times[j] - start)


# -- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": -1.0},
        {"rate": math.inf},
        {"rate": math.nan},
        {"rate": True},
        {"rate": "10"},
        {"rate": 1, "burst": 0},
        {"rate": 1, "burst": 1.5},
        {"rate": 1, "burst": True},
        {"rate": 1, "name": ""},
        {"rate": 1, "name": "a{b}"},
        {"rate": 1, "name": 7},
        {"rate": 1, "name": "line\nbreak"},
        {"rate": 1, "timeout": 0},
    ],
)
def test_bad_arguments_are_usage_errors(kwargs: dict[str, object]) -> None:
    kwargs = {"name": "fleet", **kwargs}
    with pytest.raises(UsageError):
        RedisTokenBucket("redis://127.0.0.1:6379", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", ""])
def test_bad_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError, match="redis://"):
        RedisTokenBucket(url, name="fleet", rate=1)


def test_the_password_never_shows() -> None:
    bucket = RedisTokenBucket("redis://user:hunter2@127.0.0.1:6379/0", name="fleet", rate=5)
    assert "hunter2" not in repr(bucket)
    assert bucket.connection.url == "redis://user:***@127.0.0.1:6379/0"
    limiter: Limiter = bucket  # mypy checks that it fills the protocol
    assert limiter.try_acquire() is False  # a token needs I/O
    assert (bucket.rate, bucket.burst, bucket.name) == (5.0, 1, "fleet")


def test_keys_share_one_hash_slot() -> None:
    assert RedisConnection.key("prod", "bucket") == "async_dispatch:{prod}:bucket"


# -- the contract, against a real Redis ------------------------------------------------


@pytest.mark.serial  # measures elapsed time: runs alone (see Makefile)
@pytest.mark.redis
@pytest.mark.anyio
async def test_replicas_share_one_limit_and_use_it(redis_url: str, redis_name: str) -> None:
    rate, burst, duration = 50.0, 5, 1.5
    slots: list[int] = []
    replicas = [
        RecordingBucket(redis_url, name=redis_name, rate=rate, burst=burst, slots=slots)
        for _ in range(3)
    ]
    granted = 0

    async def worker(bucket: RedisTokenBucket) -> None:
        nonlocal granted
        while True:
            await bucket.acquire()
            granted += 1

    async with replicas[0], replicas[1], replicas[2]:
        with anyio.move_on_after(duration):
            async with anyio.create_task_group() as tg:
                for bucket in replicas:
                    for _ in range(4):
                        tg.start_soon(worker, bucket)

    assert_within_limit(slots, rate, burst)
    # Saturated: nearly all of rate * t + burst was used (wide margin for a busy machine).
    assert granted >= 0.8 * (rate * duration + burst), granted


@pytest.mark.serial  # measures elapsed time: runs alone (see Makefile)
@pytest.mark.redis
@pytest.mark.anyio
async def test_waiters_are_served_in_reservation_order(redis_url: str, redis_name: str) -> None:
    # Slots 250 ms apart and arrivals 100 ms apart: a queue builds, and each reservation
    # has 100 ms to reach Redis before the next waiter asks, even on a loaded machine.
    a = RedisTokenBucket(redis_url, name=redis_name, rate=4)
    b = RedisTokenBucket(redis_url, name=redis_name, rate=4)
    served: list[int] = []

    async def waiter(index: int) -> None:
        await (a if index % 2 else b).acquire()
        served.append(index)

    async with a, b, anyio.create_task_group() as tg:
        for index in range(8):
            tg.start_soon(waiter, index)
            await anyio.sleep(0.1)
    assert served == list(range(8))


@pytest.mark.serial  # measures elapsed time: runs alone (see Makefile)
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_pause_from_one_replica_holds_the_others(redis_url: str, redis_name: str) -> None:
    a = RedisTokenBucket(redis_url, name=redis_name, rate=50, burst=5)
    b = RedisTokenBucket(redis_url, name=redis_name, rate=50, burst=5)
    async with a, b:
        paused = time.monotonic()
        await a.pause(0.5)
        assert 0.4 < a.paused_for() <= 0.5
        assert b.paused_for() == 0.0  # b has not heard yet...
        await b.acquire()  # ...and hears it from its first reservation
        assert time.monotonic() - paused >= 0.45
        # The bucket restarts empty: the next tokens come at `rate`, not in a burst of 5.
        # (Timed from the pause, which a late wake-up on a busy machine only lengthens.)
        for _ in range(4):
            await b.acquire()
        assert time.monotonic() - paused >= 0.45 + 4 / 50


@pytest.mark.serial  # measures elapsed time: runs alone (see Makefile)
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_sleeper_whose_slot_a_pause_covers_reserves_again(
    redis_url: str, redis_name: str
) -> None:
    a = RedisTokenBucket(redis_url, name=redis_name, rate=5)
    b = RedisTokenBucket(redis_url, name=redis_name, rate=5)
    done: dict[str, float] = {}

    async def sleeper() -> None:
        await b.acquire()  # its slot is 0.2 s away
        done["sleeper"] = time.monotonic() - start

    async with a, b:
        await b.acquire()
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await anyio.sleep(0.05)
            await a.pause(0.6)  # another replica meets a 429
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.01):
                await b.acquire()  # any reply to b tells b of the pause
    assert done["sleeper"] >= 0.6


@pytest.mark.serial  # measures elapsed time: runs alone (see Makefile)
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_cancelled_waiter_hands_its_slot_back(redis_url: str, redis_name: str) -> None:
    bucket = RedisTokenBucket(redis_url, name=redis_name, rate=2)
    async with bucket:
        await bucket.acquire()
        start = time.monotonic()
        with anyio.move_on_after(0.1):
            await bucket.acquire()  # reserves the slot at +0.5 s, then is cancelled
        await bucket.acquire()  # gets that same slot back, not the one at +1.0 s
        assert 0.4 <= time.monotonic() - start < 0.8


@pytest.mark.redis
@pytest.mark.anyio
async def test_an_idle_bucket_expires(redis_url: str, redis_name: str) -> None:
    bucket = RedisTokenBucket(redis_url, name=redis_name, rate=50, burst=2)
    async with bucket:
        for _ in range(3):
            await bucket.acquire()
    ttl = redis_command(redis_url, "PTTL", RedisConnection.key(redis_name, "bucket"))
    assert isinstance(ttl, int)
    assert 0 < ttl <= 1100


@pytest.mark.redis
@pytest.mark.anyio
async def test_entries_nest_and_connections_are_shared(redis_url: str, redis_name: str) -> None:
    connection = RedisConnection(redis_url)
    a = RedisTokenBucket(connection, name=redis_name, rate=100)
    b = RedisTokenBucket(connection, name=redis_name + "-b", rate=100)
    async with a:
        async with a, b:
            await b.acquire()
        await a.acquire()  # still open: only the outermost exit closes
    with pytest.raises(UsageError, match="async with"):
        await a.acquire()


# -- Redis down, Redis restarted -------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
@coredis_failed_connects
async def test_redis_down_is_one_clear_error() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    bucket = RedisTokenBucket(url, name="fleet", rate=10, timeout=1.0)
    async with bucket:
        with pytest.raises(CoordinationError) as caught:
            await bucket.acquire()
        with pytest.raises(CoordinationError):
            await bucket.pause(1.0)
    message = str(caught.value)
    assert "s3cret" not in message
    assert "redis://:***@127.0.0.1" in message
    assert "check that Redis is running" in message
    gc.collect()


@pytest.mark.redis
@pytest.mark.anyio
@coredis_failed_connects
async def test_a_redis_restart_gives_clear_errors_then_recovers(
    private_redis: RedisServer,
) -> None:
    bucket = RedisTokenBucket(private_redis.url, name="restart", rate=100, timeout=1.0)
    async with bucket:
        await bucket.acquire()
        private_redis.stop()
        for _ in range(2):
            with pytest.raises(CoordinationError, match="cannot reach Redis"):
                await bucket.acquire()
        private_redis.start()
        # The same bucket works again; its scripts are loaded anew (NOSCRIPT fallback).
        for _ in range(3):
            await bucket.acquire()
        await bucket.pause(0.01)
    gc.collect()
