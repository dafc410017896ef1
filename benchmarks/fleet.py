"""Fleet mode: four replicas on one key, each with its own bucket or one shared in Redis.

Issue #12's setting. The simulator enforces a per-key limit of R requests a second; four
replica processes (tests/fleet_replica.py) each run a `DispatchClient` + `Poller` with
rate R and poll as fast as their limiter allows. Variants:

- ``local``: each replica has its own in-process `TokenBucket` (what a fleet gets without
  fleet mode): together they offer 4R, and the server answers the excess with 429s.
- ``redis``: one `RedisTokenBucket` shared through Redis: the fleet sends R, and no 429.

Needs a Redis (``--redis-url``, default the local one). Run alone:
``python -m benchmarks.fleet [--quick]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

from async_dispatch.testing import OutcomeMix, RateLimit, SimulatorConfig, serve

REPLICA = Path(__file__).resolve().parent.parent / "tests" / "fleet_replica.py"
STARTUP = 4.0  # seconds for the replicas' interpreters to start


def _replica_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleet_replica", REPLICA)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run_variant(
    limiter: str, *, rate: float, server_burst: int, duration: float, redis_url: str
) -> dict[str, Any]:
    harness = _replica_module()
    config = SimulatorConfig(
        outcomes=OutcomeMix.only("never"),
        rate_limit=RateLimit(rate=rate, burst=server_burst),
        seed=12,
    )
    name = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    async with serve(config) as running:
        sim = running.simulator
        start_at = time.time() + STARTUP
        loop_start = anyio.current_time() + STARTUP
        commands = [
            harness.replica_command(
                running.base_url,
                rate=rate,
                limiter=limiter,
                redis_url=redis_url,
                name=name,
                backend=backend,
                start_at=start_at,
                duration=duration,
            )
            for backend in ("asyncio", "trio", "asyncio", "trio")
        ]
        summaries = await anyio.to_thread.run_sync(
            harness.run_replicas, commands, STARTUP + duration + 30
        )
        requests = sum(sim.stats.requests.values())
        rejected = sim.stats.rate_limited
        window = (loop_start + 0.5, loop_start + duration - 0.5)
        accepted = sum(window[0] <= t < window[1] for t in sim.accepted_request_times())
    return {
        "requests": requests,
        "rate_limited": rate_limited_share(rejected, requests),
        "accepted_per_second": round(accepted / (window[1] - window[0]), 2),
        "share_of_rate": round(accepted / (window[1] - window[0]) / rate, 3),
        "replica_pauses": [s["pauses"] for s in summaries],
    }


def rate_limited_share(rejected: int, requests: int) -> dict[str, float]:
    return {"count": rejected, "share": round(rejected / requests, 4) if requests else 0.0}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "rate": args.rate,
        "server_burst": args.server_burst,
        "duration": args.duration,
        "replicas": 4,
    }
    for limiter in ("local", "redis"):
        results[limiter] = await run_variant(
            limiter,
            rate=args.rate,
            server_burst=args.server_burst,
            duration=args.duration,
            redis_url=args.redis_url,
        )
    return results


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (5 s a variant)")
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--server-burst", type=int, default=10)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 5.0
    return args


if __name__ == "__main__":
    outcome = anyio.run(main, parse(sys.argv[1:]), backend="asyncio")
    print(json.dumps(outcome, indent=2))
