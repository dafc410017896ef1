"""Ctrl-C as an ordinary ending: cancel the work, then say what was left open.

Without this, SIGINT raises `KeyboardInterrupt` wherever the loop happens to be, and a
user who tracked a thousand tasks learns nothing about which of them were still running.
`until_interrupted` turns SIGINT into the cancellation of one piece of work, so the
command can list what is still open and exit with `ExitCode.INTERRUPTED`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.abc
import attrs

__all__ = ["Interrupted", "until_interrupted"]

T = TypeVar("T")


@attrs.frozen
class Interrupted:
    """`until_interrupted`'s answer when Ctrl-C cancelled the work."""


async def _cancel_on_sigint(
    scope: anyio.CancelScope,
    fired: list[bool],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()  # the handler is in place before the work starts
        async for _ in signals:
            fired.append(True)
            scope.cancel()
            return


async def until_interrupted(work: Callable[[], Awaitable[T]]) -> T | Interrupted:
    """`work()`'s result, or `Interrupted` when SIGINT arrived first (and cancelled it).

    Signals can only be caught in the main thread: elsewhere (an embedding program's
    worker thread) `work` runs as is and Ctrl-C keeps its usual meaning. An exception
    from `work` propagates as itself, not wrapped in an exception group.
    """
    if threading.current_thread() is not threading.main_thread():
        return await work()
    fired: list[bool] = []
    failure: Exception | None = None
    result: list[T] = []
    async with anyio.create_task_group() as group:
        await group.start(_cancel_on_sigint, group.cancel_scope, fired)
        try:
            result.append(await work())
        except Exception as exc:  # re-raised below, outside the task group
            failure = exc
        group.cancel_scope.cancel()  # done: stop listening
    if failure is not None:
        raise failure
    if result:
        return result[0]  # finished, even if Ctrl-C came right after
    return Interrupted()
