"""What fleet mode costs per task, against the memory store, side by side in one run.

Issue #20's figures: tracking N ids, acknowledging N outcomes, Redis memory per tracked
task, and how many outcomes one replica reads ahead of its application. Each is measured
on `RedisStore` and, where the memory store has the same operation, on `MemoryStore` in the
same run, so the ratio holds on a loaded machine:

- ``track``: ``add_many`` of N new tasks (what ``Poller.track_many`` calls), wall time;
  three rounds, each figure the median round's (`TRACK_ROUNDS`);
- ``ack``: N outcomes the replica holds, acknowledged one by one as an application takes
  them (``ack`` per outcome, then until Redis has them all); the outcomes are put on the
  stream beforehand by a script (setup, not timed);
- ``memory``: ``MEMORY USAGE`` (every sample) of each key of the fleet after tracking N
  tasks, over N: what Redis holds per tracked task;
- ``read_ahead``: a replica whose application takes nothing, with N outcomes in the
  stream: how many it holds after a second.

Run: ``python -m benchmarks.fleet_costs [--quick] [--redis-url URL] [--tasks N]``; writes
``benchmarks/results/fleet_costs.json`` (``--label`` stores the run under another key, e.g.
to record a run of an older version, with ``PYTHONPATH=<its src>``), and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from async_dispatch import MemoryStore
from async_dispatch._outcome import OutcomeKind
from async_dispatch._store import TrackedTask, make_outcome
from async_dispatch.redis import RedisConnection, RedisStore

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fleet_costs.json"

_FILL = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'o', ARGV[2])
end
return 1
"""


async def _fill(connection: RedisConnection, stream: str, n: int, payload: str) -> None:
    """Put `n` outcome entries on `stream`, 10,000 per script call (setup, not timed)."""
    for start in range(0, n, 10_000):
        await connection.client.eval(_FILL, keys=[stream], args=[min(10_000, n - start), payload])


def _tasks(n: int, tag: str) -> list[TrackedTask]:
    now = anyio.current_time()
    tasks = []
    for i in range(n):
        # An id the shape of the service's (a uuid4), a small context, checks due soon.
        task = TrackedTask(f"{tag}-{uuid.UUID(int=i)}", started=now, deadline=now + 3600.0,
                           context={"i": i})  # fmt: skip
        task.due = now + 30.0
        tasks.append(task)
    return tasks


def _sink(received: list[Any]) -> Any:
    def sink(outcome: Any, receipt: Any) -> None:
        received.append(receipt)

    return sink


async def _fleet_keys(connection: RedisConnection, name: str) -> list[bytes]:
    keys: list[bytes] = []
    async for key in connection.client.scan_iter(match=RedisConnection.key(name, "*"), count=1000):
        keys.append(key)
    return keys


async def _memory_usage(connection: RedisConnection, name: str) -> int:
    total = 0
    for key in await _fleet_keys(connection, name):
        usage = await connection.client.memory_usage(key, samples=0)
        total += usage or 0
    return total


async def _delete(connection: RedisConnection, name: str) -> None:
    keys = await _fleet_keys(connection, name)
    for start in range(0, len(keys), 500):
        await connection.client.delete(keys[start : start + 500])


class _Clock:
    """Wall time, this process's CPU time and the Redis server's CPU time (``INFO cpu``:
    the server's own, exact on a private server; on a shared one it counts the other
    clients' work too) between ``start()`` and ``stop()``. On a loaded machine the wall
    time of either side is inflated by waiting for a core; CPU time is not."""

    def __init__(self, connection: RedisConnection | None = None) -> None:
        self._connection = connection

    async def _server_cpu(self) -> float:
        if self._connection is None:
            return 0.0
        info = await self._connection.client.info("cpu")
        return float(str(info["used_cpu_user"])) + float(str(info["used_cpu_sys"]))

    async def start(self) -> None:
        self._server = await self._server_cpu()
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    async def stop(self) -> dict[str, float]:
        wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
        server = await self._server_cpu() - self._server
        figures = {"wall_s": round(wall, 4), "client_cpu_s": round(cpu, 4)}
        if self._connection is not None:
            figures["server_cpu_s"] = round(server, 4)
            figures["cpu_s"] = round(cpu + server, 4)
        else:
            figures["cpu_s"] = round(cpu, 4)
        return figures


def _ratio(redis: dict[str, float], memory: dict[str, float], key: str) -> float | None:
    return round(redis[key] / memory[key], 1) if memory[key] else None


def _store(url: str, name: str, **kwargs: Any) -> RedisStore:
    try:
        return RedisStore(url, name=name, **kwargs)
    except TypeError:  # an older version, without `read_ahead`
        kwargs.pop("read_ahead", None)
        return RedisStore(url, name=name, **kwargs)


#: Rounds of the tracking measurement (memory store, then Redis, in each): a machine that
#: other work shares slows a lone round at random, so the figures are the median round's.
TRACK_ROUNDS = 3


async def measure_track(url: str, n: int, rounds: int = TRACK_ROUNDS) -> dict[str, Any]:
    """`add_many` of `n` new tasks on each store, `rounds` times; the median of each figure
    over the rounds (their ratio is the medians'), and Redis's memory per task."""
    memory_runs, redis_runs = [], []
    used = 0
    for _ in range(rounds):
        in_memory, in_redis, used = await _track_once(url, n)
        memory_runs.append(in_memory)
        redis_runs.append(in_redis)
    in_memory, in_redis = _median(memory_runs), _median(redis_runs)
    return {
        "tasks": n,
        "rounds": rounds,
        "memory_store": in_memory,
        "redis_store": in_redis,
        "wall_ratio": _ratio(in_redis, in_memory, "wall_s"),
        "cpu_ratio": _ratio(in_redis, in_memory, "cpu_s"),
        "redis_bytes_per_task": round(used / n, 1),
        "redis_wall_s_each_round": [run["wall_s"] for run in redis_runs],
        "memory_wall_s_each_round": [run["wall_s"] for run in memory_runs],
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 4) for key in runs[0]}


async def _track_once(url: str, n: int) -> tuple[dict[str, float], dict[str, float], int]:
    """One round: the memory store's figures, the Redis store's, and the fleet's bytes."""
    memory = MemoryStore()
    clock = _Clock()
    async with memory.attach(_sink([]), anyio.current_time, lambda: None, last_check_lead=1.0):
        tasks = _tasks(n, "m")
        await clock.start()
        await memory.add_many(tasks)
        in_memory = await clock.stop()

    name = f"bench-track-{uuid.uuid4().hex[:8]}"
    store = _store(url, name)
    try:
        async with store.attach(_sink([]), anyio.current_time, lambda: None, last_check_lead=1.0):
            tasks = _tasks(n, "r")
            clock = _Clock(store.connection)
            await clock.start()
            added = await store.add_many(tasks)
            in_redis = await clock.stop()
            assert len(added) == n
            used = await _memory_usage(store.connection, name)
    finally:
        async with store.connection:
            await _delete(store.connection, name)
    return in_memory, in_redis, used


async def measure_ack(url: str, n: int) -> dict[str, Any]:
    memory = MemoryStore()
    received: list[Any] = []
    clock = _Clock()
    async with memory.attach(_sink(received), anyio.current_time, lambda: None,
                             last_check_lead=1.0):  # fmt: skip
        tasks = _tasks(n, "m")
        await memory.add_many(tasks)
        for task in tasks:
            await memory.resolve(task, make_outcome(task, OutcomeKind.SUCCESS, 0.0), fenced=False)
        await clock.start()
        for receipt in received:
            await memory.ack(receipt)
        in_memory = await clock.stop()

    name = f"bench-ack-{uuid.uuid4().hex[:8]}"
    store = _store(url, name, read_ahead=n)
    payload = json.dumps({"request_id": "x", "kind": "success", "status": None, "error": None,
                          "context": None, "polls": 1, "elapsed": 1.0, "final": True,
                          "via": "poll"})  # fmt: skip
    received = []
    try:
        async with store.attach(_sink(received), anyio.current_time, lambda: None,
                                last_check_lead=1.0):  # fmt: skip
            stream = RedisConnection.key(name, "outcomes")
            await _fill(store.connection, stream, n, payload)
            with anyio.fail_after(600):
                while len(received) < n:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            clock = _Clock(store.connection)
            await clock.start()
            for receipt in received:
                await store.ack(receipt)
            with anyio.fail_after(600):
                while not await store.idle():  # noqa: ASYNC110 (every ack reached Redis)
                    await anyio.sleep(0.005)
            in_redis = await clock.stop()
    finally:
        async with store.connection:
            await _delete(store.connection, name)
    return {
        "outcomes": n,
        "memory_store": in_memory,
        "redis_store": in_redis,
        "wall_ratio": _ratio(in_redis, in_memory, "wall_s"),
        "cpu_ratio": _ratio(in_redis, in_memory, "cpu_s"),
    }


async def measure_read_ahead(url: str, n: int) -> dict[str, Any]:
    name = f"bench-ahead-{uuid.uuid4().hex[:8]}"
    store = _store(url, name)
    received: list[Any] = []
    try:
        async with store.attach(_sink(received), anyio.current_time, lambda: None,
                                last_check_lead=1.0):  # fmt: skip
            stream = RedisConnection.key(name, "outcomes")
            payload = '{"request_id":"x","kind":"success","final":true}'
            await _fill(store.connection, stream, n, payload)
            await anyio.sleep(1.0)
            held = len(received)
    finally:
        async with store.connection:
            await _delete(store.connection, name)
    return {"outcomes_in_stream": n, "held_after_1s": held,
            "read_ahead": getattr(store, "read_ahead", None)}  # fmt: skip


async def run(url: str, n: int) -> dict[str, Any]:
    return {
        "track": await measure_track(url, n),
        "ack": await measure_ack(url, n),
        "read_ahead": await measure_read_ahead(url, n),
    }


def _meta(n: int) -> dict[str, Any]:
    import async_dispatch

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "tasks": n,
        "source": str(Path(async_dispatch.__file__).parent),
    }


def table(results: dict[str, Any]) -> str:
    """The Markdown table of one run (`results` as `run` returns it)."""
    track, ack, ahead = results["track"], results["ack"], results["read_ahead"]

    def row(label: str, figures: dict[str, Any]) -> str:
        memory, redis = figures["memory_store"], figures["redis_store"]
        return (
            f"| {label} | {memory['wall_s']} / {memory['cpu_s']} | {redis['wall_s']} / "
            f"{redis['client_cpu_s']} + {redis['server_cpu_s']} | {figures['wall_ratio']}x / "
            f"{figures['cpu_ratio']}x |"
        )

    rows = [
        "| cost | MemoryStore: wall / CPU s | RedisStore: wall / client + server CPU s "
        "| ratio: wall / CPU |",
        "|---|---|---|---|",
        row(
            f"track {track['tasks']:,} ids (add_many"
            + (f", median of {track['rounds']} rounds)" if "rounds" in track else ")"),
            track,
        ),
        row(f"acknowledge {ack['outcomes']:,} outcomes", ack),
        f"| Redis memory per tracked task | - | {track['redis_bytes_per_task']} B | - |",
        f"| outcomes one replica holds, of {ahead['outcomes_in_stream']:,} in the stream "
        f"| - | {ahead['held_after_1s']:,} | - |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_costs")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 tasks")
    parser.add_argument("--label", default="current", help="the key this run is stored under")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else args.tasks
    results = anyio.run(run, args.redis_url, n)
    results["meta"] = _meta(n)
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    stored[args.label] = results
    RESULTS.write_text(json.dumps(stored, indent=2) + "\n")
    print(table(results))
    print(json.dumps(results["meta"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
