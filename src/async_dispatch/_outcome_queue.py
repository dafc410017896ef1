"""`OutcomeQueue`: outcomes waiting for the application, and the iterator that takes them.

Outcomes arrive from the task store (a check, a webhook or the deadline resolved a task)
and leave through ``async for outcome in poller``. An outcome counts as handled when the
consumer asks for the next one: only then is its receipt acknowledged to the store, so a
store shared by a fleet can hand an outcome that a dead replica never finished to another.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio.lowlevel

from ._alarm import Alarm
from ._errors import LifecycleError
from ._outcome import Outcome

__all__ = ["OutcomeQueue", "OutcomeStream"]


class OutcomeQueue:
    """A FIFO of ``(outcome, receipt)``, with one consumer that sleeps when it is empty."""

    __slots__ = ("_alarm", "_consuming", "_items", "_unacked")

    def __init__(self) -> None:
        self._items: deque[tuple[Outcome, Any]] = deque()
        self._alarm = Alarm()
        self._consuming = False
        self._unacked: list[Any] = []

    def __len__(self) -> int:
        return len(self._items)

    def put(self, outcome: Outcome, receipt: Any) -> None:
        """Queue an outcome (the store's sink) and wake the consumer."""
        self._items.append((outcome, receipt))
        self._alarm.wake()

    def wake(self) -> None:
        """Make the consumer look again (something it waits on may have changed)."""
        self._alarm.wake()

    def take_final(self, request_id: str) -> tuple[Outcome, Any] | None:
        """Remove and return the queued final outcome of `request_id`, if one is queued
        (for `Poller.wait_for`, which takes a task's outcome out of the iteration). A
        resubmitted task's outcome is found by its first attempt's id too."""
        for index, (outcome, receipt) in enumerate(self._items):
            if outcome.final and (
                outcome.request_id == request_id or outcome.attempts[:1] == (request_id,)
            ):
                del self._items[index]
                return outcome, receipt
        return None

    def untake(self) -> tuple[bool, Any]:
        """Withdraw the receipt of the outcome `take` returned last from the pending
        acknowledgement (its handler failed): ``(True, receipt)``, or ``(False, None)``
        when there is none (it was acknowledged already)."""
        if not self._unacked:
            return False, None
        return True, self._unacked.pop()

    def waiting(self) -> Iterator[tuple[Outcome, Any]]:
        """The queued outcomes with their receipts, oldest first."""
        return iter(self._items)

    async def take(
        self,
        *,
        ack: Callable[[Any], Awaitable[None]],
        stop: Callable[[], Awaitable[BaseException | None]],
        keep: Callable[[Any], Awaitable[bool]] | None = None,
    ) -> Outcome:
        """The next outcome, once the previous one is acknowledged.

        `stop` is asked whenever the queue is empty: it returns the exception that ends
        the iteration (`StopAsyncIteration`, or a fatal error), or None to keep waiting.
        Queued outcomes always come first, so a fatal error never withholds an outcome
        that was already known.

        `keep`, when given, is asked about the receipt of the outcome about to be yielded:
        False means it is no longer this process's (a fleet's store saw another replica
        take it over while this one stalled), and it is dropped instead of yielded. The
        outcome stays queued while `keep` runs, so a cancellation loses nothing.
        """
        if self._consuming:
            raise LifecycleError("these outcomes are already being iterated by another task")
        self._consuming = True
        try:
            while self._unacked:
                await ack(self._unacked[-1])
                self._unacked.pop()
            while True:
                if self._items:
                    # Yield to the loop *before* taking an outcome: a cancellation here
                    # leaves it queued (and in snapshots) instead of losing it.
                    await anyio.lowlevel.checkpoint()
                    if not self._items:
                        continue
                    head = self._items[0]
                    if keep is not None and not await keep(head[1]):
                        if self._items and self._items[0] is head:
                            self._items.popleft()
                        continue
                    if not self._items or self._items[0] is not head:
                        continue  # taken meanwhile (`take_final`): look again
                    outcome, receipt = self._items.popleft()
                    self._unacked.append(receipt)
                    return outcome
                reason = await stop()
                if reason is not None:
                    raise reason
                if not self._items:
                    await self._alarm.sleep_until(float("inf"))
        finally:
            self._consuming = False


class OutcomeStream(AsyncIterator[Outcome]):
    """The iterator `Poller.results()` returns (a class, not an async generator, so that
    breaking out of ``async for`` leaves nothing suspended to be finalised later)."""

    __slots__ = ("_next",)

    def __init__(self, next_outcome: Callable[[], Awaitable[Outcome]]) -> None:
        self._next = next_outcome

    async def __anext__(self) -> Outcome:
        return await self._next()
