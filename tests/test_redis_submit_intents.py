"""Fleet submits lose no request id and report no false SUBMIT_UNCERTAIN (issue #20
items 2 and 3), through a `Poller` over a real Redis, on asyncio and trio.

- Item 3: a submit's intent is renewed by its replica while the submit waits for its turn
  and token, and is marked sent only when the submit goes on the wire: a dozen submits
  queued behind a small budget, for much longer than ``submit_timeout + lease``, end
  SUCCESS, never SUBMIT_UNCERTAIN as well.
- Item 2: Redis stops answering (a private redis-server, SIGSTOP) after the submit went
  out and before its answer is recorded: `submit()` raises `SubmitNotTrackedError` with
  the id the service returned, and the poller tracks that task once Redis answers again
  (SIGCONT), so its one outcome arrives and nothing is reported uncertain.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest

from _logs import capture_logs
from async_dispatch import (
    CoordinationError,
    Outcome,
    OutcomeKind,
    Poller,
    SubmitNotTrackedError,
)
from async_dispatch.redis import RedisStore
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations
from redis_support import RedisServer, unique_name

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_queued_submits_are_never_reported_uncertain(redis_url: str, redis_name: str) -> None:
    # 12 submits at 3 tokens/s (shared with the checks) wait up to ~6 s for their turn,
    # far past submit_timeout + lease (0.5 s), which was when their intents expired.
    store = RedisStore(redis_url, name=redis_name, lease=0.3, submit_timeout=0.2)
    seen: list[Outcome] = []
    async with simulator(seed=5, durations=Durations.fixed(0.05)) as sim:  # noqa: SIM117
        async with sim.client() as client:
            async with Poller(
                client, store=store, rate=3, burst=1, initial_interval=0.1, max_interval=0.2
            ) as poller:
                ids: list[str] = []

                async def submit(i: int) -> None:
                    ids.append(await poller.submit(f"task {i}", deadline=60, context={"i": i}))

                with anyio.fail_after(40):
                    async with anyio.create_task_group() as tg:
                        for i in range(12):
                            tg.start_soon(submit, i)
                    async for outcome in poller:
                        seen.append(outcome)
    assert [o.kind for o in seen if o.kind is OutcomeKind.SUBMIT_UNCERTAIN] == []
    finals = [o for o in seen if o.final]
    assert sorted(o.request_id for o in finals) == sorted(ids)  # one final outcome each


class StopsRedisOnceSent(RedisStore):
    """A store whose Redis stops answering (SIGSTOP) right after the first submit is
    marked sent: the submit reaches the service, its answer finds no Redis."""

    def __init__(self, server: RedisServer, **kwargs: Any) -> None:
        super().__init__(server.url, **kwargs)
        self.server = server
        self.stopped = False

    async def submit_sending(self, ticket: Any, context: Any, prompt: str) -> None:
        await super().submit_sending(ticket, context, prompt)
        if not self.stopped:
            self.stopped = True
            assert self.server.pid is not None
            os.kill(self.server.pid, signal.SIGSTOP)


async def test_a_submit_answered_while_redis_is_unreachable_keeps_its_request_id(
    private_redis: RedisServer,
) -> None:
    assert private_redis.pid is not None
    store = StopsRedisOnceSent(
        private_redis,
        name=unique_name("notrack"),
        timeout=0.3,
        lease=1.0,
        submit_timeout=0.5,
        outcome_idle=1.0,
    )
    seen: list[Outcome] = []
    try:
        with capture_logs() as logs:
            async with simulator(seed=9, durations=Durations.fixed(0.05)) as sim:  # noqa: SIM117
                async with sim.client() as client:
                    async with Poller(
                        client, store=store, initial_interval=0.1, max_interval=0.2, rate=50
                    ) as poller:
                        with pytest.raises(SubmitNotTrackedError) as caught:
                            await poller.submit("the task", deadline=30, context={"k": 1})
                        error = caught.value
                        assert isinstance(error, CoordinationError)  # what callers catch today
                        assert error.request_id  # the id the service returned, kept
                        assert error.request_id in str(error)
                        assert "retry" not in str(error).lower()  # resubmitting runs it twice
                        await anyio.sleep(3.0)  # longer than submit_timeout + lease, and a gap
                        os.kill(private_redis.pid, signal.SIGCONT)
                        with anyio.fail_after(20):
                            async for outcome in poller:
                                seen.append(outcome)
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
    finals = [(o.request_id, o.context) for o in seen if o.final]
    assert finals == [(error.request_id, {"k": 1})]
    assert OutcomeKind.SUBMIT_UNCERTAIN not in {o.kind for o in seen}
    late = [e for e in logs if e["event"] == "submit_tracked_late"]
    assert [e["request_id"] for e in late] == [error.request_id]
