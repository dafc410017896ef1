"""Fleet mode on Redis as it is really deployed: the server's clock, ACL users, URLs with
passwords, and errors that say what happened (issue 20).

Tests that change server settings (ACL users, TLS) start a private redis-server of their own.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from async_dispatch import Poller
from async_dispatch._outcome import Outcome, OutcomeKind
from async_dispatch.redis import RedisConnection, RedisStore, RedisTokenBucket
from async_dispatch.testing import RateLimit, simulator
from async_dispatch.testing._config import Durations, OutcomeMix
from redis_support import RedisServer, redis_command, unique_name

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

#: The ACL the README's fleet section documents: every right a fleet needs, and no more.
FLEET_ACL = ("~async_dispatch:*", "+@read", "+@write")
FLEET_ACL += ("+eval", "+evalsha", "+time")


def raw_server_time(url: str) -> float:
    """TIME's reply over a plain socket, parsed here: the reference for the store's clock."""
    reply = redis_command(url, "TIME")
    assert isinstance(reply, list)
    seconds, micros = (int(part) for part in reply)
    return seconds + micros / 1e6


# -- the clock --------------------------------------------------------------------------


async def test_the_offset_to_the_server_clock_matches_the_raw_time_reply(
    redis_url: str, redis_name: str
) -> None:
    """coredis 6.9 parses TIME's microseconds as milliseconds; the store must not care.

    With that bug the offset is short by the server's sub-second fraction: five
    measurements all within 50 ms of the truth would then need five fractions below 0.05 s.
    """
    store = RedisStore(redis_url, name=redis_name)
    async with store.connection:
        for _ in range(5):
            await store._measure_offset()
            before = anyio.current_time()
            server = raw_server_time(redis_url)
            after = anyio.current_time()
            expected = server - (before + after) / 2
            assert abs(store._offset - expected) < 0.05, (store._offset, expected)
            await anyio.sleep(0.13)  # another sub-second fraction next time


async def test_checks_are_not_held_back_by_the_clock(redis_url: str, redis_name: str) -> None:
    """100 tasks at rate 100, each done after 3 s: all SUCCESS well before their 10 s
    deadline, with the poller's default check intervals.

    With the clock short by up to a second (coredis's TIME parsing), every "due now" looked
    up to 1 s ahead and deadlines fell early: 70 of these 100 timed out.
    """
    seen: list[Outcome] = []
    kwargs: dict[str, Any] = {"rate": 100}
    store = RedisStore(redis_url, name=redis_name, lease=5.0)
    mix = OutcomeMix.only("success")
    async with simulator(seed=5, durations=Durations.fixed(3.0), outcomes=mix) as sim:  # noqa: SIM117
        async with sim.client() as client, Poller(client, store=store, **kwargs) as poller:
            ids = [await poller.submit(f"task {i}", deadline=10) for i in range(100)]
            with anyio.fail_after(30):
                async for outcome in poller:
                    seen.append(outcome)
    kinds = Counter(o.kind for o in seen if o.final)
    assert kinds == {OutcomeKind.SUCCESS: 100}, kinds
    assert sorted(o.request_id for o in seen if o.final) == sorted(ids)


# -- ACL users -----------------------------------------------------------------------------


def acl_user(server: RedisServer, user: str, password: str, *rules: str) -> str:
    """Create `user` on `server` with exactly `rules`; the URL that logs in as it."""
    reply = redis_command(server.url, "ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    assert reply == "OK"
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


async def test_a_fleet_runs_with_the_documented_acl_through_a_429(
    private_redis: RedisServer,
) -> None:
    """A user with only the README's rights (no pub/sub, no admin commands) runs a poller
    over RedisStore and RedisTokenBucket through a 429 (a fleet-wide pause) to SUCCESS."""
    url = acl_user(private_redis, "fleet", "s3cret-pw", *FLEET_ACL)
    name = unique_name("acl")
    seen: list[Outcome] = []
    connection = RedisConnection(url)
    bucket = RedisTokenBucket(connection, name=name, rate=50, burst=5)
    store = RedisStore(connection, name=name, lease=5.0)
    limit = RateLimit(rate=1, burst=1)
    async with simulator(seed=2, durations=Durations.fixed(0.5), rate_limit=limit) as sim:  # noqa: SIM117
        async with bucket, sim.client(bucket=bucket) as client:
            async with Poller(client, store=store, initial_interval=0.3) as poller:
                ids = [await poller.submit(f"task {i}", deadline=30) for i in range(3)]
                with anyio.fail_after(25):
                    async for outcome in poller:
                        seen.append(outcome)
        assert sim.stats.rate_limited >= 1  # the pause script ran, under this ACL
    assert sorted(o.request_id for o in seen if o.final) == sorted(ids)
    assert {o.kind for o in seen if o.final} == {OutcomeKind.SUCCESS}
