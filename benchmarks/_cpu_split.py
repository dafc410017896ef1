"""Split a replica's CPU time by what it was spent on: the check path, background jobs,
submits, the Redis client's own I/O tasks.

Issue #20 asks for the check path's CPU per check against the memory store's; a replica's
`time.process_time()` also counts work that costs per second (the reaper's expiry rounds,
outcome reads, lease renewals) or per task (submits), which more checks would not grow.
To tell them apart, each long-lived coroutine of a replica (a worker, the reaper, the
outcome reader, ...) is run under `CpuSplit.charged_to`: every step of it, from one
suspension to the next, is timed with `time.process_time()` and charged to its part.
Steps nest (a charged coroutine awaiting another one runs inside its step): a step is
charged its own time less its children's, so nothing is counted twice. What no charged
coroutine ran (the event loop between steps, tasks nobody named) is left over: the steps
run per part are counted too, to split it by.

Cheap enough to leave on: two clock reads per step, a few dozen steps per check.
"""

from __future__ import annotations

import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Generator
from typing import Any

_Coro = Coroutine[Any, Any, Any]


class CpuSplit:
    """CPU seconds charged per part, over the whole process's life."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        #: Steps the event loop ran per part (not counting steps nested in another): the
        #: loop's own work between steps is per step, so this is what it can be split by.
        self.steps: Counter[str] = Counter()
        # One entry per step running now (nested): the CPU its children have taken.
        self._children: list[float] = []

    def charged_to(self, part: str, coro: _Coro) -> _Coro:
        """`coro`, its CPU charged to `part` step by step (a coroutine still: task groups
        take it)."""

        async def charged() -> Any:
            return await _Stepped(self, part, coro)

        return charged()

    def since(self, seconds: dict[str, float], steps: Counter[str]) -> dict[str, Any]:
        """The CPU seconds and steps per part since `snapshot()` answered these two."""
        return {
            "seconds": {part: t - seconds.get(part, 0.0) for part, t in self.seconds.items()},
            "steps": dict(self.steps - steps),
        }

    def snapshot(self) -> tuple[dict[str, float], Counter[str]]:
        return dict(self.seconds), Counter(self.steps)

    def patch(self, owner: Any, name: str, part: str) -> None:
        """Charge every call of the coroutine method `owner.name` to `part`."""
        method: Callable[..., _Coro] = getattr(owner, name)

        @functools.wraps(method)
        def charged(*args: Any, **kwargs: Any) -> _Coro:
            return self.charged_to(part, method(*args, **kwargs))

        setattr(owner, name, charged)


class _Stepped:
    """Drive `coro` one step at a time (what a task would), timing each step."""

    def __init__(self, split: CpuSplit, part: str, coro: _Coro) -> None:
        self.split, self.part, self.coro = split, part, coro

    def __await__(self) -> Generator[Any, Any, Any]:
        split, coro, clock = self.split, self.coro, time.process_time
        children, seconds = split._children, split.seconds
        value: Any = None
        error: BaseException | None = None
        steps = split.steps
        while True:
            if not children:
                steps[self.part] += 1
            children.append(0.0)
            started = clock()
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                took = clock() - started
                seconds[self.part] += took - children.pop()
                if children:
                    children[-1] += took
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and the like: the coroutine's to handle
                value, error = None, exc
