"""What the durable `SQLiteStore` costs against `MemoryStore`, driven through the protocol.

    python -m benchmarks.sqlite_store [--tasks 20000] [--checks 20000]

Per tracked task: ``add_many`` of N tasks (one transaction). Per check: a claim and its
``end_check``, as a poller's workers make them: ``--concurrency`` checks in flight at a
time (the SQLite writes of one moment share one commit). Prints one line per figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from async_dispatch import CheckEnd, MemoryStore, Outcome, TaskStore, TrackedTask
from async_dispatch.sqlite import SQLiteStore


def _ignore(outcome: Outcome, receipt: Any) -> None:
    return None


async def measure(
    store: TaskStore, tasks: int, checks: int, concurrency: int
) -> tuple[float, float]:
    async with store.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
        now = anyio.current_time()
        batch = [
            TrackedTask(f"req_{n:08d}", started=now, deadline=now + 3600, context={"n": n}, due=now)
            for n in range(tasks)
        ]
        started = time.perf_counter()
        await store.add_many(batch)
        per_task = (time.perf_counter() - started) / tasks
        done = 0

        async def worker() -> None:
            nonlocal done
            while done < checks:
                task = await store.claim(anyio.current_time())
                assert task is not None
                done += 1
                await store.end_check(task, CheckEnd(due=anyio.current_time(), errors=0))

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        per_check = (time.perf_counter() - started) / done
    return per_task, per_check


async def main(tasks: int, checks: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        stores: dict[str, TaskStore] = {
            "memory": MemoryStore(),
            "sqlite": SQLiteStore(Path(directory) / "tasks.db"),
        }
        for name, store in stores.items():
            per_task, per_check = await measure(store, tasks, checks, concurrency)
            print(
                f"{name:7s} per tracked task {per_task * 1e6:8.1f} us   "
                f"per check (claim + end_check, {concurrency} in flight) {per_check * 1e6:8.1f} us"
            )
        size = (Path(directory) / "tasks.db").stat().st_size
        wal = Path(directory) / "tasks.db-wal"
        size += wal.stat().st_size if wal.exists() else 0
        print(f"sqlite  file size {size / tasks:8.1f} B per tracked task")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    anyio.run(main, args.tasks, args.checks, args.concurrency)
