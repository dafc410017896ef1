"""`Poller`: many tasks, one event loop, one rate budget, one deadline each.

How it works:

- Tracked tasks live in a `Registry` (a record and two heap entries each).
- `max_in_flight` workers take turns, under a fair lock, at being the *dispatcher*: the
  dispatcher sleeps until the earliest check falls due, takes a token from the shared
  `TokenBucket`, and only then picks the most overdue task, so a token is never spent on
  a check that became less urgent while it waited. It then releases the lock and makes
  the request itself while the next worker dispatches.
- One reaper sleeps until the earliest deadline and times tasks out, whether or not a
  check is due or in flight.
- Outcomes go to a queue that the consumer drains with ``async for``. A task leaves the
  poller only when its final outcome is handed over, so `snapshot()` taken at any moment
  (even mid-cancellation) lists every task whose outcome the caller has not received.

All of it runs in a task group owned by ``async with``: leaving the block, by any path,
cancels and awaits every worker.
"""

from __future__ import annotations

import enum
import json
import math
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

from ._client import DispatchClient
from ._clock import loop_clock
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DispatchError,
    InvalidRequestIdError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    TransportError,
    UsageError,
)
from ._limiter import TokenBucket
from ._log import logger
from ._models import Status, TaskStatus
from ._outcome import Outcome, OutcomeKind
from ._registry import Registry, TrackedTask
from ._stats import PollerStats
from ._validation import check_request_id
from ._wire import parse_status_payload

__all__ = ["DeliveryResult", "Poller"]

#: How many finished ids are remembered to recognise late or duplicate webhooks.
_RECENTLY_FINISHED: Final = 65_536
#: How many webhooks that beat their submit's answer are held for `track()`.
_EARLY_DELIVERIES: Final = 1_024
#: Interval growth: a task `age` seconds old is checked every `age * _AGE_FACTOR` seconds,
#: clamped to [initial_interval, max_interval]. Young tasks finish often; old ones rarely.
_AGE_FACTOR: Final = 0.25
#: Error backoff per task: 0.5 s doubling, capped at 30 s (full jitter).
_ERROR_BACKOFF_BASE: Final = 0.5
_ERROR_BACKOFF_CAP: Final = 30.0
#: Pause for a 429 that did not say how long: 1 s doubling per consecutive 429, capped.
_PAUSE_BASE: Final = 1.0
_PAUSE_CAP: Final = 60.0

_FINAL_KIND: Final = {Status.SUCCESS: OutcomeKind.SUCCESS, Status.ERROR: OutcomeKind.ERROR}


class DeliveryResult(enum.Enum):
    """What `Poller.deliver()` did with a payload."""

    #: The payload was about a tracked task and was classified like a poll result.
    ACCEPTED = "accepted"
    #: The task already finished here (a duplicate or late delivery): nothing changed.
    DUPLICATE = "duplicate"
    #: The poller is not tracking this id and has not recently finished it.
    UNKNOWN = "unknown"


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


class Poller:
    """Track many tasks concurrently and yield their outcomes as they happen.

    Args:
        client: An open `DispatchClient`.
        rate, burst: The status-check budget, in requests per second. Ignored when
            `bucket` is given (or the client has one): then that bucket's budget is shared.
        deadline: Default seconds a task may take before it is reported TIMED_OUT.
        initial_interval: Seconds before a task's first check.
        max_interval: The longest gap between checks of one task.
        max_in_flight: Concurrent status requests.
        stop_on_input_required: Make INPUT_REQUIRED final instead of a notification.
        callback_url, callback_secret: Hybrid mode: `submit()` asks the service to push
            the result to this webhook, and polling drops to `safety_interval`.
        safety_interval: Seconds between safety-net checks in hybrid mode.
        jitter: Relative spread of check intervals (0.2 means +-20%).
        trace: Emit a debug log event for every check.
    """

    def __init__(
        self,
        client: DispatchClient,
        *,
        rate: float = 10.0,
        burst: int = 10,
        deadline: float = 600.0,
        initial_interval: float = 2.0,
        max_interval: float = 10.0,
        max_in_flight: int = 10,
        bucket: TokenBucket | None = None,
        stop_on_input_required: bool = False,
        callback_url: str | None = None,
        callback_secret: str | None = None,
        safety_interval: float = 60.0,
        jitter: float = 0.2,
        trace: bool = False,
        seed: int | None = None,
    ) -> None:
        if not isinstance(client, DispatchClient):
            raise UsageError(f"client must be a DispatchClient, got {type(client).__name__}")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise UsageError(f"max_in_flight must be an int, got {max_in_flight!r}")
        if max_in_flight < 1:
            raise UsageError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        if not 0 <= jitter < 1:
            raise UsageError(f"jitter must be in [0, 1), got {jitter!r}")
        self.client = client
        self.bucket = bucket or client.bucket or TokenBucket(_positive("rate", rate), burst)
        self.default_deadline = _positive("deadline", deadline)
        self.initial_interval = _positive("initial_interval", initial_interval)
        self.max_interval = max(_positive("max_interval", max_interval), self.initial_interval)
        self.max_in_flight = max_in_flight
        self.stop_on_input_required = stop_on_input_required
        self.callback_url = callback_url
        self.callback_secret = callback_secret
        self.safety_interval = _positive("safety_interval", safety_interval)
        self.jitter = jitter
        self.trace = trace
        self._stats = PollerStats()
        self._rng = random.Random(seed)
        self._registry = Registry()
        self._ready: deque[tuple[Outcome, TrackedTask]] = deque()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._submitting = 0
        self._submit_lane = _SubmitLane(self)
        #: Webhooks that arrived while a submit was in flight, before its id was tracked.
        self._early: OrderedDict[str, TaskStatus] = OrderedDict()
        self._consecutive_429 = 0
        self._fatal: DispatchError | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._thread: int | None = None
        self._now: Callable[[], float] = anyio.current_time
        self._closed = False
        self._dispatch_lock: anyio.Lock | None = None
        self._token_in_hand = False
        self._consumer_waiting = False
        # Events are made by whoever sleeps on them; `_wake` sets and forgets.
        self._wake_dispatcher: anyio.Event | None = None
        self._wake_reaper: anyio.Event | None = None
        self._wake_consumer: anyio.Event | None = None
        self._dispatcher_until = math.inf
        self._reaper_until = math.inf

    @property
    def stats(self) -> PollerStats:
        """Live counters: how much is tracked and in flight, requests, 429s, outcomes."""
        self._stats.tracked = len(self._registry)
        return self._stats

    def __repr__(self) -> str:
        return (
            f"<Poller tracked={len(self._registry)} in_flight={self._stats.in_flight} "
            f"bucket={self.bucket!r}>"
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Poller:
        if self._task_group is not None:
            raise RuntimeError("this Poller is already open; enter it only once")
        if not self.client.is_open:
            raise RuntimeError(
                "the DispatchClient is not open: enter `async with client:` before the Poller"
            )
        self._thread = threading.get_ident()
        self._now = loop_clock()
        self._dispatch_lock = anyio.Lock(fast_acquire=True)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._reap, name="async_dispatch.reaper")
        for n in range(self.max_in_flight):
            task_group.start_soon(self._work, name=f"async_dispatch.worker-{n}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        assert task_group is not None
        self._closed = True
        task_group.cancel_scope.cancel()
        # The body's exception is not the background's business: keeping it out of the
        # task group lets it propagate as itself (`except AuthenticationError:` around the
        # block works) instead of wrapped in an ExceptionGroup.
        await task_group.__aexit__(None, None, None)

    def _check_open(self) -> None:
        if self._task_group is None or self._closed:
            raise RuntimeError("use the Poller inside `async with Poller(client) as poller:`")
        if threading.get_ident() != self._thread:
            raise RuntimeError(
                "this Poller belongs to the event loop of another thread; use "
                "anyio.from_thread to call into it"
            )

    # -- adding and removing work -------------------------------------------------------

    def track(self, request_id: str, *, deadline: float | None = None, context: Any = None) -> None:
        """Start tracking a task submitted elsewhere. Cheap, synchronous, idempotent.

        Tracking an id that is already tracked changes nothing (the first deadline and
        context stay). An id that cannot be valid is not an exception here: it yields a
        FAILED outcome like any other task that cannot be tracked.
        """
        self._check_open()
        if isinstance(request_id, str) and request_id in self._registry:
            return
        seconds = self._deadline_seconds(deadline)
        now = self._now()
        task = TrackedTask(
            request_id if isinstance(request_id, str) else repr(request_id),
            started=now,
            deadline=now + seconds,
            due=now + self._first_interval(),
            context=context,
        )
        try:
            check_request_id(request_id)
        except InvalidRequestIdError as exc:
            self._emit(task, OutcomeKind.FAILED, error=exc)
            return
        self._registry.add(task)
        if self._early:
            early = self._early.pop(task.request_id, None)
            if early is not None:
                self._classify(task, early)
                if not self._is_current(task):
                    return
        if task.due < self._dispatcher_until:
            self._wake(self._wake_dispatcher)
        if task.deadline < self._reaper_until:
            self._wake(self._wake_reaper)

    def _deadline_seconds(self, deadline: float | None) -> float:
        seconds = self.default_deadline if deadline is None else deadline
        # `not >= 0` also refuses NaN, which would corrupt the deadline heap.
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise UsageError(f"deadline must be a number of seconds >= 0, got {deadline!r}")
        return seconds

    def track_many(
        self, request_ids: Iterable[str], *, deadline: float | None = None, context: Any = None
    ) -> None:
        """`track()` each id with the same deadline and context."""
        for request_id in request_ids:
            self.track(request_id, deadline=deadline, context=context)

    async def submit(
        self,
        prompt: str,
        *,
        deadline: float | None = None,
        context: Any = None,
        **options: Any,
    ) -> str:
        """Submit a task (spending a token from the shared budget) and track it.

        `options` are those of `DispatchClient.submit()`. In hybrid mode the poller's
        `callback_url` and `callback_secret` are filled in unless given. Errors of the
        submit are raised here, not yielded: a task that was never created has no outcome.
        """
        self._check_open()
        self._deadline_seconds(deadline)  # refuse a bad deadline before creating the task
        if self.callback_url is not None:
            options.setdefault("callback_url", self.callback_url)
            if self.callback_secret is not None:
                options.setdefault("callback_secret", self.callback_secret)
        self._submitting += 1
        try:
            request_id = await self.client._submit_with(self._submit_lane, prompt, options)
            self._stats.submits_sent += 1
            self.track(request_id, deadline=deadline, context=context)
        finally:
            self._submitting -= 1
            if not self._submitting:
                self._early.clear()  # webhooks for ids that no submit turned out to own
            self._wake(self._wake_consumer)
        return request_id

    def forget(self, request_id: str) -> bool:
        """Stop tracking without an outcome. True if the id was tracked."""
        task = self._registry.remove(request_id)
        if task is None:
            return False
        self._wake(self._wake_consumer)
        return True

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._registry

    def __len__(self) -> int:
        """Tasks tracked, plus finished ones whose outcome has not been consumed yet."""
        return len(self._registry) + sum(1 for o, _ in self._ready if o.final)

    # -- checkpointing ------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Everything not yet resolved for the caller, as JSON-serialisable dicts.

        Each entry has `request_id`, `deadline` (absolute, seconds since the Unix epoch)
        and `context` (None when it is not JSON-serialisable). Tasks whose final outcome
        is queued but not yet consumed are included: a crash between the two loses
        nothing. Restore with `restore()`.
        """
        offset = time.time() - anyio.current_time()
        pending = [task for outcome, task in self._ready if outcome.final]
        pending.extend(self._registry.tasks.values())
        return [
            {
                "request_id": task.request_id,
                "deadline": task.deadline + offset,
                "context": _json_or_none(task.context),
            }
            for task in pending
        ]

    def restore(self, snapshot: Iterable[Mapping[str, Any]]) -> int:
        """Track every entry of a `snapshot()`; returns how many were tracked anew.

        Deadlines keep their wall-clock time: a task whose deadline passed while the
        process was down times out at once.
        """
        offset = time.time()
        before = len(self._registry)
        for entry in snapshot:
            try:
                request_id = entry["request_id"]
                remaining = max(0.0, float(entry["deadline"]) - offset)
            except (KeyError, TypeError, ValueError) as exc:
                raise UsageError(f"not a snapshot entry: {entry!r}") from exc
            self.track(request_id, deadline=remaining, context=entry.get("context"))
        return len(self._registry) - before

    # -- webhooks -----------------------------------------------------------------------

    def deliver(self, payload: Mapping[str, Any]) -> DeliveryResult:
        """Feed a status payload from outside (a webhook) into the poller.

        The payload is classified exactly like a poll result. Deliveries are idempotent:
        a duplicate, or one arriving after the poll already saw the outcome, changes
        nothing and returns `DeliveryResult.DUPLICATE`.

        Raises:
            InvalidResponseError: the payload lacks `requestId` or the status fields.
        """
        self._check_open()
        request_id = payload.get("requestId") if isinstance(payload, Mapping) else None
        if not isinstance(request_id, str) or not request_id:
            raise InvalidResponseError(
                "webhook payload has no string 'requestId'", status_code=None
            )
        status = parse_status_payload(request_id, payload)
        task = self._registry.tasks.get(request_id)
        if task is None:
            if request_id in self._recent:
                self._stats.duplicate_deliveries += 1
                return DeliveryResult.DUPLICATE
            if self._submitting:
                # A fast service can call back before our submit has read its answer:
                # hold the payload for `track()` instead of turning it away.
                self._early[request_id] = status
                if len(self._early) > _EARLY_DELIVERIES:
                    self._early.popitem(last=False)
                self._stats.deliveries += 1
                return DeliveryResult.ACCEPTED
            return DeliveryResult.UNKNOWN
        self._stats.deliveries += 1
        self._classify(task, status)
        return DeliveryResult.ACCEPTED

    # -- consuming ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Outcome]:
        return self.results()

    def results(self, *, forever: bool = False) -> AsyncIterator[Outcome]:
        """Iterate over outcomes as they happen.

        Ends when nothing is tracked, no submit is running and every outcome has been
        consumed, unless `forever` is true (for long-lived services that keep adding work).
        Raises `AuthenticationError`/`PermissionDeniedError` if the service refuses the
        key: that concerns every task, so it is not an outcome.
        """
        self._check_open()
        return _Outcomes(self, forever)

    async def _next_outcome(self, forever: bool) -> Outcome:
        self._check_open()
        if self._consumer_waiting:
            raise RuntimeError("this Poller is already being iterated by another task")
        self._consumer_waiting = True
        try:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._ready:
                    # Yield to the loop *before* taking an outcome: a cancellation here
                    # leaves it queued (and in snapshots) instead of losing it.
                    await anyio.lowlevel.checkpoint()
                    outcome = self._ready.popleft()[0]
                    self._stats.outcomes[outcome.kind] += 1
                    return outcome
                if not forever and not self._registry and not self._submitting:
                    raise StopAsyncIteration
                self._wake_consumer = event = anyio.Event()
                await event.wait()
        finally:
            self._consumer_waiting = False

    # -- background work ----------------------------------------------------------------

    async def _work(self) -> None:
        """One worker: take the next check, make the request, repeat.

        When a check is due and a token is free right now, the worker takes both at once,
        with no await in between (so nothing can get ahead of it). Otherwise it queues for
        its turn at dispatching, which means waiting, under the fair lock.
        """
        lock = self._dispatch_lock
        assert lock is not None
        registry = self._registry
        while True:
            if (
                self._fatal is None
                and registry.next_due() <= self._now()
                and self.bucket.try_acquire()
            ):
                task = registry.pop_due(self._now())
                assert task is not None  # due was checked just above, with no await since
            else:
                async with lock:
                    task = await self._next_check()
            await self._check(task)

    async def _next_check(self) -> TrackedTask:
        """Wait for a due check and a token; return the most overdue task at that moment."""
        registry = self._registry
        while True:
            due = registry.next_due()
            now = self._now()
            if due > now or self._fatal is not None:
                await self._sleep_until(due if self._fatal is None else math.inf)
                continue
            if not self._token_in_hand:
                await self.bucket.acquire()
                self._token_in_hand = True
            task = registry.pop_due(self._now())
            if task is not None:
                self._token_in_hand = False
                return task

    async def _sleep_until(self, when: float) -> None:
        self._wake_dispatcher = event = anyio.Event()
        self._dispatcher_until = when
        try:
            with anyio.move_on_after(when - self._now()):
                await event.wait()
        finally:
            self._dispatcher_until = math.inf

    async def _check(self, task: TrackedTask) -> None:
        """Make one status request for `task` and act on the answer."""
        task.polls += 1
        self._stats.polls_sent += 1
        self._stats.in_flight += 1
        try:
            # A reading that lands after the deadline is useless (the reaper has reported
            # TIMED_OUT): abandon a hung request then, instead of letting it hold a worker.
            # A reading taken at or after the deadline is ignored for the same reason: the
            # reaper owns the task from then on, so the outcome does not depend on a race.
            # Far from its deadline a request is bounded by the client's own timeout, so
            # the scope (and its timer) is only paid for near the deadline.
            if task.deadline - self._now() > self.client.timeout:
                status = await self.client.fetch_status(task.request_id)
            else:
                with anyio.CancelScope(deadline=task.deadline) as scope:
                    status = await self.client.fetch_status(task.request_id)
                if scope.cancelled_caught:
                    return
            if self._now() >= task.deadline:
                return
        except (AuthenticationError, PermissionDeniedError) as exc:
            self._fail_everything(task, exc)
        except NotFoundError as exc:
            self._resolve(task, OutcomeKind.FAILED, error=exc)
        except BadRequestError as exc:
            self._resolve(task, OutcomeKind.FAILED, error=exc)
        except RateLimitedError as exc:
            await self._rate_limited(task, exc)
        except (APIStatusError, TransportError, InvalidResponseError) as exc:
            self._transient(task, exc)
        else:
            self._consecutive_429 = 0
            if self._is_current(task):
                task.in_flight = False
                task.errors = 0
                task.last_error = None
                self._classify(task, status)
        finally:
            self._stats.in_flight -= 1
            if task.in_flight:  # resolved elsewhere, or an exception escaped
                task.in_flight = False

    def _classify(self, task: TrackedTask, status: TaskStatus) -> None:
        """Turn a status reading (from a poll or a webhook) into outcomes and schedule."""
        task.last_status = status
        kind = _FINAL_KIND.get(status.status)
        if kind is not None:
            self._resolve(task, kind, status=status)
            return
        if status.status is Status.INPUT_REQUIRED:
            identity = _input_identity(status)
            if identity != task.last_input:
                task.last_input = identity
                if self.stop_on_input_required:
                    self._resolve(task, OutcomeKind.INPUT_REQUIRED, status=status)
                    return
                self._emit(task, OutcomeKind.INPUT_REQUIRED, status=status, final=False)
        elif status.status is Status.UNKNOWN:
            self._stats.unknown_statuses += 1
        if self.trace:
            logger.debug("checked", request_id=task.request_id, status=status.raw_status)
        if not task.in_flight:
            self._reschedule(task, self._cadence(task))

    async def _rate_limited(self, task: TrackedTask, exc: RateLimitedError) -> None:
        self._consecutive_429 += 1
        pause = exc.retry_after
        if pause is None:
            pause = min(_PAUSE_CAP, _PAUSE_BASE * 2 ** min(self._consecutive_429 - 1, 16))
        await self._pause_key(pause)
        task.last_error = exc
        if self._is_current(task):
            task.in_flight = False
            # Keep its place in line: the pause, not a longer gap, is the backoff.
            self._reschedule(task, self._now())

    async def _pause_key(self, seconds: float) -> None:
        """A 429 concerns the whole key: pause the shared bucket for everyone."""
        self._stats.rate_limited += 1
        if seconds > self.bucket.paused_for():
            self._stats.pauses += 1
            logger.warning("rate_limited", delay=round(seconds, 3))
        await self.bucket.pause(seconds)

    def _transient(self, task: TrackedTask, exc: DispatchError) -> None:
        self._stats.retries += 1
        task.last_error = exc
        if self.trace:
            logger.debug("check_failed", request_id=task.request_id, error=type(exc).__name__)
        if self._is_current(task):
            task.in_flight = False
            task.errors += 1
            ceiling = min(_ERROR_BACKOFF_CAP, _ERROR_BACKOFF_BASE * 2 ** min(task.errors - 1, 16))
            self._reschedule(task, self._now() + self._rng.uniform(0, ceiling))

    def _fail_everything(self, task: TrackedTask, exc: DispatchError) -> None:
        """401/403 concern the key, not the task: stop checking and raise to the consumer."""
        if self._fatal is None:
            logger.warning("api_key_refused", status_code=getattr(exc, "status_code", None))
            self._fatal = exc
        if self._is_current(task):
            task.in_flight = False
            self._reschedule(task, self._now())
        self._wake(self._wake_consumer)

    async def _reap(self) -> None:
        """Time out tasks at their deadline, whether or not a check is due or in flight."""
        registry = self._registry
        while True:
            now = self._now()
            expired = list(registry.pop_expired(now))
            for task in expired:
                self._emit(task, OutcomeKind.TIMED_OUT, error=task.last_error)
                self._remember(task.request_id)
            if expired:
                await anyio.lowlevel.checkpoint()
                continue
            self._wake_reaper = event = anyio.Event()
            self._reaper_until = when = registry.next_deadline()
            try:
                with anyio.move_on_after(when - now):
                    await event.wait()
            finally:
                self._reaper_until = math.inf

    # -- helpers ------------------------------------------------------------------------

    def _is_current(self, task: TrackedTask) -> bool:
        return self._registry.tasks.get(task.request_id) is task

    def _resolve(
        self,
        task: TrackedTask,
        kind: OutcomeKind,
        *,
        status: TaskStatus | None = None,
        error: Exception | None = None,
    ) -> None:
        """Give `task` its final outcome, exactly once."""
        if self._registry.tasks.get(task.request_id) is not task:
            return
        self._registry.remove(task.request_id)
        self._emit(task, kind, status=status, error=error)
        self._remember(task.request_id)

    def _emit(
        self,
        task: TrackedTask,
        kind: OutcomeKind,
        *,
        status: TaskStatus | None = None,
        error: Exception | None = None,
        final: bool = True,
    ) -> None:
        outcome = Outcome(
            request_id=task.request_id,
            kind=kind,
            status=status or task.last_status,
            error=error,
            context=task.context,
            polls=task.polls,
            elapsed=self._now() - task.started,
            final=final,
        )
        if self.trace:
            logger.debug("outcome", request_id=task.request_id, kind=kind.value)
        self._ready.append((outcome, task))
        self._wake(self._wake_consumer)

    def _reschedule(self, task: TrackedTask, due: float) -> None:
        self._registry.schedule(task, due)
        if due < self._dispatcher_until:
            self._wake(self._wake_dispatcher)

    def _first_interval(self) -> float:
        base = self.safety_interval if self.callback_url else self.initial_interval
        return self._jittered(base)

    def _cadence(self, task: TrackedTask) -> float:
        now = self._now()
        if self.callback_url:
            interval = self.safety_interval
        else:
            age = now - task.started
            interval = min(self.max_interval, max(self.initial_interval, age * _AGE_FACTOR))
        return now + self._jittered(interval)

    def _jittered(self, interval: float) -> float:
        if not self.jitter:
            return interval
        return interval * (1.0 + self.jitter * (2.0 * self._rng.random() - 1.0))

    def _remember(self, request_id: str) -> None:
        recent = self._recent
        recent[request_id] = None
        if len(recent) > _RECENTLY_FINISHED:
            recent.popitem(last=False)

    @staticmethod
    def _wake(event: anyio.Event | None) -> None:
        if event is not None:
            event.set()


class _SubmitLane:
    """How submits take tokens: one submitter at a time queues in the bucket.

    The bucket is FIFO, and the checks queue in it through a single dispatching worker.
    If every concurrent submit queued on its own, fifty submitters would get fifty turns
    for each turn of the checks. Through this lane, at most one submit and one check wait
    in the bucket at any moment, so when both are saturated they alternate, and when no
    check is due the submits get the whole budget. A 429 met by a submit pauses the
    bucket for everyone, exactly like one met by a check.
    """

    __slots__ = ("_lock", "_poller")

    def __init__(self, poller: Poller) -> None:
        self._poller = poller
        self._lock: anyio.Lock | None = None

    async def acquire(self) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            await self._poller.bucket.acquire()

    async def pause(self, seconds: float) -> None:
        await self._poller._pause_key(seconds)

    async def __aenter__(self) -> _SubmitLane:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def try_acquire(self) -> bool:
        return False

    def paused_for(self) -> float:
        return self._poller.bucket.paused_for()


class _Outcomes(AsyncIterator[Outcome]):
    """The iterator `Poller.results()` returns (a class, not an async generator, so that
    breaking out of ``async for`` leaves nothing suspended to be finalised later)."""

    __slots__ = ("_forever", "_poller")

    def __init__(self, poller: Poller, forever: bool) -> None:
        self._poller = poller
        self._forever = forever

    async def __anext__(self) -> Outcome:
        return await self._poller._next_outcome(self._forever)


def _input_identity(status: TaskStatus) -> str:
    """What makes one input request distinct from the next: its metadata, else its text."""
    metadata = status.hitl_input_metadata
    if metadata:
        try:
            return json.dumps(metadata, sort_keys=True, default=str)
        except (TypeError, ValueError):
            return repr(metadata)
    return status.text or ""


def _json_or_none(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value
