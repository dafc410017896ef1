"""What one benchmark run measures, and how runs are summarised.

Client CPU is `time.process_time()` of this process (the server runs in another one), so
it includes the event loop and every library in the path, which is what a user pays.
Peak RSS is sampled during the run; latency is the wall time from the server marking a
task complete (its ``completedAt``) to the contender noticing.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import anyio
import attrs
import psutil

__all__ = ["Detections", "Meter", "median_of", "metered", "percentile"]


class Detections:
    """What a contender saw, task by task: completion-to-detection latencies, losses."""

    __slots__ = ("latencies", "lost", "requests", "throttled", "timed_out", "timed_out_ids")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lost = 0
        self.timed_out = 0
        #: Which tasks were reported timed out: the server says which had finished.
        self.timed_out_ids: list[str] = []
        self.requests = 0
        self.throttled = 0

    def detected(self, completed_at: datetime | str | None) -> None:
        """A task was seen finished now; `completed_at` is the server's timestamp."""
        if completed_at is None:
            return
        if isinstance(completed_at, str):
            completed_at = datetime.fromisoformat(completed_at)
        self.latencies.append(max(0.0, time.time() - completed_at.timestamp()))


@attrs.define
class Meter:
    """CPU, wall and peak memory of the code run inside `metered()`."""

    wall: float = 0.0
    cpu: float = 0.0
    peak_rss: int = 0


@contextlib.asynccontextmanager
async def metered(sample_every: float = 0.05) -> AsyncIterator[Meter]:
    meter = Meter()
    process = psutil.Process()
    meter.peak_rss = process.memory_info().rss

    async def sample() -> None:
        while True:
            meter.peak_rss = max(meter.peak_rss, process.memory_info().rss)
            await anyio.sleep(sample_every)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        try:
            yield meter
        finally:
            meter.wall = time.perf_counter() - wall0
            meter.cpu = time.process_time() - cpu0
            meter.peak_rss = max(meter.peak_rss, process.memory_info().rss)
            tg.cancel_scope.cancel()


def percentile(values: Iterable[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    k = (len(data) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of numeric figures across runs (non-numbers from the first run)."""
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(values):
            out[key] = statistics.median(numbers)
        else:
            out[key] = first
    out["repeats"] = len(runs)
    return out
