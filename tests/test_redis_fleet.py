"""Issue #12's contract, with real processes: four replicas share one key's rate limit.

"4 replica processes share one key whose server-side limit is R; each is configured with
rate R: 429s stay under 1% of requests and the fleet uses at least 95% of R."

One simulator serves over loopback TCP with a server-side limit of R; four replica
processes (tests/fleet_replica.py, two on asyncio and two on trio) each run a
`DispatchClient` + `Poller` whose `RedisTokenBucket` has rate R and polls as fast as it
lets them. The simulator's own counters say how many requests came and how many got 429.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_dispatch.testing import OutcomeMix, RateLimit, SimulatorConfig, serve

REPLICA = Path(__file__).with_name("fleet_replica.py")
RATE = 40.0
# The server's burst absorbs scheduling jitter: requests the fleet reserved 1/R apart may
# reach the server closer together when a busy machine delays one replica's sends.
SERVER_BURST = 10
DURATION = 6.0
STARTUP = 4.0  # seconds for four interpreters to import everything, on 2 busy cores


def replica_command(
    base_url: str, redis_url: str, name: str, backend: str, start_at: float
) -> list[str]:
    return [
        sys.executable,
        str(REPLICA),
        *("--base-url", base_url, "--rate", str(RATE), "--limiter", "redis"),
        *("--redis-url", redis_url, "--name", name, "--backend", backend),
        *("--start-at", repr(start_at), "--duration", str(DURATION), "--tasks", "20"),
    ]


def run_replicas(commands: list[list[str]], timeout: float) -> list[dict[str, Any]]:
    """Run the replica processes, wait for their JSON lines; kill only them if they hang.

    Blocking: call it in a worker thread, so the simulator keeps serving meanwhile.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        for command in commands
    ]
    deadline = time.monotonic() + timeout
    try:
        outputs = [
            process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            for process in processes
        ]
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
    summaries = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the replicas cover trio
@pytest.mark.anyio
async def test_four_replicas_share_one_key_without_429s(redis_url: str, redis_name: str) -> None:
    config = SimulatorConfig(
        outcomes=OutcomeMix.only("never"),
        rate_limit=RateLimit(rate=RATE, burst=SERVER_BURST),
        seed=12,
    )
    async with serve(config) as running:
        sim = running.simulator
        start_at = time.time() + STARTUP
        loop_start = anyio.current_time() + STARTUP
        commands = [
            replica_command(running.base_url, redis_url, redis_name, backend, start_at)
            for backend in ("asyncio", "trio", "asyncio", "trio")
        ]
        summaries = await anyio.to_thread.run_sync(run_replicas, commands, STARTUP + DURATION + 20)
        requests = sum(sim.stats.requests.values())
        rejected = sim.stats.rate_limited
        accepted = sim.accepted_request_times()

    # Every replica took part, and was late to start by less than a second.
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
