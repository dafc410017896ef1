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
from async_dispatch.redis import RedisStore
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations, OutcomeMix
from redis_support import redis_command

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


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
