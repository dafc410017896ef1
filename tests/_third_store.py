"""A third `TaskStore`, written the way a user would: from the public names only.

No heaps, no cleverness: a dict of tasks and linear scans, so every rule it follows is
visible in a few lines. It declares no capability (it claims like a shared store and has
nothing to snapshot), so a poller running on it uses nothing but the protocol. The tests
that run on it (`tests/test_seams.py`, `tests/test_service_shapes.py`) prove that the
protocol, not knowledge of the built-in stores, is what the poller needs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from async_dispatch import (
    CheckEnd,
    Outcome,
    OutcomeKind,
    OutcomeSink,
    StoreCapabilities,
    TaskStatus,
    TaskStore,
    TrackedTask,
    UsageError,
    make_outcome,
)

__all__ = ["ListStore"]


class ListStore(TaskStore):
    """Tasks in a dict; every question answered by looking at all of them."""

    capabilities = StoreCapabilities()

    def __init__(self) -> None:
        self.tasks: dict[str, TrackedTask] = {}
        self.finished_ids: set[str] = set()
        self.parked: dict[str, TaskStatus] = {}
        self.submitting = 0
        self._sink: OutcomeSink | None = None
        self._lead = 0.0

    @contextlib.asynccontextmanager
    async def attach(
        self,
        sink: OutcomeSink,
        clock: Callable[[], float],
        wake: Callable[[], None],
        *,
        last_check_lead: float,
    ) -> AsyncIterator[None]:
        self._sink, self._lead = sink, last_check_lead
        try:
            yield
        finally:
            self._sink = None

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self.tasks

    async def add(self, task: TrackedTask) -> bool:
        if task.request_id in self.tasks or task.request_id in self.finished_ids:
            return False
        self.tasks[task.request_id] = task
        return True

    async def add_many(self, tasks: Iterable[TrackedTask]) -> list[TrackedTask]:
        return [task for task in tasks if await self.add(task)]

    async def get(self, request_id: str) -> TrackedTask | None:
        return self.tasks.get(request_id)

    async def forget(self, request_id: str) -> bool:
        return self.tasks.pop(request_id, None) is not None

    def next_due(self) -> float:
        return min((task.due for task in self.tasks.values()), default=math.inf)

    def try_claim(self, now: float) -> TrackedTask | None:
        return None

    async def claim(self, now: float) -> TrackedTask | None:
        due = [task for task in self.tasks.values() if task.due <= now]
        if not due:
            return None

        def urgency(task: TrackedTask) -> tuple[bool, float]:
            # Last checks first: planned at or after the last-check time, or a routine
            # check still waiting when that time has come.
            last_check_time = task.deadline - self._lead
            return (not (task.due >= last_check_time or now >= last_check_time), task.due)

        task = min(due, key=urgency)
        task.due = math.inf
        task.polls += 1
        return task

    async def end_check(self, task: TrackedTask, end: CheckEnd) -> None:
        if self.tasks.get(task.request_id) is task:
            if end.status is not None:
                task.last_status = end.status
            task.last_error, task.errors, task.due = end.error, end.errors, end.due
            task.phase = "wait" if end.resubmit else ""

    async def begin_resubmit(self, task: TrackedTask) -> bool:
        if self.tasks.get(task.request_id) is not task or task.phase != "wait":
            return False
        task.phase = "sending"
        return True

    async def resubmitted(self, task: TrackedTask, new: TrackedTask) -> bool:
        if self.tasks.get(task.request_id) is not task or task.phase != "sending":
            return False
        if new.request_id in self.tasks or new.request_id in self.finished_ids:
            return False
        del self.tasks[task.request_id]
        self.finished_ids.add(task.request_id)
        self.tasks[new.request_id] = new
        return True

    async def resolve(self, task: TrackedTask, outcome: Outcome, *, fenced: bool) -> bool:
        if self.tasks.get(task.request_id) is not task:
            return False
        self._finish(task, outcome)
        return True

    async def notify(self, task: TrackedTask, outcome: Outcome, input_key: str) -> None:
        if self.tasks.get(task.request_id) is task and task.last_input != input_key:
            task.last_input = input_key
            self._hand(outcome)

    async def reject(self, outcome: Outcome) -> None:
        self._hand(outcome)

    def next_deadline(self) -> float:
        return min((task.deadline for task in self.tasks.values()), default=math.inf)

    async def expire(self, now: float) -> int:
        expired = [task for task in self.tasks.values() if task.deadline <= now]
        for task in expired:
            timed_out = make_outcome(
                task, OutcomeKind.TIMED_OUT, now, error=task.last_error, via="deadline"
            )
            self._finish(task, timed_out)
        return len(expired)

    async def ack(self, receipt: Any) -> None:
        return None

    async def begin_submit(self) -> None:
        self.submitting += 1

    async def end_submit(self, ticket: Any, task: TrackedTask | None) -> TaskStatus | None:
        self.submitting -= 1
        early = None
        if task is not None:
            await self.add(task)
            early = self.parked.pop(task.request_id, None)
        if not self.submitting:
            self.parked.clear()
        return early

    async def park(self, request_id: str, status: TaskStatus) -> bool:
        if not self.submitting:
            return False
        self.parked[request_id] = status
        return True

    async def finished(self, request_id: str) -> bool:
        return request_id in self.finished_ids

    async def idle(self) -> bool:
        return not self.tasks and not self.submitting

    def snapshot(self) -> list[dict[str, Any]]:
        raise UsageError("a ListStore does not snapshot")

    def _finish(self, task: TrackedTask, outcome: Outcome) -> None:
        del self.tasks[task.request_id]
        self.finished_ids.add(task.request_id)
        self._hand(outcome)

    def _hand(self, outcome: Outcome) -> None:
        assert self._sink is not None, "not attached"
        self._sink(outcome, None)
