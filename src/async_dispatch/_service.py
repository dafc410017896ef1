"""`Service`: how the `Poller` and the `DispatchRuntime` own their background tasks.

An object that runs background jobs (the poller's workers, the runtime's consumer) opens
an exit stack and a task group in ``__aenter__`` and must, on the way out by any path,
cancel and await everything it started. The body's exception is not the background's
business: it must come out as itself (``except ValueError:`` around the block works),
not wrapped in an ``ExceptionGroup``. This class does that, once, for both.

Two other owners of background tasks do not use it (yet): `RedisStore.attach` runs its
outcome reader and lease keeper in a task group of its own around the ``yield`` of a
context manager the poller enters, and the testing `Simulator` keeps its own exit stack
and task group so that an ASGI lifespan can start it too. Each hand-rolls the same
steps; a change to the rule above must be made there as well.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
import anyio.abc

from ._errors import LifecycleError, NotOpenError

__all__ = ["Service", "State"]


class State(enum.Enum):
    """Where an object opened with ``async with`` is in its one life."""

    UNOPENED = "unopened"
    OPEN = "open"
    #: From the first moment of the exit on: nothing new is accepted while it winds down.
    CLOSED = "closed"


#: Enters the resources the jobs need on the exit stack.
Enter = Callable[[contextlib.AsyncExitStack], Awaitable[None]]
#: Starts the jobs in the task group.
Start = Callable[[anyio.abc.TaskGroup], None]


class Service:
    """A task group and the resources it needs, owned by one ``async with``.

    The exit stack is entered first, so resources (a client, a store) outlive the jobs
    that use them; on the way out the jobs are cancelled and awaited, then the resources
    closed in reverse order. A failure of a background job propagates from the exit.
    """

    __slots__ = ("_name", "_stack", "state")

    def __init__(self, name: str) -> None:
        self._name = name
        self._stack: contextlib.AsyncExitStack | None = None
        #: The owner's one lifecycle state: the owner keeps no flags of its own.
        self.state = State.UNOPENED

    @property
    def running(self) -> bool:
        return self.state is State.OPEN

    def check_open(self, usage: str) -> None:
        """Raise `NotOpenError`, saying how to use the owner (`usage`), unless it is open."""
        if self.state is not State.OPEN:
            when = "not open yet" if self.state is State.UNOPENED else "closed"
            raise NotOpenError(f"this {self._name} is {when}: {usage}")

    async def open(self, enter: Enter, start: Start) -> None:
        """Enter the resources through `enter`, then start the jobs through `start`."""
        if self.state is not State.UNOPENED:
            raise LifecycleError(
                f"this {self._name} was already opened; enter it only once (make a new one)"
            )
        self.state = State.CLOSED  # until it is open: a failed enter leaves it unusable
        async with contextlib.AsyncExitStack() as stack:
            await enter(stack)
            task_group = anyio.create_task_group()
            await stack.enter_async_context(_BodyBlind(task_group))
            start(task_group)
            self._stack = stack.pop_all()
            self.state = State.OPEN

    async def close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Cancel and await the jobs, then close the resources."""
        stack, self._stack, self.state = self._stack, None, State.CLOSED
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)


class _BodyBlind:
    """Enter a task group; on exit cancel it and await it without showing it the body's
    exception, so that exception propagates as itself."""

    __slots__ = ("_task_group",)

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group

    async def __aenter__(self) -> None:
        await self._task_group.__aenter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(None, None, None)
