"""The task-store seam, and `MemoryStore`: where tracked tasks live.

A task store is the one owner of every state change of a tracked task: it adds tasks,
hands out due checks (`claim`, which counts the check), takes them back with what the
check learnt and when the next one falls due (`end_check`), gives a task its final
outcome exactly once (`resolve`), times tasks out at their deadline (`expire`), and hands
every outcome to the poller's queue, including the ones the poller decided without a
check (`reject`). The poller decides, the store records: that split is what lets a fleet
of processes share one store (`async_dispatch.redis.RedisStore`) while a single process
keeps everything in memory.

Everything a store implementation needs is public (`TaskStore`, `TrackedTask`,
`StoreCapabilities`, `CheckEnd`, `OutcomeSink`, `Outcome`); what a store can do beyond
the protocol it declares in `TaskStore.capabilities`, and the poller asks that, never
the store's type.

`MemoryStore` costs one slotted record and a heap entry or two per task, a few hundred
bytes, with no coroutine or timer per task: that is what lets one poller hold 100,000.
Heap entries are never removed in place. Rescheduling pushes a new entry and the old one
goes stale; stale entries are recognised and dropped when they reach the top, and the
heaps are rebuilt when stale entries far outnumber live ones.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from ._errors import LifecycleError, UsageError
from ._models import TaskStatus
from ._outcome import Outcome, OutcomeKind, Via

if TYPE_CHECKING:
    from ._limiter import Limiter
    from ._resubmit import TaskSpec

__all__ = [
    "CheckEnd",
    "MemoryStore",
    "OutcomeSink",
    "RedeliveringStore",
    "StoreCapabilities",
    "SubmitSendingStore",
    "TaskStore",
    "TokenClaimingStore",
    "TrackedTask",
    "make_outcome",
]

#: How many finished ids are remembered to recognise late or duplicate webhooks.
RECENTLY_FINISHED: Final = 65_536
#: How many webhooks that beat their submit's answer are held for the submit.
PARKED_READINGS: Final = 1_024

#: Where a store hands outcomes: ``sink(outcome, receipt)``. The receipt is the store's
#: own (opaque to the poller) and comes back to `TaskStore.ack` once the application has
#: taken the outcome.
OutcomeSink = Callable[[Outcome, Any], None]


@attrs.frozen(kw_only=True)
class StoreCapabilities:
    """What a `TaskStore` can do beyond the protocol; the poller asks this, not the type."""

    #: Every task lives in this process: `TaskStore.next_due()` is exact, and
    #: `TaskStore.try_claim()` answers without I/O. The poller then takes a token before
    #: it claims (so a token is never spent on a check that became less urgent while it
    #: waited); a shared store is claimed first (another replica may take the check, and
    #: a token taken for nothing would leave its slot of the shared budget unused).
    local: bool = False
    #: `TaskStore.snapshot()` returns what `Poller.restore()` resumes in a new process. A
    #: durable store needs no snapshot: it resumes by itself.
    snapshot: bool = False
    #: The store can deliver an outcome again that the application failed to handle
    #: (`RedeliveringStore.redeliver`): a fleet's stream gives it back to any replica,
    #: with a bound and a dead-letter place. A store without it has its outcome queued
    #: again by the poller, in this process (`Poller.redeliver`).
    redeliver: bool = False
    #: The store wants to know when a submit goes on the wire, with its context and
    #: prompt (`SubmitSendingStore.submit_sending`): a fleet's intents are reported
    #: SUBMIT_UNCERTAIN only once sent, and then say what the caller needs to act.
    submit_sending: bool = False
    #: The store can claim a check and take its token in one step
    #: (`TokenClaimingStore.claim_with_token`), for the limiters it names
    #: (`TokenClaimingStore.claims_tokens_of`): a fleet's claim reserves the token of a
    #: `RedisTokenBucket` in the same script, one round trip instead of two, and only
    #: when a check is claimed. The poller then skips its own `Limiter.acquire()`.
    claim_with_token: bool = False


@attrs.frozen(kw_only=True)
class CheckEnd:
    """What a finished check leaves on its task's record, as the poller decided it.

    The store writes it (`TaskStore.end_check`): the poller never writes a record.
    """

    #: When the next check falls due (`math.inf`: none, the deadline decides). A check due
    #: at or after the task's last-check time (``deadline - Cadence.lead``) is its last.
    due: float
    #: The reading the check got, or None to keep the last one.
    status: TaskStatus | None = None
    #: The transient failure the check met (None: it got an answer). Kept as the task's
    #: last error: a TIMED_OUT outcome reports it.
    error: Exception | None = None
    #: Transient failures in a row after this check (0 once a check gets an answer).
    errors: int = 0
    #: The attempt failed and the task is to be resubmitted at `due`, not checked: the
    #: store sets `TrackedTask.phase` to ``"wait"`` (``""`` otherwise).
    resubmit: bool = False


class TrackedTask:
    """The state of one tracked task: a record the store writes and the poller reads.

    Every field after construction is written by the store only: `due` by `add`, `claim`
    and `end_check`, `polls` by `claim`, `errors`, `last_error` and `last_status` by
    `end_check`, `last_input` by `notify`, `phase` by `end_check` and `begin_resubmit`;
    `spec` is set once, before `add`. The poller reads them to decide, and hands its
    decisions to the store. Kept to what every store needs, because a poller holds 100,000
    of them: a store that needs more per task (a fencing token) subclasses it.
    """

    __slots__ = (
        "context",
        "deadline",
        "due",
        "errors",
        "last_error",
        "last_input",
        "last_status",
        "phase",
        "polls",
        "request_id",
        "seq",
        "spec",
        "started",
        "trace",
    )

    def __init__(
        self,
        request_id: str,
        *,
        started: float,
        deadline: float,
        context: Any,
        due: float = math.inf,
        trace: Mapping[str, str] | None = None,
    ) -> None:
        self.request_id = request_id
        self.context = context
        self.started = started
        self.deadline = deadline
        #: When the next check is due; `math.inf` while claimed, or when none is planned.
        #: A check due at or after the task's last-check time (``deadline - Cadence.lead``)
        #: is its last one: that is the whole rule, so no flag is kept per task.
        self.due = due
        self.seq = 0
        self.polls = 0
        #: Consecutive transient failures, for the error backoff.
        self.errors = 0
        self.last_error: Exception | None = None
        self.last_status: TaskStatus | None = None
        #: Identity of the last input request reported, so each is reported once.
        self.last_input: str | None = None
        #: What the task was submitted with, for a resubmission or a typed output (the
        #: `TaskSpec` a store keeps with the record); None for most tasks.
        self.spec: TaskSpec | None = None
        #: ``""``: checked as usual; ``"wait"``: its last attempt failed and it is to be
        #: resubmitted when due; ``"sending"``: a resubmission began (found at a claim, it
        #: was cut short: never sent again).
        self.phase = ""
        #: The task's trace context (`Outcome.trace_context`): set once, when tracked,
        #: by whoever tracks it; opaque to the store, which only keeps it.
        self.trace = trace

    def __repr__(self) -> str:
        return f"<TrackedTask {self.request_id} due={self.due:.3f} polls={self.polls}>"


def make_outcome(
    task: TrackedTask,
    kind: OutcomeKind,
    now: float,
    *,
    status: TaskStatus | None = None,
    error: Exception | None = None,
    final: bool = True,
    via: Via = "other",
    output: Any = None,
    output_type: str | None = None,
) -> Outcome:
    """The outcome `task` ends (or, with ``final=False``, notifies) with at `now`: its
    attempts are the spec's earlier ones and this one."""
    spec = task.spec
    earlier = spec.attempts if spec is not None else ()
    return Outcome(
        request_id=task.request_id,
        kind=kind,
        status=status or task.last_status,
        error=error,
        context=task.context,
        polls=task.polls,
        elapsed=now - task.started,
        final=final,
        via=via,
        output=output,
        output_type=output_type,
        attempts=(*earlier, task.request_id),
        trace_context=task.trace,
    )


class TaskStore(Protocol):
    """What a `Poller` needs of the place its tasks live. See the module docstring.

    Times are in the poller's clock (`anyio.current_time()`); a store shared between
    processes translates them. Every method may do I/O, except the ones that are not
    coroutines: those answer from what the store already knows.
    """

    # Empty: a limiter or store that subclasses this (to inherit `bind_key`) keeps its
    # own slots, and no per-instance dict.
    __slots__ = ()

    @property
    def capabilities(self) -> StoreCapabilities:
        """What this store can do beyond the protocol (see `StoreCapabilities`)."""
        ...

    async def bind_key(self, fingerprint: str) -> None:
        """Serve only the API key of `fingerprint` (`DispatchClient.key_fingerprint`).

        The poller calls it once, before `attach`. A store shared by a fleet binds its
        name to the key (so two keys cannot share a fleet's tasks) and refuses another
        key with `UsageError`; a store of one process has nothing to bind. This default
        (inherited by a store that subclasses `TaskStore`) does nothing.
        """
        return

    def attach(
        self,
        sink: OutcomeSink,
        clock: Callable[[], float],
        wake: Callable[[], None],
        *,
        last_check_lead: float,
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Serve one poller for the duration of the block: hand outcomes to `sink`, and
        call `wake` when `idle()` may have changed without an outcome (another process
        finished the last task).

        `last_check_lead` is the poller's `Cadence.lead`: a check due that long before a
        task's deadline, or later, is its last one and is served ahead of routine checks;
        a routine check still waiting by then is served as the last one.
        """
        ...

    def __len__(self) -> int:
        """Tasks tracked, as far as this process knows without I/O."""
        ...

    def __contains__(self, request_id: object) -> bool:
        """Whether this process knows, without I/O, that `request_id` is tracked (a store
        shared by a fleet may answer False for a task another replica added)."""
        ...

    async def add(self, task: TrackedTask) -> bool:
        """Track `task` with its first check at `task.due`; False if its id is tracked,
        or got its final outcome recently (that outcome stays its only one)."""
        ...

    async def add_many(self, tasks: Iterable[TrackedTask]) -> list[TrackedTask]:
        """`add()` each task; returns the ones that were tracked anew."""
        ...

    async def get(self, request_id: str) -> TrackedTask | None:
        """The tracked task with this id, or None."""
        ...

    async def forget(self, request_id: str) -> bool:
        """Stop tracking without an outcome; True if the id was tracked."""
        ...

    def next_due(self) -> float:
        """When a check may next be claimable: exact for a local store, else a hint for
        the dispatcher's alarm."""
        ...

    def try_claim(self, now: float) -> TrackedTask | None:
        """`claim()` without I/O: a local store's fast path. A store that cannot claim
        without I/O returns None (and declares ``capabilities.local`` False)."""
        ...

    async def claim(self, now: float) -> TrackedTask | None:
        """Take the most urgent check due at `now` (last checks first), or None.

        A claim is a check about to be made: the store counts it in `TrackedTask.polls`
        (so a task whose deadline strikes mid-check is known to have been checked).
        """
        ...

    async def end_check(self, task: TrackedTask, end: CheckEnd) -> None:
        """Finish a claimed check: record what it learnt and plan the next one."""
        ...

    async def resolve(self, task: TrackedTask, outcome: Outcome, *, fenced: bool) -> bool:
        """Give `task` its final `outcome` if nobody did first; True if this call did.

        `fenced`: only if the caller's claim still holds (a poll). A webhook or the
        deadline resolves whoever holds the claim.
        """
        ...

    async def begin_resubmit(self, task: TrackedTask) -> bool:
        """The claimed `task` (phase ``"wait"``) is about to be resubmitted: set its phase
        to ``"sending"`` where a restart or another replica will find it, keeping the
        claim. False if the claim no longer holds, or the phase is not ``"wait"``."""
        ...

    async def resubmitted(self, task: TrackedTask, new: TrackedTask) -> bool:
        """`task`'s resubmission created `new`: in one step, end `task` without an
        outcome (its id counts as finished, so a late webhook for it is a duplicate) and
        track `new` (with its `spec` and `polls`). Only under the caller's claim, and
        while `task` is ``"sending"``; False (nothing changed) otherwise, or if `new`'s id
        is tracked or finished already."""
        ...

    async def notify(self, task: TrackedTask, outcome: Outcome, input_key: str) -> None:
        """Deliver a non-final outcome (a new input request) once: record `input_key` as
        the task's `last_input`, unless it is already the one recorded or the task is gone.
        """
        ...

    async def reject(self, outcome: Outcome) -> None:
        """Deliver the final outcome of a task that was never tracked (its id cannot be
        sent), so that it reaches the application like every other outcome."""
        ...

    def next_deadline(self) -> float:
        """When the earliest deadline falls, as far as this process knows."""
        ...

    async def expire(self, now: float) -> int:
        """Resolve every task whose deadline is at or before `now` as TIMED_OUT."""
        ...

    async def ack(self, receipt: Any) -> None:
        """The application took the outcome this receipt came with."""
        ...

    async def begin_submit(self) -> Any:
        """A submit is about to be sent; returns a ticket for `end_submit`."""
        ...

    async def end_submit(self, ticket: Any, task: TrackedTask | None) -> TaskStatus | None:
        """The submit is over: track `task` (None if it failed) and return a reading that
        arrived for it meanwhile, if any."""
        ...

    async def park(self, request_id: str, status: TaskStatus) -> bool:
        """Hold a webhook for an id not tracked yet, if a submit might still own it."""
        ...

    async def finished(self, request_id: str) -> bool:
        """Whether this id recently got its final outcome (a late or repeated webhook)."""
        ...

    async def idle(self) -> bool:
        """Nothing tracked, and no submit in flight."""
        ...

    def snapshot(self) -> list[dict[str, Any]]:
        """Every task whose final outcome the application has not taken yet, as strict
        JSON-ready dicts (`request_id`, `deadline` in seconds since the Unix epoch,
        `context` or None, `trace`: the task's trace context or None), for
        `Poller.restore()` in a new process. Only for stores
        that declare ``capabilities.snapshot``; others raise `UsageError`."""
        ...


class RedeliveringStore(TaskStore, Protocol):
    """A `TaskStore` that declares ``capabilities.redeliver``: it hands outcomes out of a
    queue shared by several processes, can give one back, and fences the ones a process
    holds (`holds`).

    An outcome is acknowledged once the application asks for the next one; when the
    application's handler failed on it instead (`DispatchRuntime`'s ``on_outcome``
    raised), the poller calls `redeliver` with its receipt, and nothing acknowledges it.
    """

    async def redeliver(self, receipt: Any, reason: str) -> bool:
        """Deliver the outcome of `receipt` again later, with a bound: past it, keep it
        where an operator can find it (a dead-letter place). True if it went there.
        `reason` says why (the handler's error type), for that place."""
        ...

    async def holds(self, receipt: Any) -> bool:
        """Whether the outcome of `receipt`, queued in this process, is still this
        process's to hand over: another may have taken it over while this one stalled
        (it then delivers it). Asked just before the poller yields a queued outcome;
        answer without I/O when nobody can have taken it yet."""
        ...


class SubmitSendingStore(TaskStore, Protocol):
    """A `TaskStore` that declares ``capabilities.submit_sending``.

    Between `TaskStore.begin_submit` and `TaskStore.end_submit`, a submit first waits
    for its turn and a token, possibly for long behind a small budget; only then is it
    sent. The poller calls `submit_sending` at that moment (again before each retry), so
    that a submit still waiting is never reported as possibly sent.
    """

    async def submit_sending(self, ticket: Any, context: Any, prompt: str) -> None:
        """The submit of `ticket` goes on the wire now. `prompt` is the caller's: keep no
        more of it than a digest (it may hold secrets)."""
        ...


class TokenClaimingStore(TaskStore, Protocol):
    """A `TaskStore` that declares ``capabilities.claim_with_token``.

    A store shared by a fleet claims first and takes the token second (`TaskStore.claim`,
    then `Limiter.acquire`): two round trips per check when both live in Redis. This
    store can do both at once for some limiters; the poller asks which, once, and then
    calls `claim_with_token` instead of the pair.
    """

    def claims_tokens_of(self, limiter: Limiter) -> bool:
        """Whether `claim_with_token` can take `limiter`'s tokens (a fleet's store: a
        `RedisTokenBucket` on the same Redis, and on a cluster in the same slot)."""
        ...

    async def claim_with_token(self, now: float, limiter: Limiter) -> TrackedTask | None:
        """`TaskStore.claim`, and with a claimed check one token of `limiter`, taken in
        the same step; returns once that token may be spent (it waited for its slot, and
        for any pause of the limiter). Nothing claimed takes no token. The claim holds at
        least until the token's slot plus its usual lease; a token whose check is
        cancelled while it waits is handed back when the limiter can take it back."""
        ...


class MemoryStore(TaskStore):
    """The default `TaskStore`: this process's memory, for one poller on one event loop.

    Receipts are the task records themselves: a final outcome's task is held until the
    application takes the outcome, so `snapshot()` includes it (a crash between the two
    loses nothing). A notification's receipt is None.
    """

    __slots__ = (
        "_clock",
        "_deadlines",
        "_due",
        "_finished",
        "_held",
        "_last",
        "_last_due",
        "_lead",
        "_parked",
        "_seq",
        "_sink",
        "_submitting",
        "tasks",
    )

    capabilities: Final = StoreCapabilities(local=True, snapshot=True)

    def __init__(self) -> None:
        self.tasks: dict[str, TrackedTask] = {}
        # Routine checks and last checks, each a heap of (due, seq, task).
        self._due: list[tuple[float, int, TrackedTask]] = []
        self._last: list[tuple[float, int, TrackedTask]] = []
        # One entry per task at its last-check time, pushed when it is added: a routine check
        # that the budget delays past that time is served from here, ahead of routine ones.
        self._last_due: list[tuple[float, int, TrackedTask]] = []
        self._deadlines: list[tuple[float, int, TrackedTask]] = []
        self._seq = itertools.count()
        self._finished: OrderedDict[str, None] = OrderedDict()
        #: Tasks whose final outcome was delivered and not acknowledged yet.
        self._held: dict[TrackedTask, None] = {}
        self._parked: OrderedDict[str, TaskStatus] = OrderedDict()
        self._submitting = 0
        self._sink: OutcomeSink | None = None
        self._clock: Callable[[], float] | None = None
        self._lead = 0.0  # the attached poller's `Cadence.lead`

    def __repr__(self) -> str:
        return f"<MemoryStore tracked={len(self.tasks)}>"

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self.tasks

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
            raise LifecycleError("this MemoryStore already serves a Poller; give each its own")
        self._sink, self._clock, self._lead = sink, clock, last_check_lead
        try:
            yield
        finally:
            self._sink = None

    # -- tracking -----------------------------------------------------------------------

    async def add(self, task: TrackedTask) -> bool:
        return self._add(task)

    async def add_many(self, tasks: Iterable[TrackedTask]) -> list[TrackedTask]:
        # Nothing waits in memory: one coroutine for the lot, so 100,000 ids take well
        # under a second.
        add = self._add
        return [task for task in tasks if add(task)]

    def _add(self, task: TrackedTask) -> bool:
        if task.request_id in self.tasks or task.request_id in self._finished:
            return False  # a second life would give the id a second final outcome
        self.tasks[task.request_id] = task
        seq = next(self._seq)
        entry = (task.deadline, seq, task)
        heapq.heappush(self._deadlines, entry)
        if task.due < task.deadline - self._lead:
            # The same entry: last-check times keep the order of deadlines (one lead for
            # every task of a poller), and sharing it costs a list slot, not a tuple.
            heapq.heappush(self._last_due, entry)
        self._schedule(task, task.due, seq)
        return True

    async def get(self, request_id: str) -> TrackedTask | None:
        return self.tasks.get(request_id)

    async def forget(self, request_id: str) -> bool:
        if self.tasks.pop(request_id, None) is None:
            return False
        self._compact()
        return True

    def snapshot(self) -> list[dict[str, Any]]:
        if self._clock is None:
            raise UsageError("snapshot() needs the store attached to a running Poller")
        offset = time.time() - self._clock()
        pending = itertools.chain(self._held, self.tasks.values())
        return [
            {
                "request_id": task.request_id,
                "deadline": task.deadline + offset,
                "context": _json_or_none(task.context),
                "trace": dict(task.trace) if task.trace else None,
            }
            for task in pending
        ]

    # -- checks -------------------------------------------------------------------------

    def next_due(self) -> float:
        now = self._clock() if self._clock is not None else -math.inf
        return min(self._top(self._last), self._top_last_due(now), self._top(self._due))

    async def claim(self, now: float) -> TrackedTask | None:
        return self.try_claim(now)

    def try_claim(self, now: float) -> TrackedTask | None:
        # Last checks first; then a routine check still waiting at its task's last-check
        # time; then routine checks. Each heap's top is looked up once.
        heap = self._last
        if self._top(heap) > now:
            if self._top_last_due(now) <= now:
                # Served now, as the last check (its routine entry goes stale with the
                # new seq).
                task = heapq.heappop(self._last_due)[2]
                task.due, task.seq = math.inf, next(self._seq)
                task.polls += 1
                return task
            heap = self._due
            if self._top(heap) > now:
                return None
        task = heapq.heappop(heap)[2]
        task.due = math.inf
        task.polls += 1
        return task

    async def end_check(self, task: TrackedTask, end: CheckEnd) -> None:
        if self.tasks.get(task.request_id) is task:
            if end.status is not None:
                task.last_status = end.status
            task.last_error, task.errors = end.error, end.errors
            task.phase = "wait" if end.resubmit else ""
            self._schedule(task, end.due, next(self._seq))

    def _schedule(self, task: TrackedTask, due: float, seq: int) -> None:
        task.due, task.seq = due, seq
        if due < math.inf:
            # Planned at or after its last-check time (a 429 keeps a check's place): last.
            last = due >= task.deadline - self._lead
            heapq.heappush(self._last if last else self._due, (due, seq, task))

    def _top(self, heap: list[tuple[float, int, TrackedTask]]) -> float:
        tasks = self.tasks
        while heap:
            when, seq, task = heap[0]
            if task.seq == seq and tasks.get(task.request_id) is task:
                return when
            heapq.heappop(heap)
        return math.inf

    def _top_last_due(self, now: float) -> float:
        """The earliest last-check time of a task whose planned check is still routine.

        From that time on, an entry is needed only if the task still waits for a routine
        check; otherwise (claimed, or its next check is already a last one) it is
        dropped: every check planned from then on is a last one. Before it, the entry
        stays (a check in flight may come back with a routine one).
        """
        heap, tasks, lead = self._last_due, self.tasks, self._lead
        while heap:
            task = heap[0][2]  # ordered by deadline, the same order as last-check times
            when = task.deadline - lead
            # `task.due < when`: its planned check is a routine one (not claimed, and
            # not a last one: those fall at or after `when`).
            if tasks.get(task.request_id) is task and (when > now or task.due < when):
                return when
            heapq.heappop(heap)
        return math.inf

    # -- endings ------------------------------------------------------------------------

    async def resolve(self, task: TrackedTask, outcome: Outcome, *, fenced: bool) -> bool:
        # One process, one record per task: identity is the fence.
        if self.tasks.get(task.request_id) is not task:
            return False
        del self.tasks[task.request_id]
        self._compact()
        self._remember(task.request_id)
        self._deliver(outcome, task)
        return True

    async def begin_resubmit(self, task: TrackedTask) -> bool:
        if self.tasks.get(task.request_id) is not task or task.phase != "wait":
            return False
        task.phase = "sending"
        return True

    async def resubmitted(self, task: TrackedTask, new: TrackedTask) -> bool:
        if self.tasks.get(task.request_id) is not task or task.phase != "sending":
            return False
        if new.request_id in self.tasks or new.request_id in self._finished:
            return False
        del self.tasks[task.request_id]
        self._remember(task.request_id)
        self._add(new)
        self._compact()
        return True

    async def notify(self, task: TrackedTask, outcome: Outcome, input_key: str) -> None:
        if self.tasks.get(task.request_id) is task and task.last_input != input_key:
            task.last_input = input_key
            self._notice(outcome)

    async def reject(self, outcome: Outcome) -> None:
        self._notice(outcome)

    def next_deadline(self) -> float:
        deadlines, tasks = self._deadlines, self.tasks
        while deadlines:
            when, _, task = deadlines[0]
            if tasks.get(task.request_id) is task:
                return when
            heapq.heappop(deadlines)
        return math.inf

    async def expire(self, now: float) -> int:
        expired = 0
        while self.next_deadline() <= now:
            task = heapq.heappop(self._deadlines)[2]
            del self.tasks[task.request_id]
            self._remember(task.request_id)
            outcome = make_outcome(
                task, OutcomeKind.TIMED_OUT, now, error=task.last_error, via="deadline"
            )
            self._deliver(outcome, task)
            expired += 1
        if expired:
            self._compact()
        return expired

    async def ack(self, receipt: Any) -> None:
        if receipt is not None:
            self._held.pop(receipt, None)

    def _deliver(self, outcome: Outcome, task: TrackedTask) -> None:
        """Hand a final outcome over, holding its task until it is acknowledged."""
        assert self._sink is not None, "the store is not attached to a Poller"
        self._held[task] = None
        self._sink(outcome, task)

    def _notice(self, outcome: Outcome) -> None:
        """Hand over an outcome that leaves nothing to hold (a notification, or a task
        that was never tracked)."""
        assert self._sink is not None, "the store is not attached to a Poller"
        self._sink(outcome, None)

    def _remember(self, request_id: str) -> None:
        finished = self._finished
        finished[request_id] = None
        if len(finished) > RECENTLY_FINISHED:
            finished.popitem(last=False)

    # -- submits and early webhooks -----------------------------------------------------

    async def begin_submit(self) -> None:
        self._submitting += 1

    async def end_submit(self, ticket: Any, task: TrackedTask | None) -> TaskStatus | None:
        self._submitting -= 1
        parked = None
        if task is not None:
            self._add(task)
            parked = self._parked.pop(task.request_id, None)
        if not self._submitting:
            self._parked.clear()  # webhooks for ids that no submit turned out to own
        return parked

    async def park(self, request_id: str, status: TaskStatus) -> bool:
        if not self._submitting:
            return False
        self._parked[request_id] = status
        if len(self._parked) > PARKED_READINGS:
            self._parked.popitem(last=False)
        return True

    async def finished(self, request_id: str) -> bool:
        return request_id in self._finished

    async def idle(self) -> bool:
        return not self.tasks and not self._submitting

    # -- housekeeping -------------------------------------------------------------------

    def _compact(self) -> None:
        """Drop stale heap entries once they far outnumber live ones.

        A finished task's entries would otherwise stay until they reach the top of their
        heap, that is until its deadline, keeping the record (and its last status) alive
        long after the caller got the outcome. Rebuilding only when stale entries are
        several times the live ones keeps the cost amortised O(1) per removal.
        """
        live = len(self.tasks)
        if not live:
            self._due.clear()
            self._last.clear()
            self._last_due.clear()
            self._deadlines.clear()
            return
        limit = 4 * live + 1024
        tasks = self.tasks
        for name in ("_due", "_last"):
            heap: list[tuple[float, int, TrackedTask]] = getattr(self, name)
            if len(heap) > limit:
                heap = [e for e in heap if e[2].seq == e[1] and tasks.get(e[2].request_id) is e[2]]
                heapq.heapify(heap)
                setattr(self, name, heap)
        for name in ("_deadlines", "_last_due"):
            heap = getattr(self, name)
            if len(heap) > limit:
                heap = [e for e in heap if tasks.get(e[2].request_id) is e[2]]
                heapq.heapify(heap)
                setattr(self, name, heap)


def _json_or_none(value: Any) -> Any:
    """`value` if it is strict JSON (no NaN or infinity either), else None."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return value
