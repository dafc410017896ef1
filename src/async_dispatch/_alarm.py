"""`Alarm`: sleep until a moment, and be woken early when an earlier one comes up.

Every background job of the library has the same shape: sleep until the next thing is
due (a check, a deadline, a webhook to send), unless something new and earlier arrives
meanwhile. This is that shape, once: one event and one timer per sleep, no polling loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio

__all__ = ["Alarm"]


class Alarm:
    """One sleeper's alarm clock. Owned by the task that sleeps on it.

    Others call `wake_by(when)` when they add work due at `when`: the sleeper wakes only
    if that is earlier than the moment it sleeps until, so adding late work costs nothing.
    """

    __slots__ = ("_clock", "_event", "_until")

    def __init__(self, clock: Callable[[], float] = anyio.current_time) -> None:
        self._clock = clock
        self._event: anyio.Event | None = None
        self._until = math.inf

    def wake_by(self, when: float) -> None:
        """Wake the sleeper if it would otherwise sleep past `when`."""
        if when < self._until and self._event is not None:
            self._event.set()

    def wake(self) -> None:
        """Wake the sleeper now, whatever it sleeps until."""
        if self._event is not None:
            self._event.set()

    async def sleep_until(self, when: float) -> None:
        """Sleep until `when` (`math.inf`: until woken), or until woken earlier."""
        self._event = event = anyio.Event()
        self._until = when
        try:
            if when == math.inf:
                await event.wait()
            else:
                with anyio.move_on_after(when - self._clock()):
                    await event.wait()
        finally:
            self._until = math.inf
            self._event = None
