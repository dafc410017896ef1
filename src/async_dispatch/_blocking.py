"""`SyncPoller`: the `Poller` for code that is not async (scripts, notebooks, a REPL).

Why this name: httpx pairs `httpx.Client` with `httpx.AsyncClient`, one API in two
calling conventions. Here the async classes carry no prefix (`DispatchClient`, `Poller`),
so the blocking twin carries one: `SyncPoller` is the `Poller`, with the same methods,
arguments and outcomes, called without ``await``. It owns its `DispatchClient` (built
from the environment, or the one you pass), as `httpx.Client` owns its connections, so a
script needs one object and one ``with``. The client's own arguments stay on
`DispatchClient` (pass one that is not open yet): every one of them, and any added later,
is there with no copy to keep in step, and the client's `bucket` and the poller's stay
two arguments of two objects.

Why it is thin: it is not a second implementation. An anyio blocking portal
(`anyio.from_thread.start_blocking_portal`) runs an event loop in a background thread,
and the real `DispatchClient` and `Poller` live on it; every method here hands the
matching coroutine to that loop and waits for its answer. So the budget, the scheduler,
the deadlines and the outcome rules are the async ones, and a notebook whose own loop is
running in the calling thread can use it too (the work runs on the portal's loop, never
on the caller's, so nothing nests and nothing says "event loop is running").

Why Ctrl-C raises `Interrupted`: a `KeyboardInterrupt` while a call is blocked cancels
that call on the loop (an outcome it had taken is not lost from the count: its task is
still listed as open), closes the poller, the client and the loop thread, and raises
`Interrupted`, a `KeyboardInterrupt` that lists the tasks still open (and a snapshot to
resume them from). The same happens when Ctrl-C lands in your own code inside the
``with`` block. The library never prints: it also logs the ``interrupted`` warning event.
(Called from inside ``asyncio.run``, whose own SIGINT handler first tries to cancel its
main task, the second Ctrl-C is the one that arrives as `KeyboardInterrupt`.)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypedDict, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._cadence import Cadence
from ._client import DispatchClient
from ._errors import NotOpenError, UsageError
from ._limiter import Limiter
from ._log import logger
from ._options import SubmitOptions, merge_options
from ._outcome import Outcome
from ._poller import DeliveryResult, Poller
from ._resubmit import ResubmitPolicy
from ._service import State
from ._stats import PollerStats
from ._store import TaskStore

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import SubmitFields

__all__ = ["Interrupted", "PollerOptions", "SyncPoller"]

_T = TypeVar("_T")

#: How many open request ids the ``interrupted`` log event names (the exception has all).
_LOGGED_IDS: Final = 20
#: How many the exception's message names.
_SHOWN_IDS: Final = 10


class PollerOptions(TypedDict, total=False):
    """`Poller`'s keyword arguments (everything but `client`), for ``**options``.

    Kept identical to `Poller.__init__`'s keywords (names and types; a test compares
    them), so `SyncPoller` forwards every option the async poller takes: see `Poller`
    for what each means.
    """

    rate: float
    burst: int
    deadline: float
    initial_interval: float
    max_interval: float
    max_in_flight: int
    bucket: Limiter | None
    store: TaskStore | None
    stop_on_input_required: bool
    callback_url: str | None
    callback_secret: str | None
    callback_headers: Mapping[str, str] | None
    safety_interval: float
    jitter: float
    cadence: Cadence | None
    seed: int | None
    resubmit: ResubmitPolicy | None
    output_types: Iterable[type]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a `SyncPoller`; these tasks were still open.

    A `KeyboardInterrupt`, so ``except Exception`` does not catch it and ``except
    KeyboardInterrupt`` still does. Uncaught, it ends the script with its traceback and
    exit status 1 (Python gives the signal's own status only to `KeyboardInterrupt`
    itself, not to a subclass). The tasks themselves go on at the service (the API cannot
    cancel one): track them again in a new poller, from `request_ids` or with
    ``restore(snapshot)``.

    Attributes:
        request_ids: Tasks submitted or tracked through the poller whose final outcome
            the caller had not received, in the order they were added.
        snapshot: `Poller.snapshot()` taken as it stopped (deadlines and contexts
            included), or None when its store keeps its tasks itself (a fleet's, a
            durable one: a new poller on that store resumes them).
        submit_cut_off: A submit was in flight and was cut off: it may have created a
            task whose request id never came back (like `SubmitUncertainError`).
    """

    def __init__(
        self,
        request_ids: Sequence[str],
        *,
        snapshot: list[dict[str, Any]] | None = None,
        submit_cut_off: bool = False,
    ) -> None:
        self.request_ids = tuple(request_ids)
        self.snapshot = snapshot
        self.submit_cut_off = submit_cut_off
        shown = ", ".join(self.request_ids[:_SHOWN_IDS])
        more = len(self.request_ids) - _SHOWN_IDS
        message = f"interrupted with {len(self.request_ids)} task(s) still open"
        if shown:
            message += f": {shown}" + (f" and {more} more" if more > 0 else "")
        if submit_cut_off:
            message += "; a submit was cut off and may have created a task"
        super().__init__(message)


class _Nothing(enum.Enum):
    """What a call cancelled before it produced anything returns."""

    NOTHING = enum.auto()


_NOTHING: Final = _Nothing.NOTHING


class _Call(Generic[_T]):
    """One blocking call, run on the portal's loop in a cancel scope of its own, so an
    interrupted caller can cancel it and then learn whether it finished anyway."""

    __slots__ = ("_args", "_cancelled", "_func", "_scope")

    def __init__(self, func: Callable[..., Awaitable[_T]], args: tuple[Any, ...]) -> None:
        self._func = func
        self._args = args
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False

    async def run(self) -> _T | _Nothing:
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._cancelled:
                scope.cancel()
            return await self._func(*self._args)
        return _NOTHING

    def cancel(self) -> None:
        """Cancel the call; runs on the loop's thread."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()


def _leave_sigint_to_the_main_thread() -> None:
    """Block SIGINT in the loop's thread (and the threads it starts), so Ctrl-C always
    reaches the main thread, where Python raises `KeyboardInterrupt`, and wakes the call
    that waits there; a signal taken by another thread would leave that call asleep."""
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


class SyncPoller:
    """A blocking `Poller`: submit and track many tasks, wait for one, iterate outcomes.

    Use it as ``with SyncPoller(...) as poller:`` (or call `close()`): leaving the block,
    by any path, closes the poller, the client and the event loop's thread. Its methods
    are the `Poller`'s, with the same arguments, without ``await``; many threads may call
    them at once (e.g. `run()` from a thread pool): they share the one budget.

    Args:
        client: A `DispatchClient` that is not open yet; the `SyncPoller` opens it on
            its own loop and closes it. By default ``DispatchClient()``: the key, base
            URL and execution mode from the environment.
        backend, backend_options: The event loop to run on (``"asyncio"`` or
            ``"trio"``), as `anyio.run` takes them.
        portal: Run on this anyio `BlockingPortal` instead of starting one (say, to share
            a loop with an in-process simulator); it is left running on close.
        **options: `Poller`'s keyword arguments (`PollerOptions`), passed on unchanged.

    Raises:
        UsageError: an argument the `Poller` or the client refuses, at construction.
    """

    def __init__(
        self,
        client: DispatchClient | None = None,
        *,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        portal: BlockingPortal | None = None,
        **options: Unpack[PollerOptions],
    ) -> None:
        if client is None:
            client = DispatchClient()
        elif not isinstance(client, DispatchClient):
            raise UsageError(f"client must be a DispatchClient, got {type(client).__name__}")
        #: The async client, opened on the portal's loop (do not await it from elsewhere).
        self.client = client
        #: The async poller doing the work, on the portal's loop.
        self.poller = Poller(client, **options)
        self._backend = backend
        self._backend_options = backend_options
        self._given_portal = portal
        self._portal: BlockingPortal | None = None
        self._stack: contextlib.ExitStack | None = None
        self._state = State.UNOPENED
        #: Guards the state, and the open ids (callers may be many threads).
        self._lock = threading.RLock()
        #: Tasks added through this object whose final outcome the caller has not had.
        self._open: dict[str, None] = {}
        self._submit_cut_off = False
        #: Calls running on the loop now: closing cancels them (their callers are told).
        self._running: set[_Call[Any]] = set()

    def __repr__(self) -> str:
        return f"<SyncPoller {self._state.value} open={len(self._open)} {self.client!r}>"

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> SyncPoller:
        self._require_portal()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            with self._lock:
                open_now = self._state is State.OPEN
            if open_now:
                raise self._stop(exc) from exc
        self._close(exc_type, exc, tb)

    def close(self) -> None:
        """Close the poller, the client and the loop's thread. Idempotent; a call still
        blocked in another thread raises `NotOpenError`."""
        self._close(None, None, None)

    @property
    def portal(self) -> BlockingPortal:
        """The anyio portal the async objects live on: run your own coroutines next to
        them with ``poller.portal.call(...)``. Opens the poller if needed."""
        return self._require_portal()

    def _require_portal(self) -> BlockingPortal:
        """The portal, opening everything on first use (so a notebook may skip ``with``)."""
        with self._lock:
            if self._state is State.OPEN:
                assert self._portal is not None
                return self._portal
            if self._state is State.CLOSED:
                raise NotOpenError("this SyncPoller is closed; make a new one")
            stack = contextlib.ExitStack()
            try:
                portal = self._given_portal
                if portal is None:
                    portal = stack.enter_context(
                        start_blocking_portal(self._backend, self._backend_options)
                    )
                    portal.call(_leave_sigint_to_the_main_thread)
                # Each is entered and left in one task of the portal's, as anyio needs.
                stack.enter_context(portal.wrap_async_context_manager(self.client))
                stack.enter_context(portal.wrap_async_context_manager(self.poller))
            except BaseException:
                self._state = State.CLOSED
                stack.__exit__(*sys.exc_info())
                raise
            self._stack, self._portal, self._state = stack, portal, State.OPEN
            return portal

    def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            stack, self._stack = self._stack, None
            portal, self._portal, self._state = self._portal, None, State.CLOSED
            running, self._running = list(self._running), set()
        if stack is None:
            return
        assert portal is not None
        if running:  # another thread waits in a call: it ends with NotOpenError

            def cancel_all() -> None:
                for call in running:
                    call.cancel()

            portal.call(cancel_all)
        stack.__exit__(exc_type, exc, tb)

    def _stop(self, interrupt: KeyboardInterrupt) -> Interrupted:
        """Ctrl-C: close everything and say what was left open."""
        with self._lock:
            portal = self._portal
            request_ids = list(self._open)
        snapshot = None
        if portal is not None and self.poller.store.capabilities.snapshot:
            with contextlib.suppress(Exception):
                snapshot = portal.call(self._on_loop(self.poller.snapshot))
        interrupted = Interrupted(
            request_ids, snapshot=snapshot, submit_cut_off=self._submit_cut_off
        )
        logger.warning(
            "interrupted",
            open=len(request_ids),
            request_ids=request_ids[:_LOGGED_IDS],
            submit_cut_off=self._submit_cut_off,
        )
        self._close(type(interrupt), interrupt, interrupt.__traceback__)
        return interrupted

    @staticmethod
    def _on_loop(func: Callable[[], _T]) -> Callable[[], Awaitable[_T]]:
        """A plain method of the poller, run on the loop's thread (it checks)."""

        async def call() -> _T:
            return func()

        return call

    def _call(
        self,
        func: Callable[..., Awaitable[_T]],
        *args: Any,
        submit: bool = False,
        keep: Callable[[_T], None] | None = None,
    ) -> _T:
        """Run ``func(*args)`` on the portal's loop and wait for it.

        `keep` records a result that came back even though the caller was interrupted
        (a submit that finished: its task is open); a `submit` cut off before it knew its
        id may have created a task, which `Interrupted` says.
        """
        call = _Call(func, args)
        with self._lock:
            portal = self._require_portal()
            self._running.add(call)
        try:
            future = portal.start_task_soon(call.run)
            try:
                result = future.result()
            except concurrent.futures.CancelledError:
                result = _NOTHING
            except KeyboardInterrupt as exc:
                late = self._cancel(portal, call, future)
                if late is _NOTHING:
                    self._submit_cut_off = self._submit_cut_off or submit
                elif keep is not None:
                    keep(late)
                raise self._stop(exc) from exc
        finally:
            with self._lock:
                self._running.discard(call)
        if result is _NOTHING:  # cancelled by `close()` from another thread
            raise NotOpenError("the SyncPoller closed while this call waited")
        return result

    @staticmethod
    def _cancel(
        portal: BlockingPortal, call: _Call[_T], future: concurrent.futures.Future[_T | _Nothing]
    ) -> _T | _Nothing:
        """Cancel an interrupted call and wait until it ended: what it returned anyway."""
        try:
            portal.call(call.cancel)
            return future.result()
        except Exception:
            return _NOTHING

    def _added(self, request_ids: Iterable[object]) -> None:
        with self._lock:
            for request_id in request_ids:
                self._open[request_id if isinstance(request_id, str) else repr(request_id)] = None

    def _received(self, outcome: Outcome) -> Outcome:
        if outcome.final:
            with self._lock:
                self._open.pop(outcome.request_id, None)
        return outcome

    # -- adding and removing work -------------------------------------------------------

    def submit(
        self,
        prompt: str,
        options: SubmitOptions | None = None,
        *,
        deadline: float | None = None,
        context: Any = None,
        resubmit: bool = True,
        **fields: Unpack[SubmitFields],
    ) -> str:
        """Submit a task and track it: `Poller.submit()`. Returns its request id."""
        options = merge_options(options, fields)
        del fields  # the frame may outlive the submit: its locals must not hold secrets

        async def submit() -> str:
            return await self.poller.submit(
                prompt, options, deadline=deadline, context=context, resubmit=resubmit
            )

        request_id = self._call(submit, submit=True, keep=self._kept)
        self._added((request_id,))
        return request_id

    def _kept(self, request_id: str) -> None:
        self._added((request_id,))

    def track(self, request_id: str, *, deadline: float | None = None, context: Any = None) -> None:
        """Track a task submitted elsewhere: `Poller.track()`."""

        async def track() -> None:
            await self.poller.track(request_id, deadline=deadline, context=context)

        self._call(track)
        self._added((request_id,))

    def track_many(
        self, request_ids: Iterable[str], *, deadline: float | None = None, context: Any = None
    ) -> None:
        """Track many tasks in one call to the store: `Poller.track_many()`."""
        ids = list(request_ids)

        async def track_many() -> None:
            await self.poller.track_many(ids, deadline=deadline, context=context)

        self._call(track_many)
        self._added(ids)

    def forget(self, request_id: str) -> bool:
        """Stop tracking without an outcome: `Poller.forget()`. True if it was tracked."""
        forgotten = self._call(self.poller.forget, request_id)
        if forgotten:
            with self._lock:
                self._open.pop(request_id, None)
        return forgotten

    def restore(self, snapshot: Iterable[Mapping[str, Any]]) -> int:
        """Track every entry of a `snapshot()` (or `Interrupted.snapshot`):
        `Poller.restore()`. Returns how many were tracked anew."""
        entries = list(snapshot)
        restored = self._call(self.poller.restore, entries)
        self._added(e["request_id"] for e in entries if isinstance(e.get("request_id"), str))
        return restored

    def deliver(self, payload: Mapping[str, Any]) -> DeliveryResult:
        """Feed a webhook's status payload into the poller: `Poller.deliver()`."""
        return self._call(self.poller.deliver, payload)

    # -- one task -----------------------------------------------------------------------

    def wait_for(self, request_id: str) -> Outcome:
        """Block until one tracked task's final outcome: `Poller.wait_for()`.

        The task is checked on the poller's one schedule and budget, like every other;
        its outcome is taken here, so iterating does not yield it again. Ctrl-C while
        waiting raises `Interrupted` (the outcome, if it arrived meanwhile, is not lost:
        the task is listed as still open).
        """
        return self._received(self._call(self.poller.wait_for, request_id))

    def run(
        self,
        prompt: str,
        options: SubmitOptions | None = None,
        *,
        deadline: float | None = None,
        context: Any = None,
        resubmit: bool = True,
        **fields: Unpack[SubmitFields],
    ) -> Outcome:
        """Submit one task and block until its final outcome: `submit()`, then
        `wait_for()`, as `Poller.run()` does, within the one budget. Many threads may
        run tasks at once."""
        options = merge_options(options, fields)
        del fields
        request_id = self.submit(
            prompt, options, deadline=deadline, context=context, resubmit=resubmit
        )
        return self.wait_for(request_id)

    # -- many outcomes ------------------------------------------------------------------

    def __iter__(self) -> Iterator[Outcome]:
        return self.results()

    def results(self, *, forever: bool = False) -> Iterator[Outcome]:
        """Outcomes as they happen, for a plain ``for`` loop: `Poller.results()`.

        Ends when nothing is tracked and every outcome was consumed (unless `forever`).
        Each step blocks until the next outcome; Ctrl-C raises `Interrupted`.
        """
        stream = self._call(self._on_loop(lambda: self.poller.results(forever=forever)))

        async def next_outcome() -> Outcome | None:
            try:
                return await stream.__anext__()
            except StopAsyncIteration:
                return None

        while True:
            outcome = self._call(next_outcome)
            if outcome is None:
                return
            yield self._received(outcome)

    # -- what is there ------------------------------------------------------------------

    @property
    def stats(self) -> PollerStats:
        """`Poller.stats`: the counters as they are now."""
        return self._call(self._on_loop(lambda: self.poller.stats))

    def snapshot(self) -> list[dict[str, Any]]:
        """`Poller.snapshot()`: everything not yet resolved for the caller."""
        return self._call(self._on_loop(self.poller.snapshot))

    def __contains__(self, request_id: object) -> bool:
        return self._call(self._on_loop(lambda: request_id in self.poller))

    def __len__(self) -> int:
        """Tasks tracked, plus finished ones whose outcome was not consumed yet."""
        return self._call(self._on_loop(lambda: len(self.poller)))
