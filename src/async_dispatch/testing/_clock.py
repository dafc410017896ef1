"""The simulator's sense of time: the event loop's clock, mapped onto wall-clock timestamps.

Handlers read ``anyio.current_time()`` so tests on trio's ``MockClock`` run in virtual time;
the wire wants wall-clock ISO timestamps, so the first reading pins an offset between the
two. Task durations pass through ``scale`` so long simulated tasks finish quickly.
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import datetime, timezone

import anyio

__all__ = ["Clock"]


class Clock:
    """Event-loop time plus the one offset that turns it into wall time."""

    __slots__ = ("_loop_origin", "_wall_origin", "scale")

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._loop_origin: float | None = None
        self._wall_origin = 0.0

    def now(self) -> float:
        """The event loop's current time; the first call pins the wall-clock offset."""
        t = anyio.current_time()
        if self._loop_origin is None:
            self._loop_origin = t
            self._wall_origin = time.time()
        return t

    def wall(self, t: float) -> float:
        """Seconds since the Unix epoch at loop time ``t``."""
        if self._loop_origin is None:  # nothing read the clock yet: take t as "now"
            self._loop_origin = t
            self._wall_origin = time.time()
        return self._wall_origin + (t - self._loop_origin)

    def datetime(self, t: float) -> datetime:
        return datetime.fromtimestamp(self.wall(t), tz=timezone.utc)

    def iso(self, t: float) -> str:
        """The wire's timestamp form: ``2024-12-19T00:00:00.000000+00:00``."""
        return self.datetime(t).isoformat(timespec="microseconds")

    def http_date(self, t: float, *, round_up: bool = False) -> str:
        """An RFC 9110 HTTP-date; whole seconds, so ``round_up`` for deadlines."""
        wall = self.wall(t)
        wall = math.ceil(wall) if round_up else math.floor(wall)
        return email.utils.formatdate(wall, usegmt=True)
