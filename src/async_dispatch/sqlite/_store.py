"""`SQLiteStore`: a `TaskStore` on a local file, so a poller survives a crash or restart.

``Poller(client, store=SQLiteStore("tasks.db"))``: every tracked task, every outcome the
application has not taken yet and every submit in flight is in the file; a new poller on
the same file resumes them, with no code of the user's. A submit that a crash cut short
becomes a `SUBMIT_UNCERTAIN` outcome at the next start.

How it is built: the schedule lives in memory, in a `MemoryStore` (the same heaps, the
same rules, so the two cannot drift apart), and every change of a task's record is
written through to the file before the call that made it returns. `MemoryStore`'s
coroutines never suspend, so a change in memory and its place in the write queue are
made in one step: no other call can come in between, and the file sees the changes in
the order memory made them. The file is the
truth across processes; memory is the truth while this process holds the file, which it
holds alone (an exclusive lock, see `_file.py`). So a restart reads the file once into
memory and carries on.

Writes never block the event loop: they run in one worker thread, in order, and the
writes that arrive while one transaction runs go together into the next (group commit:
a burst of checks costs one commit, not one each). `add_many` is one transaction.

Why claims do not touch the file (and why ``capabilities.local`` is True): a claim is a
status check about to be made, which is a read at the service and harmless to repeat.
The claim's count (`TrackedTask.polls`) is written with the check's end (`end_check`,
`resolve`, or the deadline's `expire`), in the same write as what the check learnt. A
crash in between loses only the checks that were in flight: on disk those tasks are
still due, so the next process checks them again at once, and their `polls` count is
short by those checks. Nothing else a claim decides is lost, and in exchange a claim
answers from memory, as in `MemoryStore`: the poller takes a token before it claims,
and a check costs one write, shared with the other checks of its moment.

Outcomes are handed over only once they are on disk: a crash then delivers an outcome
again (`Outcome.deliveries` > 1) rather than losing one. Acknowledgements are written
behind (not waited for): a crash just after one delivers that outcome once more.

What is not kept: webhooks parked while a submit runs (a crash mid-submit turns that
submit into SUBMIT_UNCERTAIN anyway), and the context of a submit in flight, unless the
caller names it with `SQLiteStore.submitting` (the `TaskStore` protocol does not pass it
to `begin_submit`). A program that must account for every one of its submits (the
``async-dispatch run`` command) names each one, and reads `resumed_contexts` at start to
learn which of its submits the file already knows.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from .._errors import DispatchError, SubmitUncertainError, UsageError
from .._log import logger
from .._models import TaskStatus
from .._outcome import Outcome
from .._outcome_codec import trace_of, trace_text
from .._resubmit import TaskSpec
from .._store import (
    CheckEnd,
    MemoryStore,
    OutcomeSink,
    StoreCapabilities,
    TaskStore,
    TrackedTask,
)
from ._codec import (
    decode_error,
    decode_outcome,
    decode_status,
    encode_error,
    encode_outcome,
    encode_status,
)
from ._file import (
    DELETE_INTENT,
    DELETE_OUTCOME,
    DELETE_TASK,
    INSERT_FINISHED,
    INSERT_INTENT,
    INSERT_OUTCOME,
    INSERT_TASK,
    UPDATE_TASK,
    Loaded,
    StoreFile,
    Write,
    submit_uncertain,
)

__all__ = ["SQLiteStore"]

#: A receipt: the outcome's row in the file, and the memory store's own receipt.
_Receipt = tuple[int, Any]


class _Label:
    """The context `SQLiteStore.submitting` gives the submits of its block, and the
    tickets of those that failed there, to settle when the block ends."""

    __slots__ = ("context", "store", "text", "unsettled")

    def __init__(self, store: SQLiteStore, context: Any, text: str) -> None:
        self.store = store
        self.context = context
        self.text = text
        self.unsettled: list[tuple[str, float]] = []


#: The `submitting` block the current task is in, if any (a task's own, as contextvars
#: are: concurrent submits in other tasks are not labelled by it).
_LABEL: Final[contextvars.ContextVar[_Label | None]] = contextvars.ContextVar(
    "async_dispatch_sqlite_submit_label", default=None
)


class _Batch:
    """Writes that go to the file in one transaction, and who waits for it."""

    __slots__ = ("done", "error", "writes")

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.done = anyio.Event()
        self.error: BaseException | None = None


def _wall(value: float | None) -> float:
    return math.inf if value is None else float(value)


class SQLiteStore(TaskStore):
    """A durable `TaskStore` in one SQLite file, for one poller at a time.

    Args:
        path: The file (created if missing). A second poller on the same file, in this
            process or another, is refused with `UsageError`.

    Task contexts must be JSON-serialisable (`UsageError` from `track()` otherwise): the
    file keeps them as JSON, and a restart gives them back as JSON gives them.
    """

    #: Claims answer from memory (the module docstring says what a crash costs); there
    #: is nothing to snapshot: the file is the snapshot.
    capabilities: Final = StoreCapabilities(local=True, snapshot=False)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = StoreFile(self.path)
        self._memory = MemoryStore()
        #: Ids that finished in an earlier process (this one's are in `_memory`).
        self._finished_before: set[str] = set()
        self._sink: OutcomeSink | None = None
        #: What the memory store handed over during the current call.
        self._captured: list[tuple[Outcome, Any]] = []
        self._offset = 0.0  # wall clock - the poller's loop clock
        self._next_outcome = 1
        self._limiter: anyio.CapacityLimiter | None = None
        self._batch: _Batch | None = None
        self._work: anyio.Event | None = None
        self._writer_running = False
        #: Set when the transaction running now ends (None: none is running).
        self._flushing: anyio.Event | None = None
        self._failed: BaseException | None = None
        #: Submits in flight: ticket -> the label of their `submitting` block, if any.
        self._intents: dict[str, _Label | None] = {}
        self._resumed: list[Any] = []
        #: Outcomes taken from memory whose write to disk is not done yet.
        self._delivering = 0

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, tracked={len(self._memory)})"

    def __len__(self) -> int:
        return len(self._memory)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._memory

    @property
    def resumed_contexts(self) -> list[Any]:
        """The contexts of what this store took from its file when it was attached: every
        task still tracked, then every outcome not acknowledged yet (SUBMIT_UNCERTAIN ones
        of crashed submits included, with the context `submitting` gave them). Empty for a
        new file. A program that submits from a list reads it before submitting anything,
        to skip the entries the file already accounts for."""
        return list(self._resumed)

    @contextlib.asynccontextmanager
    async def submitting(self, context: Any) -> AsyncIterator[None]:
        """Give the submits made in this block (by this task) a context the file keeps.

        ``async with store.submitting({"line": 7}): await poller.submit(...)``. Without
        it, a submit that a crash cuts short becomes a SUBMIT_UNCERTAIN outcome with no
        context, so a program cannot tell which of its submits it was. With it, that
        outcome carries `context`; and a submit that fails in the block with
        `SubmitUncertainError`, or is cancelled, becomes that outcome at once (delivered
        like any other, in the write that ends the intent, so no crash can come between
        the two). A submit that fails for sure (a 400, a refused key) leaves no outcome,
        as outside the block.

        Raises:
            UsageError: `context` is not JSON-serialisable.
        """
        try:
            text = json.dumps(context, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise UsageError(f"a submit's context must be JSON-serialisable: {exc}") from exc
        label = _Label(self, context, text)
        token = _LABEL.set(label)
        try:
            yield
        except BaseException as exc:
            # Cancelled (or interrupted) submits may have been sent: uncertain, like a
            # crash. An ordinary failure other than SubmitUncertainError is certain.
            uncertain = isinstance(exc, SubmitUncertainError) or not isinstance(exc, Exception)
            with anyio.CancelScope(shield=True):
                await self._settle(label, exc if uncertain else None)
            raise
        else:
            await self._settle(label, None)
        finally:
            _LABEL.reset(token)

    async def _settle(self, label: _Label, error: BaseException | None) -> None:
        """End the intents of `label`'s failed submits: as SUBMIT_UNCERTAIN outcomes when
        `error` says they may have been sent, else without a trace."""
        unsettled, label.unsettled = label.unsettled, []
        for ticket, started in unsettled:
            try:
                await self._settle_one(label, ticket, started, error)
            finally:
                # Only now: until its outcome is handed over, the submit keeps the poller
                # from being idle, so an iteration cannot end without that outcome.
                await self._memory.end_submit(ticket, None)

    async def _settle_one(
        self, label: _Label, ticket: str, started: float, error: BaseException | None
    ) -> None:
        if self._failed is not None:
            return  # the file keeps the intent: the next start reports it uncertain
        if error is None:
            await self._written((DELETE_INTENT, [(ticket,)]))
            return
        reason = error if isinstance(error, SubmitUncertainError) else None
        if reason is None:
            reason = SubmitUncertainError(
                "the submit was cancelled while it ran: the task may exist at the "
                "service; look for it there before resubmitting"
            )
        outcome = submit_uncertain(started, time.time(), context=label.context, error=reason)
        await self._memory.reject(outcome)
        await self._deliver(self._take_captured(), (DELETE_INTENT, [(ticket,)]))

    def snapshot(self) -> list[dict[str, Any]]:
        raise UsageError(
            f"a SQLiteStore keeps its tasks in {str(self.path)!r}: there is nothing to "
            "snapshot (a new poller on the same file resumes them)"
        )

    # -- lifecycle ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def attach(
        self,
        sink: OutcomeSink,
        clock: Callable[[], float],
        wake: Callable[[], None],
        *,
        last_check_lead: float,
    ) -> AsyncIterator[None]:
        if self._sink is not None:
            raise RuntimeError("this SQLiteStore already serves a Poller; give each its own")
        self._limiter = anyio.CapacityLimiter(1)
        loaded = await self._in_thread(self._file.open)
        self._sink = sink
        self._failed = None
        self._memory = MemoryStore()
        self._captured.clear()
        try:
            self._offset = time.time() - clock()
            async with self._memory.attach(
                self._capture, clock, wake, last_check_lead=last_check_lead
            ):
                await self._resume(loaded)
                self._batch, self._work = _Batch(), anyio.Event()
                async with anyio.create_task_group() as writer:
                    writer.start_soon(self._write_behind, name="async_dispatch.sqlite.writer")
                    try:
                        yield
                    finally:
                        writer.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._flush_now()
                    self._batch = None
                finally:
                    await self._in_thread(self._file.close)
                    self._sink = self._batch = self._work = self._flushing = None
                    for label in self._intents.values():
                        if label is not None:
                            label.unsettled.clear()
                    self._intents.clear()

    async def _resume(self, loaded: Loaded) -> None:
        """Take the file's state into memory and hand over the outcomes it holds."""
        self._finished_before = loaded.finished
        to_loop = self._to_loop
        tasks = []
        for row in loaded.tasks:
            rid, context, started, deadline, due, polls, errors, error, status, key = row[:10]
            trace = row[10]
            task = TrackedTask(
                rid,
                started=to_loop(started),
                deadline=to_loop(deadline),
                context=json.loads(context) if context is not None else None,
                due=to_loop(_wall(due)),
                trace=trace_of(trace),
            )
            task.polls, task.errors, task.last_input = int(polls), int(errors), key
            task.last_error = decode_error(error)
            task.last_status = decode_status(rid, status)
            task.spec = TaskSpec.from_json(row[11])
            task.phase = row[12] or ""
            tasks.append(task)
        await self._memory.add_many(tasks)
        self._next_outcome = max((row[0] for row in loaded.outcomes), default=0) + 1
        assert self._sink is not None
        outcomes = [
            (row_id, decode_outcome(body, deliveries))
            for row_id, body, deliveries in loaded.outcomes
        ]
        self._resumed = [task.context for task in tasks]
        self._resumed += [outcome.context for _, outcome in outcomes]
        for row_id, outcome in outcomes:
            self._sink(outcome, (row_id, None))

    # -- clocks -------------------------------------------------------------------------

    def _to_wall(self, loop_time: float) -> float | None:
        return None if loop_time == math.inf else loop_time + self._offset

    def _to_loop(self, wall_time: float) -> float:
        return wall_time - self._offset

    # -- writing ------------------------------------------------------------------------

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def _queue(self, *writes: Write) -> _Batch:
        """Put `writes` in the next transaction, in the order the changes were made."""
        if self._failed is not None:
            raise self._broken()
        batch, work = self._batch, self._work
        if batch is None or work is None:
            raise RuntimeError("the SQLiteStore is not attached to a Poller")
        batch.writes.extend(writes)
        work.set()
        return batch

    async def _written(self, *writes: Write) -> None:
        """Queue `writes` and wait until they are on disk (shielded: a change made in
        memory is never left unwritten by a cancelled caller).

        The background writer commits them (with the other writes of the moment); once
        it has stopped (a cancellation around the poller stops it before the poller's
        own tasks), the caller writes them itself, so nobody waits for a writer gone.
        """
        batch = self._queue(*writes)
        with anyio.CancelScope(shield=True):
            if self._writer_running:
                await batch.done.wait()
            while not batch.done.is_set():
                await self._flush_now()
        if batch.error is not None:
            raise self._broken()

    async def _write_behind(self) -> None:
        """The one writer: each round writes everything queued meanwhile, in one commit.
        When it stops, it writes what is queued: no waiter is left behind."""
        self._writer_running = True
        try:
            while True:
                work = self._work
                assert work is not None
                await work.wait()
                self._work = anyio.Event()
                await self._flush_now()
        finally:
            self._writer_running = False
            with anyio.CancelScope(shield=True):
                await self._flush_now()

    async def _flush_now(self) -> None:
        """Write the open batch in one transaction, after the one running now, if any."""
        while self._flushing is not None:
            await self._flushing.wait()
        batch = self._batch
        if batch is None:
            return
        self._batch = _Batch()
        self._flushing = flushing = anyio.Event()
        try:
            if batch.writes and self._failed is None:
                # Shielded: writes taken from the queue are written, cancelled or not.
                with anyio.CancelScope(shield=True):
                    await self._in_thread(self._file.write, batch.writes)
        except Exception as exc:  # disk full, I/O error: nothing after this is kept
            self._failed = exc
            batch.error = exc
            logger.error("sqlite_store_write_failed", path=str(self.path), error=repr(exc))
        finally:
            self._flushing = None
            batch.done.set()
            flushing.set()

    def _broken(self) -> DispatchError:
        error = DispatchError(
            f"the SQLite store {str(self.path)!r} could not write ({self._failed!r}): the "
            "file keeps everything up to the failed write; fix the cause and start again"
        )
        error.__cause__ = self._failed
        return error

    # -- records ------------------------------------------------------------------------

    def _task_row(self, task: TrackedTask, *, strict: bool = True) -> tuple[Any, ...]:
        try:
            context = json.dumps(task.context, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            if strict:
                raise UsageError(
                    f"a SQLiteStore task's context must be JSON-serialisable: {exc} "
                    f"(request id {task.request_id!r})"
                ) from exc
            logger.warning("sqlite_context_not_kept", request_id=task.request_id)
            context = "null"
        return (
            task.request_id,
            context,
            self._to_wall(task.started),
            self._to_wall(task.deadline),
            self._to_wall(task.due),
            task.polls,
            task.errors,
            encode_error(task.last_error),
            encode_status(task.last_status),
            task.last_input,
            trace_text(task.trace) or None,
            self._spec_text(task),
            task.phase,
        )

    @staticmethod
    def _spec_text(task: TrackedTask) -> str | None:
        if task.spec is None:
            return None
        return task.spec.stored_json(request_id=task.request_id, store="a SQLiteStore")

    def _record(self, task: TrackedTask) -> tuple[Any, ...]:
        return (
            self._to_wall(task.due),
            task.polls,
            task.errors,
            encode_error(task.last_error),
            encode_status(task.last_status),
            task.last_input,
            task.phase,
            task.request_id,
        )

    def _capture(self, outcome: Outcome, receipt: Any) -> None:
        """The memory store's sink: keep the outcome until it is on disk."""
        self._captured.append((outcome, receipt))

    def _take_captured(self) -> list[tuple[int, Outcome, Any]]:
        """The outcomes the memory store just handed over, each with its row id."""
        taken = []
        for outcome, receipt in self._captured:
            taken.append((self._next_outcome, outcome, receipt))
            self._next_outcome += 1
        self._captured.clear()
        return taken

    def _outcome_writes(self, taken: Sequence[tuple[int, Outcome, Any]]) -> list[Write]:
        # A SUBMIT_UNCERTAIN outcome has no task id: nothing to delete or remember.
        finals = [o.request_id for _, o, _ in taken if o.final and o.request_id]
        now = time.time()
        return [
            (DELETE_TASK, [(rid,) for rid in finals]),
            (INSERT_FINISHED, [(rid, now) for rid in finals]),
            (INSERT_OUTCOME, [(row, encode_outcome(outcome)) for row, outcome, _ in taken]),
        ]

    async def _deliver(self, taken: list[tuple[int, Outcome, Any]], *writes: Write) -> None:
        """Write `taken` outcomes (and `writes`) to disk, then hand them over."""
        if not taken and not writes:
            return
        # Out of memory and not handed over yet: until then the store is not idle, or a
        # finite `async for` could end with these outcomes still on their way to disk.
        self._delivering += len(taken)
        try:
            await self._written(*writes, *self._outcome_writes(taken))
        finally:
            self._delivering -= len(taken)
        sink = self._sink
        assert sink is not None
        for row, outcome, receipt in taken:
            sink(outcome, (row, receipt))

    # -- tracking -----------------------------------------------------------------------

    async def add(self, task: TrackedTask) -> bool:
        return bool(await self.add_many([task]))

    async def add_many(self, tasks: Iterable[TrackedTask]) -> list[TrackedTask]:
        before = self._finished_before
        fresh = [task for task in tasks if task.request_id not in before]
        rows = {id(task): self._task_row(task) for task in fresh}  # refuse before tracking
        added = await self._memory.add_many(fresh)
        if added:
            await self._written((INSERT_TASK, [rows[id(task)] for task in added]))
        return added

    async def get(self, request_id: str) -> TrackedTask | None:
        return await self._memory.get(request_id)

    async def forget(self, request_id: str) -> bool:
        if not await self._memory.forget(request_id):
            return False
        await self._written((DELETE_TASK, [(request_id,)]))
        return True

    # -- checks -------------------------------------------------------------------------

    def next_due(self) -> float:
        return self._memory.next_due()

    def try_claim(self, now: float) -> TrackedTask | None:
        return self._memory.try_claim(now)

    async def claim(self, now: float) -> TrackedTask | None:
        return self._memory.try_claim(now)

    async def end_check(self, task: TrackedTask, end: CheckEnd) -> None:
        if await self._memory.get(task.request_id) is not task:
            return
        await self._memory.end_check(task, end)
        await self._written((UPDATE_TASK, [self._record(task)]))

    # -- endings ------------------------------------------------------------------------

    async def resolve(self, task: TrackedTask, outcome: Outcome, *, fenced: bool) -> bool:
        if not await self._memory.resolve(task, outcome, fenced=fenced):
            return False
        await self._deliver(self._take_captured())
        return True

    async def begin_resubmit(self, task: TrackedTask) -> bool:
        if not await self._memory.begin_resubmit(task):
            return False
        # On disk before the submit is sent, due at once (a claimed task is due nowhere in
        # memory): a crash mid-submit leaves the mark, and the next process claims the
        # task first thing and ends it SUBMIT_UNCERTAIN instead of sending it again.
        record = (time.time(), *self._record(task)[1:])
        await self._written((UPDATE_TASK, [record]))
        return True

    async def resubmitted(self, task: TrackedTask, new: TrackedTask) -> bool:
        if new.request_id in self._finished_before:
            return False
        row = self._task_row(new, strict=False)  # the new attempt exists: keep it
        if not await self._memory.resubmitted(task, new):
            return False
        await self._written(
            (DELETE_TASK, [(task.request_id,)]),
            (INSERT_FINISHED, [(task.request_id, time.time())]),
            (INSERT_TASK, [row]),
        )
        return True

    async def notify(self, task: TrackedTask, outcome: Outcome, input_key: str) -> None:
        await self._memory.notify(task, outcome, input_key)
        taken = self._take_captured()
        if taken:
            await self._deliver(taken, (UPDATE_TASK, [self._record(task)]))

    async def reject(self, outcome: Outcome) -> None:
        await self._memory.reject(outcome)
        await self._deliver(self._take_captured())

    def next_deadline(self) -> float:
        return self._memory.next_deadline()

    async def expire(self, now: float) -> int:
        expired = await self._memory.expire(now)
        await self._deliver(self._take_captured())
        return expired

    async def ack(self, receipt: Any) -> None:
        row, memory_receipt = receipt
        await self._memory.ack(memory_receipt)
        self._queue((DELETE_OUTCOME, [(row,)]))  # behind: see the module docstring

    # -- submits and early webhooks -----------------------------------------------------

    async def begin_submit(self) -> str:
        ticket = uuid.uuid4().hex
        label = _LABEL.get()
        if label is not None and label.store is not self:
            label = None  # another store's block
        await self._memory.begin_submit()
        self._intents[ticket] = label
        started = time.time()
        if label is not None:
            label.unsettled.append((ticket, started))  # until end_submit says it worked
        try:
            text = label.text if label is not None else None
            await self._written((INSERT_INTENT, [(ticket, started, text)]))
        except BaseException:
            await self.end_submit(ticket, None)
            raise
        return ticket

    async def end_submit(self, ticket: Any, task: TrackedTask | None) -> TaskStatus | None:
        if ticket not in self._intents:
            return None
        label = self._intents.pop(ticket)
        if label is not None:
            if task is None:
                return None  # failed: the `submitting` block settles it, knowing why
            label.unsettled = [entry for entry in label.unsettled if entry[0] != ticket]
        row = None
        if task is not None and task.request_id not in self._finished_before:
            # The task exists at the service now: a context JSON cannot hold is not a
            # reason to lose it (it is kept as null in the file).
            row = self._task_row(task, strict=False)
        elif task is not None:
            task = None
        early = await self._memory.end_submit(ticket, task)
        writes: list[Write] = [(DELETE_INTENT, [(ticket,)])]
        if row is not None and task is not None and await self._memory.get(task.request_id) is task:
            writes.append((INSERT_TASK, [row]))
        if self._failed is None:
            await self._written(*writes)
        return early

    async def park(self, request_id: str, status: TaskStatus) -> bool:
        return await self._memory.park(request_id, status)

    async def finished(self, request_id: str) -> bool:
        return request_id in self._finished_before or await self._memory.finished(request_id)

    async def idle(self) -> bool:
        return not self._delivering and await self._memory.idle()
