"""What each task store costs, driven through the `TaskStore` protocol, side by side.

    python -m benchmarks.stores [--tasks 20000] [--checks 20000] [--redis-url URL]

For `MemoryStore`, the durable `SQLiteStore` and a fleet's `RedisStore`, in one run: per
tracked task, ``add_many`` of N tasks (what `Poller.track_many` calls); per check, a
claim and its ``end_check`` as a poller's workers make them, ``--concurrency`` in flight
at a time (the SQLite writes of one moment share one commit; each Redis one is a script
call). Wall time per operation, and CPU time: this process's (SQLite's worker thread
included) plus, for Redis, the server's own (``INFO cpu``: exact on a private server, the
other clients' work too on a shared one). Writes ``results/stores.json``; ``python -m
benchmarks.render`` puts the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from async_dispatch import CheckEnd, MemoryStore, Outcome, TaskStore, TrackedTask
from async_dispatch.redis import RedisStore
from async_dispatch.sqlite import SQLiteStore

from .fleet_costs import _Clock, _delete, _meta

RESULTS = Path(__file__).parent / "results" / "stores.json"


def _ignore(outcome: Outcome, receipt: Any) -> None:
    return None


async def measure(
    store: TaskStore, tasks: int, checks: int, concurrency: int, clock: _Clock
) -> dict[str, Any]:
    """µs of wall and CPU time per tracked task and per check, on an attached `store`."""
    now = anyio.current_time()
    batch = [
        TrackedTask(f"req_{n:08d}", started=now, deadline=now + 3600, context={"n": n}, due=now)
        for n in range(tasks)
    ]
    await clock.start()
    added = await store.add_many(batch)
    track = await clock.stop()
    assert len(added) == tasks, "every task is new"
    done = 0

    async def worker() -> None:
        nonlocal done
        while done < checks:
            task = await store.claim(anyio.current_time())
            assert task is not None, "every task is due"
            done += 1
            await store.end_check(task, CheckEnd(due=anyio.current_time(), errors=0))

    await clock.start()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    check = await clock.stop()

    def per(figures: dict[str, float], count: int) -> dict[str, float]:
        return {"wall_us": round(figures["wall_s"] / count * 1e6, 1),
                "cpu_us": round(figures["cpu_s"] / count * 1e6, 1)}  # fmt: skip

    return {"per_task": per(track, tasks), "per_check": per(check, done)}


async def run(tasks: int, checks: int, concurrency: int, redis_url: str) -> dict[str, Any]:
    results: dict[str, Any] = {"tasks": tasks, "checks": checks, "concurrency": concurrency}
    stores: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "tasks.db"
        local: list[tuple[str, Callable[[], TaskStore]]] = [
            ("memory", MemoryStore),
            ("sqlite", lambda: SQLiteStore(path)),
        ]
        for label, make in local:
            store = make()
            async with store.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
                stores[label] = await measure(store, tasks, checks, concurrency, _Clock())
        size = path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob("*-wal"))
        stores["sqlite"]["file_bytes_per_task"] = round(size / tasks, 1)
    name = f"bench-stores-{uuid.uuid4().hex[:8]}"
    redis = RedisStore(redis_url, name=name)
    try:
        async with redis.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
            clock = _Clock(redis.connection)
            stores["redis"] = await measure(redis, tasks, checks, concurrency, clock)
    finally:
        async with redis.connection:
            await _delete(redis.connection, name)
    results["stores"] = stores
    return results


def table(results: dict[str, Any]) -> str:
    """The Markdown table of one run, each store against `MemoryStore`."""
    stores = results["stores"]
    memory = stores["memory"]
    names = {"memory": "`MemoryStore`", "sqlite": "`SQLiteStore`", "redis": "`RedisStore`"}
    rows = [
        "| store | per tracked task: wall / CPU µs | per check: wall / CPU µs "
        "| CPU against memory: task / check |",
        "|---|---|---|---|",
    ]
    for label, figures in stores.items():
        task, check = figures["per_task"], figures["per_check"]
        ratio_task = task["cpu_us"] / memory["per_task"]["cpu_us"]
        ratio_check = check["cpu_us"] / memory["per_check"]["cpu_us"]
        rows.append(
            f"| {names[label]} | {task['wall_us']} / {task['cpu_us']} | "
            f"{check['wall_us']} / {check['cpu_us']} | {ratio_task:.1f}x / {ratio_check:.1f}x |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stores", description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = anyio.run(run, args.tasks, args.checks, args.concurrency, args.redis_url)
    results["meta"] = _meta(args.tasks)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
