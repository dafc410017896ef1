"""One replica of a fleet, as a process: a `DispatchClient` and a `Poller` on one API key.

Run by tests/test_redis_fleet.py and benchmarks/fleet.py with ``sys.executable``::

    python tests/fleet_replica.py --base-url http://127.0.0.1:PORT --rate 40 \\
        --limiter redis --redis-url redis://127.0.0.1:6379 --name NAME \\
        --barrier DIR --duration 6 --backend trio

Once its poller is open it says so (a file ``ready-<pid>`` in ``--barrier``) and waits for
the harness's start time (the file ``go`` there, a `time.time()` value written once every
replica is ready), so that all replicas start at once however long their interpreters took
to start on a busy machine. Then it submits ``--tasks`` tasks that never finish and polls
them as fast as its limiter allows for ``--duration`` seconds, and prints ONE line of JSON:
its poller's counters. `replica_command()` and `run_replicas()` are the harness that starts
replicas, releases them together and collects those lines. ``--limiter local`` gives each
replica its own in-process `TokenBucket` instead: the mistake fleet mode exists to prevent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from async_dispatch import DispatchClient, Limiter, Poller, TokenBucket
from async_dispatch.redis import RedisTokenBucket


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sim-key")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--limiter", choices=("redis", "local"), default="redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--name", default="fleet")
    parser.add_argument("--barrier", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    return parser.parse_args(argv)


async def replica(args: argparse.Namespace) -> dict[str, Any]:
    bucket: Limiter
    if args.limiter == "redis":
        bucket = RedisTokenBucket(args.redis_url, name=args.name, rate=args.rate, burst=args.burst)
    else:
        bucket = TokenBucket(args.rate, args.burst)
    client = DispatchClient(
        api_key=args.api_key, base_url=args.base_url, bucket=bucket, execution_mode="cloud"
    )
    # The bucket is entered first, around the client: RedisTokenBucket's docstring says why.
    async with bucket, client:
        poller = Poller(
            client,
            initial_interval=0.05,
            max_interval=0.1,
            max_in_flight=8,
            deadline=args.duration + 60,
            jitter=0.0,
        )
        async with poller:
            await _wait_for_the_start(args.barrier)
            started = time.time()
            with anyio.move_on_after(args.duration):
                for index in range(args.tasks):
                    await poller.submit(f"/Operator fleet task {index}")
                async for _ in poller:
                    pass  # the tasks never finish: this only keeps polling
            stats = poller.stats
            return {
                "started": started,
                "stopped": time.time(),
                "polls_sent": stats.polls_sent,
                "submits_sent": stats.submits_sent,
                "rate_limited": stats.rate_limited,
                "pauses": stats.pauses,
                "tracked": stats.tracked,
            }


async def _wait_for_the_start(barrier: Path) -> None:
    (barrier / f"ready-{os.getpid()}").touch()
    go = barrier / "go"
    while not go.exists():  # noqa: ASYNC110 (another process writes it: no event to wait on)
        await anyio.sleep(0.01)
    await anyio.sleep(max(0.0, float(go.read_text()) - time.time()))


def replica_command(
    base_url: str,
    *,
    rate: float,
    limiter: str = "redis",
    redis_url: str = "redis://127.0.0.1:6379",
    name: str = "fleet",
    backend: str = "asyncio",
    barrier: Path,
    duration: float = 5.0,
    tasks: int = 20,
) -> list[str]:
    """The command line that runs one replica with these settings."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        *("--base-url", base_url, "--rate", repr(rate), "--limiter", limiter),
        *("--redis-url", redis_url, "--name", name, "--backend", backend),
        *("--barrier", str(barrier), "--duration", repr(duration), "--tasks", str(tasks)),
    ]


def run_replicas(
    commands: list[list[str]], barrier: Path, timeout: float, *, lead: float = 0.5
) -> tuple[float, list[dict[str, Any]]]:
    """Run the replica processes, start them together, wait for their JSON lines.

    Returns the common start time (`time.time()`, `lead` seconds after the last replica
    was ready) and the replicas' summaries; kills only these processes if they hang.
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
        while len(list(barrier.glob("ready-*"))) < len(processes):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                break  # the summaries below say which replica failed
            time.sleep(0.01)
        start_at = time.time() + lead
        staged = barrier / "go.tmp"
        staged.write_text(repr(start_at))
        staged.replace(barrier / "go")  # atomic: a replica never reads half a number
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
    return start_at, summaries


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    summary = anyio.run(replica, args, backend=args.backend)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
