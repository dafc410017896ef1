"""`Poller`: many tasks, one event loop, one rate budget, one deadline each.

The poller is a composition of named parts, each the one place for its rule:

- the task store (`MemoryStore`, or a fleet's `RedisStore`) owns every state change of
  a task: tracking, claiming a due check, planning the next, resolving, expiring;
- `classify()` says what a reading or a failed check means (`_classify.py`);
- the `Cadence` says when a task is next checked (`_cadence.py`);
- the `RetryPolicy` says how long transient failures and 429s wait (`_retry.py`);
- the `Limiter` is the key's shared budget (`_limiter.py`);
- the `OutcomeQueue` hands outcomes to ``async for`` (`_outcome_queue.py`).

What is left here is the work itself. `max_in_flight` workers take turns, under a fair
lock, at being the *dispatcher*: it sleeps until a check falls due, takes a token, and
only then claims the most urgent check, so a token is never spent on a check that became
less urgent while it waited; then it makes the request itself while the next worker
dispatches. One reaper times tasks out at their deadline. All of it runs in a task group
owned by ``async with``: leaving the block, by any path, cancels and awaits every worker.
"""

from __future__ import annotations

import contextlib
import enum
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import attrs

from ._alarm import Alarm
from ._cadence import Cadence
from ._classify import Action, Decision, classify
from ._client import DispatchClient, check_result
from ._clock import loop_clock
from ._defaults import POLLER_DEFAULTS
from ._errors import (
    AuthenticationError,
    CoordinationError,
    DispatchError,
    InvalidRequestIdError,
    InvalidResponseError,
    LifecycleError,
    NotOpenError,
    OutputValidationError,
    PermissionDeniedError,
    RateLimitedError,
    SubmitNotTrackedError,
    SubmitUncertainError,
    TransportError,
    UsageError,
)
from ._limiter import Limiter, OneAtATime, TokenBucket
from ._log import debug_enabled, logger
from ._models import Status, TaskStatus
from ._options import SubmitOptions, merge_options, secret_field_names
from ._outage import Outage
from ._outcome import SCHEMA_OUTPUT, Outcome, OutcomeKind, Via
from ._outcome_codec import trace_of, trace_text
from ._outcome_queue import OutcomeQueue, OutcomeStream
from ._resubmit import ResubmitPolicy, TaskSpec
from ._service import Service
from ._stats import Counters, PollerStats
from ._store import (
    CheckEnd,
    MemoryStore,
    RedeliveringStore,
    SubmitSendingStore,
    TaskStore,
    TokenClaimingStore,
    TrackedTask,
    make_outcome,
)
from ._structured import OutputType, output_type, resolve_output_type
from ._validation import check_int, check_request_id, check_seconds
from ._wire import parse_status_payload
from .instrumentation import (
    SPAN_CHECK,
    SPAN_DELIVER,
    SPAN_TRACK,
    CheckDone,
    CheckResult,
    TaskForgotten,
    TaskResolved,
    TaskRetrying,
    TaskTracked,
    TokenWaited,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import SubmitFields

__all__ = ["DeliveryResult", "Poller"]

#: The longest deadline accepted: about 11.6 days. Longer makes no sense for a task the
#: service runs, and bounded values keep every clock sum finite.
MAX_DEADLINE: Final = 1_000_000.0
#: What a check is wrapped in when no hook traces: nothing, shared.
_NO_SPAN: Final = contextlib.nullcontext()
#: How soon a dispatcher that lost a due check to another replica looks again.
_CLAIM_RETRY: Final = 0.01
#: The shortest wait before trying an unreachable limiter or store again.
_OUTAGE_MIN_WAIT: Final = 0.1
#: Deliveries of one outcome whose handler failed each time, after which a store without
#: its own redelivery (`StoreCapabilities.redeliver`) gives up on it (a fleet's store has
#: the same bound, then its dead-letter stream).
HANDLER_DELIVERIES: Final = 3


class DeliveryResult(enum.Enum):
    """What `Poller.deliver()` did with a payload."""

    #: The payload was about a tracked task and was classified like a poll result.
    ACCEPTED = "accepted"
    #: The task already finished (a duplicate or late delivery): nothing changed.
    DUPLICATE = "duplicate"
    #: The poller is not tracking this id and has not recently finished it.
    UNKNOWN = "unknown"


#: Kept for code written against 0.x: the poller raises `NotOpenError` (a closed poller,
#: or one stopped because the key was refused) like every other object that is not open.
PollerUnavailable = NotOpenError


class Poller:
    """Track many tasks concurrently and yield their outcomes as they happen.

    Args:
        client: An open `DispatchClient`.
        rate, burst: The status-check budget, in requests per second. Ignored when
            `bucket` is given (or the client has one): then that limiter's budget is shared.
        deadline: Default seconds a task may take before it is reported TIMED_OUT.
        initial_interval, max_interval, jitter: The routine `Cadence` of checks (or pass
            `cadence`).
        max_in_flight: Concurrent status requests.
        bucket: The `Limiter` shared with other callers of the key (`TokenBucket`, or a
            fleet's `RedisTokenBucket`).
        store: Where tracked tasks live: a new `MemoryStore` by default, or a fleet's
            `RedisStore`.
        stop_on_input_required: Make INPUT_REQUIRED final instead of a notification.
        callback_url, callback_secret, callback_headers: Hybrid mode: `submit()` asks the
            service to push the result to this webhook, and polling drops to
            `safety_interval`.
        cadence: The full check cadence, instead of the interval arguments.
        seed: Seed of the jitter, for reproducible runs.
        resubmit: Resubmit tasks whose attempt failed (`ResubmitPolicy`: how many
            attempts, on which outcomes, how long between). Only tasks submitted
            through this poller can be resubmitted (a `track()`-ed id has no prompt
            here). In a fleet, give every replica the same policy.
        output_types: Output types (pydantic models, attrs classes, dataclasses) this
            poller may have to rebuild from a stored outcome without having submitted
            them itself: in a fleet, or after a restart on a durable store, the type
            named by a task is looked up here first, then imported. Types defined inside
            a function can only be found here.
    """

    def __init__(
        self,
        client: DispatchClient,
        *,
        rate: float = POLLER_DEFAULTS.rate,
        burst: int = POLLER_DEFAULTS.burst,
        deadline: float = POLLER_DEFAULTS.deadline,
        initial_interval: float = POLLER_DEFAULTS.initial_interval,
        max_interval: float = POLLER_DEFAULTS.max_interval,
        max_in_flight: int = POLLER_DEFAULTS.max_in_flight,
        bucket: Limiter | None = None,
        store: TaskStore | None = None,
        stop_on_input_required: bool = False,
        callback_url: str | None = None,
        callback_secret: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        safety_interval: float = POLLER_DEFAULTS.safety_interval,
        jitter: float = POLLER_DEFAULTS.jitter,
        cadence: Cadence | None = None,
        seed: int | None = None,
        resubmit: ResubmitPolicy | None = None,
        output_types: Iterable[type] = (),
    ) -> None:
        if not isinstance(client, DispatchClient):
            raise UsageError(f"client must be a DispatchClient, got {type(client).__name__}")
        check_int("max_in_flight", max_in_flight, minimum=1)
        if cadence is None:
            if callback_url is not None:
                cadence = Cadence.fixed(
                    check_seconds("safety_interval", safety_interval), jitter=jitter
                )
            else:
                initial = check_seconds("initial_interval", initial_interval)
                cadence = Cadence(
                    initial_interval=initial,
                    max_interval=max(check_seconds("max_interval", max_interval), initial),
                    jitter=jitter,
                )
        self.client = client
        self.bucket: Limiter = bucket or client.bucket or TokenBucket(rate, burst)
        self.store: TaskStore = store if store is not None else MemoryStore()
        self.cadence = cadence
        self.default_deadline = check_seconds("deadline", deadline, maximum=MAX_DEADLINE)
        self.max_in_flight = max_in_flight
        self.stop_on_input_required = stop_on_input_required
        self.callback_url = callback_url
        self.callback_secret = callback_secret
        self.callback_headers = callback_headers
        if resubmit is not None and not isinstance(resubmit, ResubmitPolicy):
            raise UsageError(f"resubmit must be a ResubmitPolicy, got {type(resubmit).__name__}")
        self.resubmit = resubmit
        #: Output types by import path: the ones given, and every one submitted with.
        self._output_types: dict[str, OutputType] = {}
        for cls in output_types:
            found = output_type(cls)
            if found is None or found.path is None:
                raise UsageError(f"output_types takes classes, got {cls!r}"[:200])
            self._output_types[found.path] = found
        self._stats = Counters()
        self._rng = random.Random(seed)
        self._outcomes = OutcomeQueue()
        #: The tasks `wait_for()` awaits, by request id.
        self._awaited: dict[str, _Awaited] = {}
        self._submit_lane = OneAtATime(self.bucket)
        self._fatal: DispatchError | None = None
        self._service = Service("Poller")
        self._thread: int | None = None
        self._now: Callable[[], float] = anyio.current_time
        self._dispatch_lock: anyio.Lock | None = None
        self._token_in_hand = False
        #: The store, when its claims take the check's token of `bucket` in the same step
        #: (`TokenClaimingStore`, known once both are open).
        self._token_claims: TokenClaimingStore | None = None
        self._dispatcher = Alarm()
        self._reaper = Alarm()
        #: Submits whose end the store did not record (it was unreachable): (ticket,
        #: the task the service accepted, or None), recorded by `_settle`.
        self._owed: list[tuple[Any, TrackedTask | None]] = []
        self._settler = Alarm()
        self._lag_warned = False
        #: Failures in a row to reach a shared limiter or store (workers and reaper).
        self._outage = Outage("poller")
        self._instrumentation = client.instrumentation
        self._wants_tracking = self._instrumentation.wants(TaskTracked)
        self._wants_token_waits = self._instrumentation.wants(TokenWaited)
        self._wants_retries = self._instrumentation.wants(TaskRetrying)
        # Per-check events, built only for a hook that reads them now (the default
        # logging hook reads them at debug level only).
        self._wants_checks = self._instrumentation.wants(CheckDone)
        self._checks_on_debug = self._instrumentation.only_when_debugging(CheckDone)
        self._wants_resolved = self._instrumentation.wants(TaskResolved)
        self._resolved_on_debug = self._instrumentation.only_when_debugging(TaskResolved)

    @property
    def stats(self) -> PollerStats:
        """The counters as they are now (a frozen snapshot): how much is tracked and in
        flight, requests, 429s, outcomes. Read it again for newer figures."""
        return self._stats.snapshot(tracked=len(self.store))

    def __repr__(self) -> str:
        return (
            f"<Poller tracked={len(self.store)} in_flight={self._stats.in_flight} "
            f"bucket={self.bucket!r}>"
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Poller:
        if not self.client.is_open:
            raise NotOpenError(
                "the DispatchClient is not open: enter `async with client:` before the Poller"
            )
        self._thread = threading.get_ident()
        self._now = clock = loop_clock()
        self._dispatcher = Alarm(clock)
        self._reaper = Alarm(clock)
        self._settler = Alarm(clock)
        self._dispatch_lock = anyio.Lock(fast_acquire=True)

        async def enter(stack: contextlib.AsyncExitStack) -> None:
            await stack.enter_async_context(self.bucket)
            # Fleet objects bind their name to one API key (a fingerprint, never the key).
            # (`Limiter.bind_key`, `TaskStore.bind_key`: a no-op for one process's own.)
            await self.bucket.bind_key(self.client.key_fingerprint)
            await self.store.bind_key(self.client.key_fingerprint)
            await stack.enter_async_context(
                self.store.attach(
                    self._on_outcome,
                    clock,
                    self._outcomes.wake,
                    last_check_lead=self.cadence.lead,
                )
            )
            self._token_claims = self._claims_tokens()

        def start(task_group: anyio.abc.TaskGroup) -> None:
            task_group.start_soon(self._reap, name="async_dispatch.reaper")
            task_group.start_soon(self._settle, name="async_dispatch.settler")
            for n in range(self.max_in_flight):
                task_group.start_soon(self._work, name=f"async_dispatch.worker-{n}")

        await self._service.open(enter, start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._service.close(exc_type, exc, tb)

    def _claims_tokens(self) -> TokenClaimingStore | None:
        store = self.store
        if not store.capabilities.claim_with_token:
            return None
        claiming: TokenClaimingStore = store  # type: ignore[assignment]
        return claiming if claiming.claims_tokens_of(self.bucket) else None

    def _check_open(self) -> None:
        self._service.check_open("use it inside `async with Poller(client) as poller:`")
        if threading.get_ident() != self._thread:
            raise LifecycleError(
                "this Poller belongs to the event loop of another thread; use "
                "anyio.from_thread to call into it"
            )

    # -- adding and removing work -------------------------------------------------------

    async def track(
        self, request_id: str, *, deadline: float | None = None, context: Any = None
    ) -> None:
        """Start tracking a task submitted elsewhere. Idempotent.

        Tracking an id that is already tracked changes nothing (the first deadline and
        context stay), and so does tracking one that got its final outcome recently
        (queued or already yielded): that outcome stays its only one. An id that cannot
        be valid is not an exception here: it yields a FAILED outcome like any other task
        that cannot be tracked.
        """
        self._check_open()
        instrumentation = self._instrumentation
        if not instrumentation.tracing:
            task = self._new_task(request_id, deadline, context)
            if await self._trackable(task, request_id) and await self.store.add(task):
                self._tracked(task)
            return
        # The task's trace starts here (its context travels with the task: `TraceContext`).
        with instrumentation.task_span(SPAN_TRACK, None, "producer", operation="track"):
            task = self._new_task(request_id, deadline, context, instrumentation.capture())
            if await self._trackable(task, request_id) and await self.store.add(task):
                self._tracked(task)

    async def track_many(
        self, request_ids: Iterable[str], *, deadline: float | None = None, context: Any = None
    ) -> None:
        """`track()` each id with the same deadline and context, in one call to the store
        (`TaskStore.add_many`: no coroutine per id in memory, one batch in a fleet)."""
        self._check_open()
        instrumentation = self._instrumentation
        # One trace for the batch: every task of it carries the context of one span.
        with (
            instrumentation.task_span(SPAN_TRACK, None, "producer", operation="track")
            if instrumentation.tracing
            else _NO_SPAN
        ):
            trace = instrumentation.capture()
            tasks = []
            for request_id in request_ids:
                task = self._new_task(request_id, deadline, context, trace)
                if await self._trackable(task, request_id):
                    tasks.append(task)
            for task in await self.store.add_many(tasks):
                self._tracked(task)

    async def _trackable(self, task: TrackedTask, request_id: object) -> bool:
        """Whether `request_id`, as the caller gave it, can be sent (`task` names a
        non-string id by its repr). One that cannot gets its FAILED outcome here, through
        the store like every other outcome, so in a fleet any replica may hand it over.
        """
        try:
            check_request_id(request_id)
        except InvalidRequestIdError as exc:
            self._tracked(task, planned=False)
            outcome = make_outcome(task, OutcomeKind.FAILED, self._now(), error=exc)
            await self.store.reject(outcome)
            return False
        return True

    def _tracked(self, task: TrackedTask, *, planned: bool = True) -> None:
        """A task is tracked now: wake whoever sleeps past what it needs, and report it."""
        if planned:
            self._dispatcher.wake_by(task.due)
            self._reaper.wake_by(task.deadline)
        if self._wants_tracking:
            self._instrumentation.emit(TaskTracked(request_id=task.request_id))

    def _new_task(
        self,
        request_id: object,
        deadline: float | None,
        context: Any,
        trace: Mapping[str, str] | None = None,
    ) -> TrackedTask:
        seconds = self.default_deadline if deadline is None else self._deadline_seconds(deadline)
        now = self._now()
        deadline_at = now + seconds
        return TrackedTask(
            request_id if isinstance(request_id, str) else repr(request_id),
            started=now,
            deadline=deadline_at,
            context=context,
            # At or after the last-check time when the first check is also the last.
            due=self.cadence.first(now, deadline_at, self._rng).due,
            trace=trace,
        )

    @staticmethod
    def _deadline_seconds(deadline: float) -> float:
        # `not >= 0` also refuses NaN, which would corrupt the deadline heap.
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
            raise UsageError(f"deadline must be a number of seconds, got {deadline!r}")
        if not 0 <= deadline <= MAX_DEADLINE:
            raise UsageError(
                f"deadline must be between 0 and {MAX_DEADLINE:g} seconds, got {deadline!r}"
            )
        return float(deadline)

    async def submit(
        self,
        prompt: str,
        options: SubmitOptions | None = None,
        *,
        deadline: float | None = None,
        context: Any = None,
        resubmit: bool = True,
        **fields: Unpack[SubmitFields],
    ) -> str:
        """Submit a task (spending a token from the shared budget) and track it.

        The submit's fields are `DispatchClient.submit()`'s, spelled the same: `options`,
        keywords, or both (a keyword wins). In hybrid mode the poller's callback URL,
        secret and headers are filled in where they are left out. Errors of the submit
        are raised here, not yielded: a task that was never created has no outcome.

        A typed `response_format` (a pydantic model, an attrs class, a dataclass or a
        JSON Schema mapping) makes the outcome carry the checked output
        (`Outcome.output`). With the poller's `ResubmitPolicy`, the task may be
        resubmitted after a failed attempt; ``resubmit=False`` opts this task out.

        Raises:
            UsageError: among the usual reasons, an output type the converter does not
                support, or secret options on a task that may be resubmitted without
                `ResubmitPolicy.secret_options` to supply them again (stores keep no
                secrets).
        """
        self._check_open()
        if deadline is not None:
            self._deadline_seconds(deadline)  # refuse a bad deadline before submitting
        options = merge_options(options, fields)
        del fields  # this frame outlives the submit: its locals must not hold secrets
        spec, options = self._spec_for(prompt, options, resubmit=resubmit)
        if self.callback_url is not None:
            options = options.with_callback(
                self.callback_url, self.callback_secret, self.callback_headers
            )
        instrumentation = self._instrumentation
        if not instrumentation.tracing:
            return await self._submit(prompt, options, deadline, context, None, spec)
        # The task's trace starts here, the submit's own span inside it; the context of
        # this span travels with the task (`TraceContext`).
        with instrumentation.task_span(SPAN_TRACK, None, "producer", operation="submit"):
            trace = instrumentation.capture()
            return await self._submit(prompt, options, deadline, context, trace, spec)

    async def _submit(
        self,
        prompt: str,
        options: SubmitOptions,
        deadline: float | None,
        context: Any,
        trace: Mapping[str, str] | None,
        spec: TaskSpec | None,
    ) -> str:
        """`submit()` once its options are merged: submit, then track with `trace` and
        `spec`."""
        ticket = await self.store.begin_submit()
        lane: Limiter = self._submit_lane
        if self.store.capabilities.submit_sending:
            store: SubmitSendingStore = self.store  # type: ignore[assignment]
            lane = _Sending(lane, store, ticket, context, prompt)
        task: TrackedTask | None = None
        try:
            # The client reports the submit (its span, `SubmitDone`, a 429's pause).
            request_id = await self.client._submit_with(lane, prompt, options)
            self._stats.submits_sent += 1
            task = self._new_task(request_id, deadline, context, trace)
            task.spec = spec
        finally:
            with anyio.CancelScope(shield=task is not None):
                try:
                    early = await self.store.end_submit(ticket, task)
                except CoordinationError as exc:
                    # The store could not record how the submit ended. Keep it, and
                    # record it once the store answers (`_settle`): a task the service
                    # accepted is tracked, and the intent of a failed one goes without
                    # being reported uncertain. A failed submit's own error goes on.
                    self._owed.append((ticket, task))
                    self._settler.wake()
                    if task is not None:
                        raise SubmitNotTrackedError(task.request_id, exc) from exc
                    early = None
            self._outcomes.wake()
        assert task is not None
        self._tracked(task)
        if early is not None:
            self._stats.deliveries += 1
            await self._apply(
                task,
                classify(task, early, stop_on_input_required=self.stop_on_input_required),
                via="webhook",
            )
        return request_id

    def _spec_for(
        self, prompt: str, options: SubmitOptions, *, resubmit: bool
    ) -> tuple[TaskSpec | None, SubmitOptions]:
        """What the store keeps of this submit (None: nothing beyond the record), and the
        options to send (a typed `response_format` becomes its wire mapping)."""
        output: str | dict[str, Any] | None = None
        if options.response_format is not None:
            found = output_type(options.response_format)
            if found is not None:
                options = attrs.evolve(options, response_format=found.response_format)
                if found.path is not None:
                    self._output_types[found.path] = found  # the latest class of a name
                    output = found.path
                else:
                    output = dict(found.schema)
        policy = self.resubmit if resubmit else None
        if policy is not None and policy.secret_options is None:
            secret = sorted(n for n in secret_field_names() if getattr(options, n) is not None)
            if secret:
                raise UsageError(
                    f"this task may be resubmitted, and its options hold secret fields "
                    f"({', '.join(secret)}) that no store keeps: give "
                    "ResubmitPolicy(secret_options=...) to supply them at each "
                    "resubmission, or submit it with resubmit=False (the webhook fields "
                    "need neither: set them on the Poller, which fills them in again)"
                )
        if policy is None and output is None:
            return None, options
        return TaskSpec.of(prompt if policy is not None else None, options, output), options

    async def forget(self, request_id: str) -> bool:
        """Stop tracking without an outcome. True if the id was tracked."""
        forgotten = await self.store.forget(request_id)
        if forgotten:
            self._outcomes.wake()
            if self._wants_tracking:
                self._instrumentation.emit(TaskForgotten(request_id=request_id))
        return forgotten

    async def wait_for(self, request_id: str) -> Outcome:
        """The final outcome of one tracked task, once it happens: the task's awaitable.

        The poller keeps its one budget and one scheduler: awaiting a task changes nothing
        about when it is checked. The outcome is *taken* here, so ``async for`` does not
        yield it too (each outcome reaches the application once); the task's
        INPUT_REQUIRED notifications still go to ``async for``. Cancelling the wait loses
        nothing: an outcome that arrived meanwhile goes back to the iteration.

        A task the `ResubmitPolicy` resubmitted is awaited by the id its first submit
        returned; its outcome carries the last attempt's (`Outcome.attempts` has both).

        Needs a store whose tasks live in this process (`StoreCapabilities.local`, the
        default `MemoryStore`): in a fleet any replica may receive an outcome, so use
        ``async for`` there.

        Raises:
            UsageError: the task is not tracked by this poller (or its outcome was already
                taken), or the store is shared by a fleet.
            LifecycleError: another call already awaits this task.
            AuthenticationError, PermissionDeniedError: the service refused the key.
        """
        self._check_open()
        if not self.store.capabilities.local:
            raise UsageError(
                f"wait_for() needs a store local to this process; {self.store!r} may hand "
                "the outcome to another replica: use `async for outcome in poller`"
            )
        queued = self._outcomes.take_final(request_id)
        if queued is not None:
            outcome, receipt = queued
            with anyio.CancelScope(shield=True):
                await self._ack(receipt)
            return outcome
        if request_id not in self.store:
            raise UsageError(
                f"{request_id!r} is not tracked by this poller (or its outcome was taken "
                "already): submit() or track() it first"
            )
        if request_id in self._awaited:
            raise LifecycleError(f"another call already awaits {request_id!r}")
        awaited = self._awaited[request_id] = _Awaited()
        try:
            await awaited.arrived.wait()
        except BaseException:
            if awaited.outcome is not None:  # it arrived as the wait was cancelled
                self._outcomes.put(awaited.outcome, awaited.receipt)
            raise
        finally:
            del self._awaited[request_id]
        if awaited.outcome is None:
            assert self._fatal is not None
            raise self._fatal.with_traceback(None)
        with anyio.CancelScope(shield=True):
            await self._ack(awaited.receipt)
        return awaited.outcome

    async def run(
        self,
        prompt: str,
        options: SubmitOptions | None = None,
        *,
        deadline: float | None = None,
        context: Any = None,
        resubmit: bool = True,
        **fields: Unpack[SubmitFields],
    ) -> Outcome:
        """Submit one task and wait for its final outcome (`submit()`, then `wait_for()`),
        within the poller's one budget. Many of these may run at once."""
        options = merge_options(options, fields)
        del fields  # this frame outlives the submit: its locals must not hold secrets
        request_id = await self.submit(
            prompt, options, deadline=deadline, context=context, resubmit=resubmit
        )
        return await self.wait_for(request_id)

    def __contains__(self, request_id: object) -> bool:
        """Whether this process knows, without I/O, that `request_id` is tracked; a store
        shared by a fleet may not (ask it with ``await poller.store.get(request_id)``)."""
        return request_id in self.store

    def __len__(self) -> int:
        """Tasks tracked, plus finished ones whose outcome has not been consumed yet."""
        return len(self.store) + sum(1 for o, _ in self._outcomes.waiting() if o.final)

    # -- checkpointing ------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Everything not yet resolved for the caller, as JSON-serialisable dicts.

        Each entry has `request_id`, `deadline` (absolute, seconds since the Unix epoch)
        and `context` (None when it is not JSON-serialisable). Tasks whose final outcome
        the application has not taken yet are included: a crash between the two loses
        nothing. Restore with `restore()`. The store makes the snapshot; a store that
        keeps its tasks itself (a fleet's, a durable one) has nothing to snapshot and
        says so (`StoreCapabilities.snapshot`).
        """
        store = self.store
        if not store.capabilities.snapshot:
            raise UsageError(
                f"{store!r} keeps its tasks itself: there is nothing to snapshot "
                "(a new poller on the same store resumes them)"
            )
        return store.snapshot()

    async def restore(self, snapshot: Iterable[Mapping[str, Any]]) -> int:
        """Track every entry of a `snapshot()`; returns how many were tracked anew.

        All or nothing: every entry is checked before any is tracked. Deadlines keep
        their wall-clock time: a task whose deadline passed while the process was down
        times out at once.
        """
        self._check_open()
        offset = time.time()
        entries: list[tuple[str, float, Any]] = []
        snapshot_entries = list(snapshot)
        for entry in snapshot_entries:
            try:
                request_id = entry["request_id"]
                remaining = float(entry["deadline"]) - offset
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise UsageError(f"not a snapshot entry: {entry!r}"[:300]) from exc
            if not isinstance(request_id, str) or math.isnan(remaining):
                raise UsageError(f"not a snapshot entry: {entry!r}"[:300])
            entries.append(
                (request_id, min(max(0.0, remaining), MAX_DEADLINE), entry.get("context"))
            )
        before = len(self.store)
        for (request_id, remaining, context), entry in zip(entries, snapshot_entries, strict=True):
            kept = entry.get("trace")
            trace = None
            if isinstance(kept, Mapping) and all(isinstance(v, str) for v in kept.values()):
                trace = trace_of(trace_text(kept))
            if trace is None:  # a snapshot from before trace contexts: a new trace
                await self.track(request_id, deadline=remaining, context=context)
                continue
            # The task's own trace goes on: no new track span, as in a durable store.
            task = self._new_task(request_id, remaining, context, trace)
            if await self._trackable(task, request_id) and await self.store.add(task):
                self._tracked(task)
        return len(self.store) - before

    # -- webhooks -----------------------------------------------------------------------

    async def deliver(self, payload: Mapping[str, Any]) -> DeliveryResult:
        """Feed a status payload from outside (a webhook) into the poller.

        The payload is classified exactly like a poll result. Deliveries are idempotent:
        a duplicate, or one arriving after the poll already saw the outcome, changes
        nothing and returns `DeliveryResult.DUPLICATE`.

        Raises:
            InvalidResponseError: the payload lacks `requestId` or the status fields.
            NotOpenError: the poller is not open, or stopped because the key was
                refused: no outcome would reach the application, so do not answer 2xx.
        """
        self._check_open()
        if self._fatal is not None:
            raise NotOpenError("the poller stopped: the service refused the API key")
        request_id = payload.get("requestId") if isinstance(payload, Mapping) else None
        if not isinstance(request_id, str) or not request_id:
            raise InvalidResponseError(
                "webhook payload has no string 'requestId'", status_code=None
            )
        status = parse_status_payload(request_id, payload)
        task = await self.store.get(request_id)
        if task is None:
            if await self.store.finished(request_id):
                self._stats.duplicate_deliveries += 1
                return DeliveryResult.DUPLICATE
            if await self.store.park(request_id, status):
                # A fast service can call back before our submit has read its answer.
                self._stats.deliveries += 1
                return DeliveryResult.ACCEPTED
            return DeliveryResult.UNKNOWN
        self._stats.deliveries += 1
        decision = classify(task, status, stop_on_input_required=self.stop_on_input_required)
        instrumentation = self._instrumentation
        # Part of the task's trace, wherever it was tracked (`TraceContext`).
        with (
            instrumentation.task_span(SPAN_DELIVER, task.trace, "consumer")
            if instrumentation.tracing
            else _NO_SPAN
        ):
            applied = await self._apply(task, decision, via="webhook")
        if not applied:
            self._stats.duplicate_deliveries += 1
            return DeliveryResult.DUPLICATE
        return DeliveryResult.ACCEPTED

    # -- consuming ----------------------------------------------------------------------

    def __aiter__(self) -> OutcomeStream:
        return self.results()

    def results(self, *, forever: bool = False) -> OutcomeStream:
        """Iterate over outcomes as they happen.

        Ends when nothing is tracked, no submit is running and every outcome has been
        consumed, unless `forever` is true (for long-lived services that keep adding work).
        Raises `AuthenticationError`/`PermissionDeniedError` if the service refuses the
        key, once every outcome known before that has been yielded: a refused key
        concerns every task, so it is not an outcome.
        """
        self._check_open()

        async def stop() -> BaseException | None:
            if self._fatal is not None:
                return self._fatal.with_traceback(None)
            if forever:
                return None
            while True:
                try:
                    idle = await self.store.idle()
                except CoordinationError as exc:
                    await self._ride_out(exc)
                else:
                    return StopAsyncIteration() if idle else None

        keep = self._still_held if self.store.capabilities.redeliver else None

        async def next_outcome() -> Outcome:
            self._check_open()
            outcome = await self._outcomes.take(ack=self._ack, stop=stop, keep=keep)
            self._stats.outcomes[outcome.kind] += 1
            return outcome

        return OutcomeStream(next_outcome)

    async def _still_held(self, receipt: Any) -> bool:
        """Whether a queued outcome is still this process's to yield (a fleet's store
        fences the outcomes a stalled replica holds). While the store cannot answer the
        outcome waits in the queue: yielding it could deliver it twice."""
        store: RedeliveringStore = self.store  # type: ignore[assignment]
        while True:
            try:
                return await store.holds(receipt)
            except CoordinationError as exc:
                await self._ride_out(exc)

    async def redeliver(self, outcome: Outcome, error: BaseException) -> None:
        """The application failed to handle `outcome`, the one ``async for`` yielded last:
        deliver it again instead of acknowledging it when the next one is asked for.

        `DispatchRuntime` calls this when its ``on_outcome`` handler raises. A fleet's
        store (``capabilities.redeliver``) gives the outcome back to the fleet: any replica
        gets it again after a short delay with `Outcome.deliveries` one higher, and after
        three deliveries it goes to the fleet's dead-letter stream (``async-dispatch
        fleet`` counts them). Another store has it queued again here, behind the outcomes
        already waiting, and after three deliveries it is given up with an
        ``outcome_handler_gave_up`` error log (it lives in this process only). Only the
        error's type is recorded: its message may hold anything.

        Raises:
            CoordinationError: the fleet's store is unreachable; the outcome is then
                taken over once it has been idle for the store's ``outcome_idle``.
        """
        held, receipt = self._outcomes.untake()
        if not held:
            return  # acknowledged already: nothing can bring it back
        reason = (
            f"outcome handler failed on delivery {outcome.deliveries} ({type(error).__qualname__})"
        )
        if self.store.capabilities.redeliver:
            store: RedeliveringStore = self.store  # type: ignore[assignment]
            await store.redeliver(receipt, reason)
            return
        if outcome.deliveries < HANDLER_DELIVERIES:
            self._outcomes.put(attrs.evolve(outcome, deliveries=outcome.deliveries + 1), receipt)
            return
        logger.error(
            "outcome_handler_gave_up",
            request_id=outcome.request_id,
            deliveries=outcome.deliveries,
            error=type(error).__qualname__,
        )
        await self._ack(receipt)

    # -- background work ----------------------------------------------------------------

    async def _work(self) -> None:
        """One worker: take the next check, make the request, repeat.

        When a check is due and a token is free right now, the worker takes both at once,
        with no await in between (so nothing can get ahead of it). Otherwise it queues for
        its turn at dispatching, which means waiting, under the fair lock.
        """
        lock = self._dispatch_lock
        assert lock is not None
        store = self.store
        local = store.capabilities.local
        while True:
            task = None
            if (
                local
                and self._fatal is None
                and store.next_due() <= self._now()
                and self.bucket.try_acquire()
            ):
                task = store.try_claim(self._now())
                assert task is not None  # due was checked just above, with no await since
            try:
                if task is None:
                    async with lock:
                        task = await self._next_check()
                if task.phase:  # due for resubmission, not for a check
                    await self._resubmit(task)
                else:
                    await self._check(task)
            except CoordinationError as exc:
                await self._ride_out(exc)
            else:
                if self._outage:
                    self._outage.recovered()

    async def _next_check(self) -> TrackedTask:
        """Wait for a due check and a token; return the most urgent task at that moment.

        In this process's memory, the token comes first and the task second, so a token
        is never spent on a check that became less urgent while it waited. A store shared
        by a fleet claims first instead: another replica may take the due check, and a
        token taken for nothing would leave its slot of the shared budget unused. A store
        that can take the token with the claim (`TokenClaimingStore`) does both in one
        step, and takes a token only for a check it claimed.
        """
        store, with_token = self.store, self._token_claims
        claim_first = not store.capabilities.local
        while True:
            due = store.next_due()
            if self._fatal is not None or due > self._now():
                await self._dispatcher.sleep_until(due if self._fatal is None else math.inf)
                continue
            if claim_first:
                asked = self._now()
                if with_token is not None:
                    task = await with_token.claim_with_token(asked, self.bucket)
                else:
                    task = await store.claim(asked)
                if task is None:  # another replica took it: look again at the fresh hint
                    await self._dispatcher.sleep_until(
                        max(store.next_due(), self._now() + _CLAIM_RETRY)
                    )
                    continue
                if with_token is None:
                    await self._take_token()
                elif self._wants_token_waits:
                    self._instrumentation.emit(TokenWaited(seconds=self._now() - asked))
                self._note_lag(self._now() - due)
                return task
            if not self._token_in_hand:
                await self._take_token()
                self._token_in_hand = True
            now = self._now()
            task = await store.claim(now)
            if task is not None:
                self._token_in_hand = False
                self._note_lag(now - due)
                return task

    async def _take_token(self) -> None:
        asked = self._now()
        await self.bucket.acquire()
        if self._wants_token_waits:
            self._instrumentation.emit(TokenWaited(seconds=self._now() - asked))

    def _note_lag(self, lag: float) -> None:
        """Say once when checks run later than the cadence allows: the budget is short."""
        self._stats.check_lag = lag
        if lag > self.cadence.max_interval and not self._lag_warned:
            self._lag_warned = True
            if self._stats.rate_limited:
                # The service, not the limiter, is the bottleneck: a higher rate would
                # only meet more 429s (and longer pauses).
                hint = (
                    "checks run late because the service answered 429 "
                    f"{self._stats.rate_limited} time(s): the key's real limit is below the "
                    "limiter's rate. Lower the rate to what the key allows (raising it makes "
                    "this worse), track fewer tasks, or give them longer deadlines"
                )
            else:
                hint = (
                    "checks run late: the limiter's rate is too low for the tracked load. "
                    "Raise it if the key allows, track fewer tasks, or give them longer "
                    "deadlines; tasks the budget never reaches end TIMED_OUT with "
                    "timeout_cause=never-checked"
                )
            logger.warning(
                "budget_exhausted", lag=round(lag, 1), tracked=len(self.store), hint=hint
            )

    async def _check(self, task: TrackedTask) -> None:
        """Make one status request for `task` and act on the answer."""
        self._stats.polls_sent += 1  # `task.polls` counts it already: the claim did
        self._stats.in_flight += 1
        instrumentation, started = self._instrumentation, self._now()
        result: CheckResult = "abandoned"
        try:
            # A reading that lands after the deadline is useless (the reaper reports
            # TIMED_OUT): abandon a hung request then, instead of letting it hold a worker.
            # A reading taken at or after the deadline is ignored for the same reason: the
            # reaper owns the task from then on, so the outcome does not depend on a race.
            # Far from its deadline a request is bounded by the client's own total
            # timeout, so the scope (and its timer) is only paid for near the deadline.
            reading: TaskStatus | DispatchError
            # Part of the task's trace, wherever it was tracked (`TraceContext`).
            span = (
                instrumentation.task_span(
                    SPAN_CHECK,
                    task.trace,
                    "client",
                    request_id=task.request_id,
                    attempt=task.polls,
                )
                if instrumentation.tracing
                else _NO_SPAN
            )
            with span:
                if task.deadline - started > self.client.timeout:
                    try:  # `_read()`, inlined: one coroutine less on every check
                        reading = await self.client._fetch_valid_status(task.request_id)
                    except DispatchError as exc:
                        reading = exc
                else:
                    with anyio.CancelScope(deadline=task.deadline) as scope:
                        reading = await self._read(task)
                    if scope.cancelled_caught:
                        return
            if self._now() >= task.deadline:
                return
            decision = classify(task, reading, stop_on_input_required=self.stop_on_input_required)
            result = check_result(reading)
            await self._apply(task, decision, via="poll")
        finally:
            self._stats.in_flight -= 1
            if self._wants_checks and (not self._checks_on_debug or debug_enabled()):
                instrumentation.emit(
                    CheckDone(
                        request_id=task.request_id,
                        result=result,
                        latency=self._now() - started,
                        attempt=task.polls,
                    )
                )

    async def _read(self, task: TrackedTask) -> TaskStatus | DispatchError:
        """One status request: the reading, or the error it met."""
        try:
            # The id was checked when it was tracked: read it without checking again.
            return await self.client._fetch_valid_status(task.request_id)
        except DispatchError as exc:
            return exc

    async def _apply(self, task: TrackedTask, decision: Decision, *, via: Via) -> bool:
        """Carry out `decision` for `task` through the store. False if it changed nothing.

        `via` says where the reading came from: this poller's own claimed check
        (``"poll"``, which must end with what it learnt and its next check planned), or a
        webhook, which only resolves or notifies. The poller decides; the store writes.
        """
        action, now = decision.action, self._now()
        polled = via == "poll"
        if decision.status is not None and decision.status.status is Status.UNKNOWN:
            self._stats.unknown_statuses += 1
        if action is Action.RESOLVE:
            assert decision.kind is not None
            kind, unfit, output, named = self._typed(task, decision.kind, decision.status)
            outcome = make_outcome(
                task,
                kind,
                now,
                status=decision.status,
                error=unfit or decision.error,
                via=via,
                output=output,
                output_type=named,
            )
            wait = self._resubmit_wait(task, outcome, now)
            if wait is None:
                return await self.store.resolve(task, outcome, fenced=polled)
            if not polled:
                # A webhook writes final outcomes and notices only; the task's next check
                # reads the same failure and plans the resubmission under its claim.
                return True
            due = now + wait
            await self.store.end_check(
                task, CheckEnd(due=due, status=decision.status, resubmit=True)
            )
            self._dispatcher.wake_by(due)
            if self._wants_retries:
                self._instrumentation.emit(
                    TaskRetrying(
                        request_id=task.request_id,
                        attempt=outcome_attempt(task),
                        kind=kind,
                        wait=wait,
                    )
                )
            return True
        errors, error = task.errors, task.last_error
        if action is Action.RATE_LIMITED:
            assert isinstance(decision.error, RateLimitedError)
            error = decision.error
            await self._pause_key(decision.error)
            due = now  # keeps its place (a last check stays one: past its last-check time)
        elif action is Action.REFUSED:
            self._refused(decision.error)
            due = now
        elif action is Action.RETRY:
            self._stats.retries += 1
            errors, error = errors + 1, decision.error
            backoff = self.client.retry.backoff(errors, self._rng)
            due = self.cadence.bound(now, now + backoff, task.deadline).due
        else:
            errors, error = 0, None
            if action is Action.NOTIFY:
                assert decision.kind is not None
                assert decision.input_identity is not None
                notice = make_outcome(
                    task, decision.kind, now, status=decision.status, final=False, via=via
                )
                await self.store.notify(task, notice, decision.input_identity)
            due = self.cadence.next(task.started, now, task.deadline, self._rng).due
        if polled:
            end = CheckEnd(due=due, status=decision.status, error=error, errors=errors)
            await self.store.end_check(task, end)
            self._dispatcher.wake_by(due)
        return True

    def _typed(
        self, task: TrackedTask, kind: OutcomeKind, status: TaskStatus | None
    ) -> tuple[OutcomeKind, OutputValidationError | None, Any, str | None]:
        """The typed output of a final reading: (kind, error, output, output type name).

        An output that does not fit its type turns SUCCESS into ERROR with an
        `OutputValidationError`: a failure of that outcome (which a `ResubmitPolicy` may
        resubmit), never an exception out of the poller.
        """
        spec = task.spec
        if spec is None or spec.output is None:
            return kind, None, None, None
        named = spec.output if isinstance(spec.output, str) else SCHEMA_OUTPUT
        if kind is not OutcomeKind.SUCCESS:
            return kind, None, None, named
        content = status.structured_output if status is not None else None
        if content is None:
            unfit = OutputValidationError(
                "the task succeeded without structured output "
                "(response.output.type is not 'structured')"
            )
            return OutcomeKind.ERROR, unfit, None, named
        try:
            checker = (
                resolve_output_type(spec.output, self._output_types)
                if isinstance(spec.output, str)
                else output_type(spec.output)
            )
            if checker is None:
                return kind, None, content, named
            return kind, None, checker.validate(content), named
        except OutputValidationError as exc:
            return OutcomeKind.ERROR, exc, None, named
        except UsageError as exc:  # a stored schema this version cannot read
            return OutcomeKind.ERROR, OutputValidationError(str(exc)), None, named

    def _resubmit_wait(self, task: TrackedTask, outcome: Outcome, now: float) -> float | None:
        """Seconds until `task` is resubmitted after `outcome`, or None: it is final.

        The task's one deadline covers every attempt: a resubmission that would not fall
        before its last-check time is not planned.
        """
        policy, spec = self.resubmit, task.spec
        if policy is None or spec is None or spec.prompt is None or outcome.kind not in policy.on:
            return None
        attempt = outcome_attempt(task)
        if attempt >= policy.attempts:
            return None
        if policy.when is not None:
            try:
                wanted = bool(policy.when(outcome))
            except Exception as exc:  # the caller's code: it must not stop a worker
                logger.warning(
                    "resubmit_predicate_failed",
                    request_id=task.request_id,
                    error=type(exc).__name__,
                )
                return None
            if not wanted:
                return None
        wait = policy.wait_before(attempt + 1, self._rng)
        if now + wait >= task.deadline - self.cadence.lead:
            return None
        return wait

    async def _resubmit(self, task: TrackedTask) -> None:
        """Resubmit a claimed task whose attempt failed, and track the new attempt in its
        place; or end it, if its resubmission cannot be made (or was cut short)."""
        spec, now = task.spec, self._now()
        if task.phase != "wait" or spec is None or spec.prompt is None:
            # Marked "sending" and claimed again: a process died while resubmitting it.
            # The new attempt may exist: never send it again.
            uncertain = SubmitUncertainError(
                "a resubmission of this task was cut short (the process sending it "
                "stopped): the new attempt may exist at the service. Check before "
                "submitting it again"
            )
            await self.store.resolve(
                task, self._ending(task, OutcomeKind.SUBMIT_UNCERTAIN, uncertain), fenced=True
            )
            return
        if not await self.store.begin_resubmit(task):
            return  # the claim was lost: whoever holds it now decides
        options = spec.submit_options()
        policy = self.resubmit
        if policy is not None and policy.secret_options is not None:
            try:
                options = _with_fields(options, policy.secret_options(task.context))
            except Exception as exc:  # the caller's code: it must not stop a worker
                error = DispatchError(
                    f"ResubmitPolicy.secret_options raised {type(exc).__name__}: the task "
                    "was not resubmitted"
                )
                ending = self._ending(task, OutcomeKind.ERROR, error)
                await self.store.resolve(task, ending, fenced=True)
                return
        try:
            if self.callback_url is not None:
                options = options.with_callback(
                    self.callback_url, self.callback_secret, self.callback_headers
                )
            # The claim took a token for this task: the submit spends it.
            request_id = await self.client._submit_with(
                _Prepaid(self._submit_lane), spec.prompt, options
            )
        except SubmitUncertainError as exc:
            ending = self._ending(task, OutcomeKind.SUBMIT_UNCERTAIN, exc)
            await self.store.resolve(task, ending, fenced=True)
            return
        except (RateLimitedError, TransportError) as exc:
            # Nothing was sent (the client says SubmitUncertainError otherwise): the same
            # resubmission goes again later, if the deadline leaves room.
            retry_after = getattr(exc, "retry_after", None)
            delay = retry_after or self.client.retry.backoff(1, self._rng)
            due = self._now() + delay
            if due < task.deadline - self.cadence.lead:
                end = CheckEnd(due=due, status=task.last_status, error=exc, resubmit=True)
                await self.store.end_check(task, end)
                self._dispatcher.wake_by(due)
                return
            await self.store.resolve(task, self._ending(task, OutcomeKind.ERROR, exc), fenced=True)
            return
        except DispatchError as exc:
            if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
                self._refused(exc)
            # The failed attempt's outcome is final, with why it could not go again.
            await self.store.resolve(task, self._ending(task, OutcomeKind.ERROR, exc), fenced=True)
            return
        self._stats.submits_sent += 1
        now = self._now()
        new = TrackedTask(
            request_id,
            started=task.started,
            deadline=task.deadline,
            context=task.context,
            due=self.cadence.first(now, task.deadline, self._rng).due,
            trace=task.trace,  # every attempt is part of the task's one trace
        )
        new.spec = attrs.evolve(spec, attempts=(*spec.attempts, task.request_id))
        if await self.store.resubmitted(task, new):
            self._dispatcher.wake_by(new.due)
        else:
            # The claim was lost while submitting (a fleet's lease ran out): the replica
            # that took the task over ended it SUBMIT_UNCERTAIN. Say which id exists.
            logger.warning(
                "resubmission_not_tracked", request_id=request_id, previous=task.request_id
            )

    def _ending(self, task: TrackedTask, kind: OutcomeKind, error: Exception) -> Outcome:
        """The final outcome of a task whose resubmission could not be made."""
        spec = task.spec
        named = None
        if spec is not None and spec.output is not None:
            named = spec.output if isinstance(spec.output, str) else SCHEMA_OUTPUT
        return make_outcome(task, kind, self._now(), error=error, output_type=named)

    async def _pause_key(self, error: RateLimitedError) -> None:
        """A 429 concerns the whole key: pause the shared limiter for everyone, by the
        client's one rule (its streak of 429s, counted across its callers)."""
        self._stats.rate_limited += 1
        if await self.client._pause_key(error, self.bucket, "check"):
            self._stats.pauses += 1

    def _refused(self, error: DispatchError | None) -> None:
        """401/403 concern the key, not the task: stop checking and tell the consumer."""
        assert error is not None
        if self._fatal is None:
            logger.warning("api_key_refused", status_code=getattr(error, "status_code", None))
            self._fatal = error
        self._outcomes.wake()
        for awaited in self._awaited.values():  # nothing will finish: `wait_for` raises
            awaited.arrived.set()

    def _on_outcome(self, outcome: Outcome, receipt: Any) -> None:
        """The store's sink: hand the outcome to whoever awaits its task (`wait_for`), else
        queue it for ``async for``; and report it."""
        if outcome.output_type is not None and outcome.output is None:
            outcome = self._rebuilt(outcome)
        awaited = None
        if self._awaited:  # awaited by the id its submit returned: the first attempt's
            first = outcome.attempts[0] if outcome.attempts else outcome.request_id
            awaited = self._awaited.get(first)
        if awaited is not None and outcome.final and awaited.outcome is None:
            awaited.outcome, awaited.receipt = outcome, receipt
            awaited.arrived.set()
        else:
            self._outcomes.put(outcome, receipt)
        if self._wants_resolved and (not self._resolved_on_debug or debug_enabled()):
            self._instrumentation.emit(
                TaskResolved(
                    request_id=outcome.request_id,
                    kind=outcome.kind,
                    polls=outcome.polls,
                    age=outcome.elapsed,
                    detection_delay=_detection_delay(outcome),
                    via=outcome.via,
                    final=outcome.final,
                    trace_context=outcome.trace_context,
                    attempts=max(1, len(outcome.attempts)),
                )
            )

    async def _settle(self) -> None:
        """Record the submits whose end the store missed (`SubmitNotTrackedError`): track
        each task the service accepted, drop the intents of the ones that failed.

        Until then the intents stay in the store (renewed while this process lives), so
        a finite ``async for`` does not end. A poller closed first logs each id it could
        not track (``submit_not_tracked``): its intent then becomes SUBMIT_UNCERTAIN.
        """
        try:
            while True:
                while self._owed:
                    ticket, task = self._owed[0]
                    try:
                        early = await self.store.end_submit(ticket, task)
                    except CoordinationError as exc:
                        await self._ride_out(exc)
                        continue
                    self._owed.pop(0)
                    self._outcomes.wake()
                    if task is None:
                        continue
                    logger.info("submit_tracked_late", request_id=task.request_id)
                    self._tracked(task)
                    if early is not None:
                        self._stats.deliveries += 1
                        await self._apply(
                            task,
                            classify(
                                task, early, stop_on_input_required=self.stop_on_input_required
                            ),
                            via="webhook",
                        )
                await self._settler.sleep_until(math.inf)
        finally:
            for _, task in self._owed:
                if task is not None:
                    logger.error(
                        "submit_not_tracked",
                        request_id=task.request_id,
                        hint="the service accepted it and no store recorded it: track it "
                        "with Poller.track() elsewhere",
                    )
            self._owed.clear()

    async def _reap(self) -> None:
        """Time out tasks at their deadline, whether or not a check is due or in flight."""
        store = self.store
        while True:
            try:
                expired = await store.expire(self._now())
            except CoordinationError as exc:
                await self._ride_out(exc)
                continue
            if self._outage:
                self._outage.recovered()
            if expired:
                await anyio.lowlevel.checkpoint()
                continue
            await self._reaper.sleep_until(store.next_deadline())

    async def _ride_out(self, error: CoordinationError) -> None:
        """The shared limiter or store is unreachable: wait, then let the caller retry.

        Nothing is lost meanwhile: a claimed check whose result could not be written is
        claimed again once its lease expires, and an outcome that could not be
        acknowledged is delivered again (`Outcome.deliveries`). Said once per outage.
        """
        failures = self._outage.failed(error)
        backoff = self.client.retry.backoff(min(failures, 8), self._rng)
        await anyio.sleep(max(backoff, _OUTAGE_MIN_WAIT))

    async def _ack(self, receipt: Any) -> None:
        try:
            await self.store.ack(receipt)
        except CoordinationError as exc:
            # The outcome reached the application; the store will offer it again.
            logger.warning("ack_failed", error=str(exc))

    def _rebuilt(self, outcome: Outcome) -> Outcome:
        """An outcome that crossed a store as text: its typed output, built again from
        the reading here (the type is named by its import path)."""
        if outcome.kind is not OutcomeKind.SUCCESS or outcome.output_type is None:
            return outcome
        if outcome.output_type == SCHEMA_OUTPUT:  # checked when it was resolved
            return attrs.evolve(outcome, output=outcome.structured)
        try:
            checker = resolve_output_type(outcome.output_type, self._output_types)
            return attrs.evolve(outcome, output=checker.validate(outcome.structured))
        except OutputValidationError as exc:
            return attrs.evolve(outcome, kind=OutcomeKind.ERROR, error=exc)


def outcome_attempt(task: TrackedTask) -> int:
    """Which attempt `task`'s record is: 1 for the first submit."""
    return 1 + (len(task.spec.attempts) if task.spec is not None else 0)


def _with_fields(options: SubmitOptions, more: SubmitOptions) -> SubmitOptions:
    """`options` with every field that `more` sets."""
    if not isinstance(more, SubmitOptions):
        raise TypeError(f"secret_options must return SubmitOptions, got {type(more).__name__}")
    given = {
        field.name: getattr(more, field.name)
        for field in attrs.fields(SubmitOptions)
        if getattr(more, field.name) is not None
    }
    return attrs.evolve(options, **given)


class _Prepaid(Limiter):
    """A limiter whose first token is already paid: a resubmission spends the token its
    claim took, and any retry of the submit (a 429) queues like every other submit."""

    __slots__ = ("_limiter", "_paid")

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._paid = True

    async def __aenter__(self) -> _Prepaid:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def try_acquire(self) -> bool:
        if self._paid:
            self._paid = False
            return True
        return self._limiter.try_acquire()

    async def acquire(self) -> None:
        if self._paid:
            self._paid = False
            return
        await self._limiter.acquire()

    async def pause(self, seconds: float) -> None:
        await self._limiter.pause(seconds)

    def paused_for(self) -> float:
        return self._limiter.paused_for()


class _Sending(Limiter):
    """A submit's lane, which tells the store when the submit goes on the wire.

    The token is taken for each attempt (a 429 is retried), so each attempt tells the
    store just before it is sent: the store's intent then says "sent", never while the
    submit still waits for its turn.
    """

    __slots__ = ("_context", "_lane", "_prompt", "_store", "_ticket")

    def __init__(
        self, lane: Limiter, store: SubmitSendingStore, ticket: Any, context: Any, prompt: str
    ) -> None:
        self._lane, self._store, self._ticket = lane, store, ticket
        self._context, self._prompt = context, prompt

    async def __aenter__(self) -> _Sending:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def try_acquire(self) -> bool:
        return False  # the store must hear of the send first: through `acquire`

    async def acquire(self) -> None:
        await self._lane.acquire()
        await self._store.submit_sending(self._ticket, self._context, self._prompt)

    async def pause(self, seconds: float) -> None:
        await self._lane.pause(seconds)

    def paused_for(self) -> float:
        return self._lane.paused_for()


class _Awaited:
    """One `wait_for()` call: the event it sleeps on, and what woke it."""

    __slots__ = ("arrived", "outcome", "receipt")

    def __init__(self) -> None:
        self.arrived = anyio.Event()
        self.outcome: Outcome | None = None
        self.receipt: Any = None


def _detection_delay(outcome: Outcome) -> float | None:
    """Seconds between the service finishing the task and this outcome, when known."""
    status = outcome.status
    if status is None or status.completed_at is None:
        return None
    return max(0.0, time.time() - status.completed_at.timestamp())
