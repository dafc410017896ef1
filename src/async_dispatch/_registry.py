"""What a `Poller` tracks, and when each task next needs attention.

A tracked task costs one slotted record and two heap entries (its next check and its
deadline), a few hundred bytes in all: there is no coroutine, timer or cancel scope per
task, which is what lets one poller hold 100,000 of them.

Heap entries are never removed in place. Rescheduling pushes a new entry and the old one
becomes stale; stale entries are recognised (the record moved on, or left the registry)
and dropped when they reach the top. This keeps every operation O(log n).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from typing import Any

from ._models import TaskStatus

__all__ = ["Registry", "TrackedTask"]


class TrackedTask:
    """The state of one tracked task. Owned by the registry; mutated by the poller."""

    __slots__ = (
        "context",
        "deadline",
        "due",
        "errors",
        "in_flight",
        "last_error",
        "last_input",
        "last_status",
        "polls",
        "request_id",
        "seq",
        "started",
    )

    def __init__(
        self, request_id: str, *, started: float, deadline: float, due: float, context: Any
    ) -> None:
        self.request_id = request_id
        self.context = context
        self.started = started
        self.deadline = deadline
        #: When the next check is due; `math.inf` while a check is in flight.
        self.due = due
        self.seq = 0
        self.polls = 0
        #: Consecutive transient failures, for the error backoff.
        self.errors = 0
        self.in_flight = False
        self.last_error: Exception | None = None
        self.last_status: TaskStatus | None = None
        #: Identity of the last input request reported, so each is reported once.
        self.last_input: str | None = None

    def __repr__(self) -> str:
        return f"<TrackedTask {self.request_id} due={self.due:.3f} polls={self.polls}>"


class Registry:
    """Tracked tasks by id, with a heap of due checks and a heap of deadlines."""

    __slots__ = ("_deadlines", "_due", "_seq", "tasks")

    def __init__(self) -> None:
        self.tasks: dict[str, TrackedTask] = {}
        self._due: list[tuple[float, int, TrackedTask]] = []
        self._deadlines: list[tuple[float, int, TrackedTask]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self.tasks

    def add(self, task: TrackedTask) -> None:
        """Start tracking `task` (whose id must not be tracked yet)."""
        self.tasks[task.request_id] = task
        task.seq = next(self._seq)
        heapq.heappush(self._due, (task.due, task.seq, task))
        heapq.heappush(self._deadlines, (task.deadline, task.seq, task))

    def remove(self, request_id: str) -> TrackedTask | None:
        """Stop tracking; its heap entries go stale and are dropped lazily (see `compact`)."""
        task = self.tasks.pop(request_id, None)
        if task is not None:
            self.compact()
        return task

    def schedule(self, task: TrackedTask, due: float) -> None:
        """Set when `task` is next checked (it must not be in flight)."""
        task.due = due
        task.seq = next(self._seq)
        heapq.heappush(self._due, (due, task.seq, task))

    def next_due(self) -> float:
        """When the earliest check falls due; `math.inf` when none is scheduled."""
        due = self._due
        while due:
            when, seq, task = due[0]
            if task.seq == seq and self.tasks.get(task.request_id) is task:
                return when
            heapq.heappop(due)
        return math.inf

    def pop_due(self, now: float) -> TrackedTask | None:
        """Take the most overdue task whose check is due at `now`, marking it in flight."""
        if self.next_due() > now:
            return None
        task = heapq.heappop(self._due)[2]
        task.due = math.inf
        task.in_flight = True
        return task

    def next_deadline(self) -> float:
        """When the earliest deadline falls; `math.inf` when nothing is tracked."""
        deadlines = self._deadlines
        while deadlines:
            when, _, task = deadlines[0]
            if self.tasks.get(task.request_id) is task:
                return when
            heapq.heappop(deadlines)
        return math.inf

    def pop_expired(self, now: float) -> Iterator[TrackedTask]:
        """Remove and yield every task whose deadline is at or before `now`."""
        while self.next_deadline() <= now:
            task = heapq.heappop(self._deadlines)[2]
            del self.tasks[task.request_id]
            yield task
        self.compact()

    def compact(self) -> None:
        """Drop stale heap entries once they far outnumber live ones.

        A finished task's entries would otherwise stay until they reach the top of their
        heap, that is until its deadline, keeping the record (and its last status) alive
        long after the caller got the outcome. Rebuilding only when stale entries are
        several times the live ones keeps the cost amortised O(1) per removal; an empty
        registry simply drops both heaps.
        """
        live = len(self.tasks)
        if not live:
            self._due.clear()
            self._deadlines.clear()
            return
        if len(self._due) > 4 * live + 1024:
            self._due = [e for e in self._due if e[2].seq == e[1] and e[2] is self._live(e[2])]
            heapq.heapify(self._due)
        if len(self._deadlines) > 4 * live + 1024:
            self._deadlines = [e for e in self._deadlines if e[2] is self._live(e[2])]
            heapq.heapify(self._deadlines)

    def _live(self, task: TrackedTask) -> TrackedTask | None:
        return self.tasks.get(task.request_id)
