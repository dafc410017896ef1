"""A Redis out of memory is an outage, not a reason to time tasks out (issue #20 item 5).

With ``maxmemory`` and ``noeviction``, Redis refuses every write that may grow memory
(``OOM command not allowed``) and still serves reads and deletes. The claims failed while
the expiry round, which deletes before it writes, went on: finished tasks came back
TIMED_OUT with ``polls=0`` and the unavailable/recovered warnings flapped. Now the expiry
round's first write is one Redis refuses then, so nothing ends while the fleet cannot
record progress; once memory is back the overdue checks run first (the round holds the
endings after a gap) and the tasks end as the service says. One warning per job.

A private redis-server; ``CONFIG SET maxmemory 1`` puts it out of memory at once (it uses
more than a byte), ``maxmemory 0`` gives the memory back. On asyncio and trio.
"""

from __future__ import annotations

import anyio
import pytest

from _logs import capture_logs
from async_dispatch import Outcome, OutcomeKind, Poller, TimeoutCause
from async_dispatch.redis import RedisStore
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations, OutcomeMix
from redis_support import RedisServer, redis_command, unique_name

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_out_of_memory_times_nothing_out_and_warns_once(
    private_redis: RedisServer,
) -> None:
    url = private_redis.url
    assert redis_command(url, "CONFIG", "GET", "maxmemory-policy") == [
        b"maxmemory-policy",
        b"noeviction",
    ]
    store = RedisStore(url, name=unique_name("oom"), lease=2.0, timeout=1.0)
    seen: list[Outcome] = []
    only_success = OutcomeMix(success=1.0, error=0.0, input_required=0.0)
    with capture_logs() as logs:
        async with simulator(seed=11, durations=Durations.fixed(1.0), outcomes=only_success) as sim:  # noqa: SIM117
            async with sim.client() as client:
                async with Poller(
                    client, store=store, rate=50, initial_interval=0.5, max_interval=0.5
                ) as poller:
                    # Half the deadlines fall while Redis is out of memory, half after.
                    short = [await poller.submit(f"s{i}", deadline=3.0) for i in range(5)]
                    long = [await poller.submit(f"l{i}", deadline=25.0) for i in range(5)]
                    redis_command(url, "CONFIG", "SET", "maxmemory", "1")
                    oom_from = len(logs)

                    async def consume() -> None:
                        async for outcome in poller:
                            seen.append(outcome)

                    with anyio.fail_after(45):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(consume)
                            await anyio.sleep(5.0)  # every deadline passes while out of memory
                            during = [o.kind for o in seen]
                            oom_logs = logs[oom_from:]
                            redis_command(url, "CONFIG", "SET", "maxmemory", "0")
    assert during == []  # nothing timed out (nor anything else) while nothing could be recorded
    assert sorted(o.request_id for o in seen) == sorted(short + long)  # one outcome each
    kinds = {o.request_id: o for o in seen}
    # Checked once memory was back, and finished: SUCCESS, never a false TIMED_OUT.
    assert {kinds[rid].kind for rid in long} == {OutcomeKind.SUCCESS}
    # Their deadline passed with no way to check them: TIMED_OUT, and the outcome says why
    # (not "never checked", the short-budget diagnosis).
    for rid in short:
        outcome = kinds[rid]
        assert outcome.kind is OutcomeKind.TIMED_OUT
        assert outcome.timeout_cause is TimeoutCause.UNREADABLE
        assert "recorded no progress" in str(outcome.error)
    unavailable = [e for e in oom_logs if e["event"] == "coordination_unavailable"]
    recovered = [e for e in oom_logs if e["event"] == "coordination_recovered"]
    assert 1 <= len(unavailable) <= 3  # one per job that met it, no flapping
    assert recovered == []
    assert any("out of memory" in e["error"] for e in unavailable)
