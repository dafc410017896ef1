"""The memory run, in a fresh process so RSS deltas are not hidden by a warm heap.

``python -m benchmarks._memory N`` prints one JSON object:

- bytes of RSS per tracked task with N tasks tracked, and how long `track()` took;
- how long leaving ``async with Poller`` takes with N tasks tracked;
- N deadlines falling due at once with no check pending: seconds from the deadline to
  the last TIMED_OUT outcome consumed;
- for comparison, bytes per task of the one-coroutine-per-task pattern (a task sleeping
  in a loop), as the naive and hand-rolled contenders use.

No server is needed: checks are scheduled far in the future, so none is ever sent.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

import anyio
import psutil

from async_dispatch import DispatchClient, OutcomeKind, Poller

__all__ = ["main"]

_NEVER: float = 900_000.0  # longer than any run; deadlines are bounded at 1e6 s


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _ids(n: int, tag: str) -> list[str]:
    return [f"req_{tag}{i:011x}" for i in range(n)]


async def _tracking(n: int) -> dict[str, Any]:
    # 127.0.0.1:9 (discard) is never contacted: no check falls due during the run.
    async with DispatchClient(api_key="k", base_url="http://127.0.0.1:9") as client:
        ids = _ids(n, "a")  # made before measuring: the caller owns these strings anyway
        async with Poller(client, initial_interval=_NEVER, deadline=_NEVER) as poller:
            before = _rss()
            started = time.perf_counter()
            await poller.track_many(ids)
            track_seconds = time.perf_counter() - started
            after = _rss()
            leaving = time.perf_counter()
        shutdown_seconds = time.perf_counter() - leaving

        ids = _ids(n, "b")
        async with Poller(client, initial_interval=_NEVER, deadline=_NEVER) as poller:
            deadline = 1.0
            await poller.track_many(ids, deadline=deadline)
            due = anyio.current_time() + deadline
            timed_out = 0
            async for outcome in poller:
                timed_out += outcome.kind is OutcomeKind.TIMED_OUT
            all_out = anyio.current_time() - due
    return {
        "tasks": n,
        "bytes_per_task": (after - before) / n,
        "track_seconds": track_seconds,
        "shutdown_seconds": shutdown_seconds,
        "deadline_tasks_timed_out": timed_out,
        "deadline_seconds_after_due": all_out,
    }


async def _coroutines(n: int) -> dict[str, Any]:
    async def sleeper() -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        before = _rss()
        for _ in range(n):
            tg.start_soon(sleeper)
        await anyio.sleep(0.1)
        after = _rss()
        tg.cancel_scope.cancel()
    return {"coroutine_per_task_bytes": (after - before) / n}


async def _main(n: int) -> dict[str, Any]:
    result = await _tracking(n)
    # A fifth is plenty for a per-task figure, and starting 100,000 tasks takes ~15 s.
    result.update(await _coroutines(max(1, n // 5)))
    return result


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 100_000
    print(json.dumps(anyio.run(_main, n, backend="asyncio")), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
