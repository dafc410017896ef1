"""Issue #12's contract, with real processes: four replicas share one key's rate limit.

"4 replica processes share one key whose server-side limit is R; each is configured with
rate R: 429s stay under 1% of requests and the fleet uses at least 95% of R."

One simulator serves over loopback TCP with a server-side limit of R; four replica
processes (tests/fleet_replica.py, two on asyncio and two on trio) each run a
`DispatchClient` + `Poller` whose `RedisTokenBucket` has rate R and polls as fast as it
lets them. The simulator's own counters say how many requests came and how many got 429.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from async_dispatch.testing import OutcomeMix, RateLimit, SimulatorConfig, serve
from fleet_replica import replica_command, run_replicas

RATE = 40.0
# The server's burst absorbs scheduling jitter: requests the fleet reserved 1/R apart may
# reach the server closer together when a busy machine delays one replica's sends.
SERVER_BURST = 10
DURATION = 6.0
# Seconds for four interpreters to start and open their pollers on 2 busy cores; the
# replicas wait for each other (a barrier), so this only bounds a hang.
STARTUP = 60.0


@pytest.mark.redis
@pytest.mark.serial  # measures a rate over wall-clock seconds: runs alone (see Makefile)
@pytest.mark.asyncio_only  # the replicas cover trio
@pytest.mark.anyio
async def test_four_replicas_share_one_key_without_429s(
    redis_url: str, redis_name: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(
        outcomes=OutcomeMix.only("never"),
        rate_limit=RateLimit(rate=RATE, burst=SERVER_BURST),
        seed=12,
    )
    async with serve(config) as running:
        sim = running.simulator
        commands = [
            replica_command(
                running.base_url,
                rate=RATE,
                limiter="redis",
                redis_url=redis_url,
                name=redis_name,
                backend=backend,
                barrier=tmp_path,
                duration=DURATION,
            )
            for backend in ("asyncio", "trio", "asyncio", "trio")
        ]
        loop_minus_wall = anyio.current_time() - time.time()
        start_at, summaries = await anyio.to_thread.run_sync(
            run_replicas, commands, tmp_path, STARTUP + DURATION + 20
        )
        loop_start = start_at + loop_minus_wall
        requests = sum(sim.stats.requests.values())
        rejected = sim.stats.rate_limited
        accepted = sim.accepted_request_times()

    # Every replica took part, and none was late to start (by its clock) by a second.
    assert all(s["polls_sent"] > 0 for s in summaries), summaries
    assert all(s["started"] - start_at < 1.0 for s in summaries), summaries
    # 429s stay under 1% of requests.
    assert rejected <= 0.01 * requests, (rejected, requests, summaries)
    # The fleet used at least 95% of R, over the run less its first and last half second.
    window = (loop_start + 0.5, loop_start + DURATION - 0.5)
    used = sum(window[0] <= t < window[1] for t in accepted) / (window[1] - window[0])
    assert used >= 0.95 * RATE, (used, summaries)
    assert used <= RATE + SERVER_BURST / (window[1] - window[0])
    print(f"fleet: {requests} requests, {rejected} 429s, {used:.1f}/s of {RATE:g}/s")
