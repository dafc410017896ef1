"""`RedisStore`: the `TaskStore` of a fleet, so that N replicas behave like one poller.

Every replica builds ``Poller(client, bucket=RedisTokenBucket(...), store=RedisStore(url,
name="team-key"))`` with the same ``name``. Tasks live in Redis, not in any process:

Keys (all under ``async_dispatch:{name}:``, one Redis Cluster slot)::

    tasks            hash: request id -> the task's record (MessagePack, short names:
                     see lua/_task.lua): context (JSON), started, deadline, polls,
                     errors, last input, last status payload (JSON), last transient
                     error (JSON), fencing token, lease (expiry while claimed), last-check
                     time, the claiming replica's consumer name, the task's trace
                     context (W3C Trace Context headers as JSON) if it has one, spec
                     (`TaskSpec` JSON) and phase ('wait' or 'sending': a resubmission
                     planned or under way)
    due              zset id -> next routine check; while claimed, the lease expiry
    last             zset id -> next *last* check (served before `due`); same rule
    deadlines        zset id -> the next time the expiry round looks at the task: its
                     last-check time while its planned check is routine (the round then
                     promotes it to a last check), else its deadline (lua/_task.lua)
    done             zset id -> until when it counts as finished (`finished_ttl`): late
                     webhooks are DUPLICATE; no TTL, so no `volatile-*` policy evicts it
    outcomes         stream of outcomes (field ``o``: JSON), consumer group ``pollers``;
                     with a fleet secret, ``m`` (the entry's MAC) or ``p`` (the signed
                     pieces of an outcome Redis built: _integrity.py)
    deadletter       outcomes no replica could read, or whose handler failed at every
                     delivery (``o``, ``entry``, ``reason``)
    rounds           hash: when the last expiry round ran, and until when endings are
                     held after a gap in them (store_expire.lua)
    intents          zset intent id -> expiry (submit in flight, renewed by its replica);
                     intent_started: hash id -> start; intent_sent: hash id -> what its
                     SUBMIT_UNCERTAIN would say, once the submit went on the wire
    parked_data      hash: id -> an early webhook's payload; parked: zset id -> expiry
                     (`park_ttl`), pruned by store_expire.lua
    key              the fingerprint of the one API key the fleet serves (no TTL)
    epoch            a random marker written at first attach: gone means the fleet's
                     state is gone (`FleetStateLost`)
    integrity        the fingerprint of the fleet secret (``unsigned`` for none): every
                     replica must have the same (no TTL)

Every state change is one Lua script (``lua/store_*.lua``), so a change is atomic across
the fleet. Every key a script touches is one of the fixed keys above, declared in its
``KEYS``, so Redis Cluster routes each script to the node owning the fleet's slot and a
script stays whole while that slot migrates (``RedisConnection`` follows MOVED and ASK).

A claim leases the check: its score becomes the lease expiry, so a dead replica's checks
come due again for the others once `lease` runs out, and the fencing token makes a late
write from a replica that lost its lease a no-op. A background job renews the leases of
the checks this process runs that have used a sixth of their lease (it runs every
``lease / 3``): most checks end well before, and cost no renewal.

The check path, under load, is one script per check: with a `RedisTokenBucket` on the
same Redis the claim also reserves the check's token (`claim_with_token`: only when it
claims a check; the lease then runs from the token's slot, and the poller takes no token
of its own), and it first writes the ends of the checks this replica finished since its
last claim (`end_check` only queues them; `store_end_check.lua` takes what no claim
carried within a moment). A final reading is its own script (store_resolve.lua).

Clocks: scripts use the Redis server's clock (``TIME``); scores are server seconds. The
`TaskStore` protocol speaks the poller's loop clock, so the store keeps ``offset =
server time - loop time``, measured when attached (half a round trip of error at most)
and again every `resync` seconds; it converts at the boundary and nowhere else.

Outcomes go through the stream, whichever replica resolved the task: each replica reads
with XREADGROUP as its own consumer and hands outcomes to its poller; an outcome is
acknowledged (and deleted) when the application asks for the next one. A live replica
renews its claim on the outcomes its application holds (at least every `outcome_idle / 4`),
however long the application takes over them. Entries that a dead replica read but never
acknowledged are taken over by a live reader with XAUTOCLAIM once they were idle
`outcome_idle` seconds, and delivered again with ``Outcome.deliveries`` > 1.
A replica that was only stalled that long checks, before its poller yields an outcome
it had queued, that the outcome is still its own (`holds`): the one that took it over
delivers it. That is the one window of duplicates: a replica that took an outcome, did
the side effect and died (or stalled) before asking for the next. An outcome whose
handler failed is given back (`redeliver`): delivered again, three times at most, then
moved to the dead-letter stream. The request id is the idempotency key: each task has
exactly one final outcome, whatever replica handles it.

Submits leave an intent, renewed by their replica while it lives; only one that went on
the wire (`submit_sending`) becomes SUBMIT_UNCERTAIN if its replica stops renewing it.

Resubmissions (`ResubmitPolicy`) work fleet-wide: the task's `spec` holds what a
resubmission needs, and no secret (the prompt, the options not marked secret, the output
type's import path, the earlier attempts' ids): the replica that resubmits fills in its
own poller's callback secret and headers, and `ResubmitPolicy.secret_options` gives the
others. A resubmission is marked ``sending`` under the claim before it is sent
(store_begin_resubmit.lua) and swapped for the new attempt in one script
(store_resubmitted.lua): a replica dying in between leaves the mark, and the next claim
ends the task SUBMIT_UNCERTAIN rather than sending it twice.

Durability is Redis's: a Redis that keeps nothing on disk forgets tracked tasks when it
restarts. While Redis is unreachable, the store's methods raise `CoordinationError`: the
poller's workers and reaper wait and try again (a submit or `track()` raises it to the
caller); the store's background jobs retry with backoff, log one warning per outage, and
carry on when Redis is back, all without a process restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, Final

import anyio
import anyio.abc

from .._error_codec import error_from_data, error_to_data
from .._errors import DispatchError, LifecycleError, UsageError
from .._limiter import Limiter
from .._log import logger
from .._models import TaskStatus
from .._outage import Outage
from .._outcome import Outcome, OutcomeKind
from .._outcome_codec import decode_outcome, encode_outcome, status_payload, trace_of, trace_text
from .._resubmit import TaskSpec
from .._store import CheckEnd, OutcomeSink, StoreCapabilities, TrackedTask, make_outcome
from .._wire import parse_status_payload
from . import _msgpack
from ._connection import RedisConnection, check_fleet_name
from ._errors import CoordinationError, FleetIntegrityError, FleetStateLost
from ._integrity import MAC_CHARS, FleetSigner, IntegrityError
from ._token_bucket import RedisTokenBucket, reservation

__all__ = ["RedisStore", "status_payload"]

GROUP: Final = "pollers"
#: How stale a hint (`next_due`, `next_deadline`, `len()`) may get: work another replica
#: adds is noticed within this many seconds.
REFRESH: Final = 0.25
_EXPIRE_BATCH: Final = 100
#: No expiry round fleet-wide for this long (or a third of the lease, if longer) means
#: nobody could record progress: Redis was stopped, unreachable or out of memory, or no
#: replica ran. Endings (deadlines, uncertain submits) are then held for the lease, and
#: at least `_HOLD_AFTER_GAP` seconds, while the replicas catch up (store_expire.lua).
_GAP: Final = 2.0
_HOLD_AFTER_GAP: Final = 5.0
_READ_BATCH: Final = 100
#: Outcome holds renewed per script call (each is one XPENDING on the server).
_HOLD_BATCH: Final = 500
#: Tasks per store_add_many.lua call: each call keeps Redis busy for a few milliseconds
#: at most (about as long as 500 did before the client built the records), and 100,000
#: ids cost 100 round trips (fewer calls: less per-call work on both sides).
_ADD_BATCH: Final = 1000
#: store_add_many.lua calls under way at once: one runs in Redis while the next is encoded.
_ADD_IN_FLIGHT: Final = 2
#: Outcomes per store_ack.lua call.
_ACK_BATCH: Final = 500
#: How long an acknowledgement in a burst may wait for others to go with it (seconds): the
#: extra window in which a replica that dies or stalls has an outcome its application took
#: delivered again (a lone one is paid at once: `RedisStore.ack`).
_ACK_DELAY: Final = 0.02
#: How many fields of store_claim.lua's reply describe the claimed task (a token
#: reservation follows, when the claim took one).
_CLAIM_FIELDS: Final = 18
#: A lease is renewed (the job runs every ``lease / 3``) once less than this share of it
#: is left: a check shorter than a sixth of the lease costs no renewal, and every lease is
#: renewed with at least half of it left.
_RENEW_AT: Final = 5 / 6
#: How long the end of a check waits for this replica's next claim to carry it
#: (store_claim.lua) before it goes on its own (store_end_check.lua), in seconds: at least
#: `_END_DELAY`, longer (up to `_END_MAX_DELAY`) while the dispatcher waits for the slot
#: of a claim's token, after which it claims again at once (`_END_SLACK` after the slot).
#: Under load the dispatcher always waits for one, so ends cost no round trip of their own.
_END_DELAY: Final = 0.05
_END_SLACK: Final = 0.05
_END_MAX_DELAY: Final = 0.5
#: Ends per store_end_check.lua call, and most carried by one claim.
_END_BATCH: Final = 100
#: How often a replica at its read-ahead bound looks whether its application took some.
_FULL_WAIT: Final = 0.05
#: Deliveries after which an outcome no replica can read, or whose handler failed each
#: time (`RedisStore.redeliver`), goes to the dead-letter stream.
MAX_DELIVERIES: Final = 3
UNREADABLE_DELIVERIES: Final = MAX_DELIVERIES
#: How many dead letters the stream keeps (about: trimmed with MAXLEN ~).
_DEAD_LETTERS_KEPT: Final = 10_000


def _error_json(error: Exception | None) -> str:
    """An error as stored: its own class comes back out (`_error_codec`), so an outcome's
    error has the same type whichever replica, or store, carried it."""
    return "" if error is None else json.dumps(error_to_data(error))


def _make_json_text() -> Callable[[Any], str]:
    """`json.dumps` with its defaults, minus the encoder it builds at every call (most of
    the cost of a small context, and `add_many` encodes one per task): the C encoder is
    built once. Without it (another Python), plain `json.dumps`."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has it
        return json.dumps
    # No circular check (markers=None): a circular value recurses instead, and the
    # fallback below turns that into json.dumps's own ValueError.
    encode = make(
        None,
        json.JSONEncoder().default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )

    def json_text(value: Any) -> str:
        try:
            return "".join(encode(value, 0))
        except (RecursionError, TypeError, ValueError):
            return json.dumps(value)  # its error, or its text for what the fast path refused

    return json_text


#: The JSON text of a context, as `json.dumps(value)` writes it.
_json_text: Final = _make_json_text()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return "" if value is None else str(value)


def _seconds(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.6f}"


def _chunks(tasks: list[TrackedTask]) -> Iterator[list[TrackedTask]]:
    """`tasks` in runs of at most `_ADD_BATCH`."""
    for start in range(0, len(tasks), _ADD_BATCH):
        yield tasks[start : start + _ADD_BATCH]


class LeasedTask(TrackedTask):
    """A task as a replica sees it while it runs a check: with the claim's fencing token.

    The token lives here and not on `TrackedTask`, so a poller in one process pays
    nothing for it. A check whose lease ran out (and that another replica claimed again,
    under a newer token) can then no longer write its result.
    """

    __slots__ = ("lease",)

    def __init__(
        self, request_id: str, *, started: float, deadline: float, context: Any, lease: int
    ) -> None:
        super().__init__(request_id, started=started, deadline=deadline, context=context)
        self.lease = lease


def _token(task: TrackedTask) -> str:
    return str(task.lease) if isinstance(task, LeasedTask) else "0"


def _spec_json(task: TrackedTask) -> str:
    """The task's spec as stored ('' for none); `UsageError` if its options are not JSON."""
    if task.spec is None:
        return ""
    return task.spec.stored_json(request_id=task.request_id, store="a fleet")


class RedisStore:
    """A `TaskStore` in Redis, shared by every replica using the same `name`.

    Args:
        url_or_connection: A Redis URL, or a `RedisConnection` shared with other fleet
            objects of this process (e.g. the `RedisTokenBucket`).
        name: The fleet: every replica of one API key uses the same name.
        lease: Seconds a claimed check is held before another replica may take it over
            (renewed every ``lease / 3`` while the check runs). A dead replica's checks
            resume after at most this long: keep it short.
        outcome_idle: Seconds an outcome read by a replica may go without that replica
            renewing its claim (it is dead, or stalled that long) before a live one takes
            it over and delivers it again. A replica that has read nothing for this long
            and holds no outcome leaves the stream's consumer group (it joins again when
            it next reads).
        submit_timeout: How long a submit may take once sent. Each submit leaves an
            intent in Redis, renewed by its replica (every ``lease / 3``) however long
            it waits for its turn and token; if the replica stops renewing it (dies,
            stalls or loses Redis) for this plus `lease` after the submit went on the
            wire, the intent becomes a SUBMIT_UNCERTAIN outcome (one that was never sent
            just goes).
        finished_ttl: Seconds a finished id is remembered (late webhooks: DUPLICATE).
        park_ttl, max_parked: How long and how many early webhooks are held.
        resync: Seconds between measurements of the offset to Redis's clock.
        read_ahead: The most outcomes this replica reads from the stream before its
            application has taken them (the read-ahead bound): the rest stay in Redis
            for the other replicas, and in no process's memory.
        timeout: Seconds to wait for Redis (only with a URL).
        secret: The fleet secret (at least 16 bytes; the same on every replica, kept like
            the API key, never written to Redis): with it, every outcome and task record
            a replica writes carries its MAC, and what fails the check is not delivered
            (`FleetIntegrityError`; `_integrity.py` says what this does and does not
            guard). A fleet is bound to its secret, or to having none, by its first
            replica: a replica with another is refused with `UsageError`.
    """

    def __init__(
        self,
        url_or_connection: str | RedisConnection,
        *,
        name: str,
        lease: float = 30.0,
        outcome_idle: float = 60.0,
        submit_timeout: float = 60.0,
        finished_ttl: float = 3600.0,
        park_ttl: float = 300.0,
        max_parked: int = 1024,
        resync: float = 10.0,
        timeout: float = 2.0,
        read_ahead: int = 1000,
        secret: str | bytes | None = None,
    ) -> None:
        check_fleet_name(name)
        #: Signs what this replica writes and checks what it reads (None: no secret).
        self._signer = FleetSigner(secret, name) if secret is not None else None
        if isinstance(read_ahead, bool) or not isinstance(read_ahead, int) or read_ahead < 1:
            raise UsageError(f"read_ahead must be an int >= 1, got {read_ahead!r}")
        for label, value in (
            ("lease", lease),
            ("outcome_idle", outcome_idle),
            ("submit_timeout", submit_timeout),
            ("finished_ttl", finished_ttl),
            ("park_ttl", park_ttl),
            ("resync", resync),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"{label} must be a number of seconds, got {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise UsageError(f"{label} must be a finite number > 0, got {value!r}")
        if isinstance(url_or_connection, RedisConnection):
            self._connection = url_or_connection
        else:
            self._connection = RedisConnection(url_or_connection, timeout=timeout)
        self.name = name
        self.lease = float(lease)
        self.outcome_idle = float(outcome_idle)
        self.submit_timeout = float(submit_timeout)
        self.finished_ttl = max(1, round(finished_ttl))
        self.park_ttl = max(1, round(park_ttl))
        self.max_parked = max_parked
        self.resync = float(resync)
        self.read_ahead = read_ahead
        #: This replica's consumer name in the outcome stream's group.
        self.consumer = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._prefix = RedisConnection.key(name, "")
        key = self._key
        self._due, self._last, self._deadlines = key("due"), key("last"), key("deadlines")
        self._done = key("done")
        self._stream, self._intents = key("outcomes"), key("intents")
        self._dead_letters = key("deadletter")
        self._intent_started, self._parked = key("intent_started"), key("parked")
        self._tasks, self._parked_data = key("tasks"), key("parked_data")
        self._intent_sent = key("intent_sent")
        self._sink: OutcomeSink | None = None
        self._wake: Callable[[], None] | None = None
        self._clock: Callable[[], float] = anyio.current_time
        self._lead = 0.0  # the attached poller's `Cadence.lead`
        self._offset = 0.0
        #: The checks this replica runs: id -> (fencing token, loop time its lease ends
        #: as last set, by the claim or a renewal).
        self._held: dict[str, tuple[int, float]] = {}
        #: Intent ids of this replica's submits in flight, renewed by `_maintain`.
        self._submitting: set[str] = set()
        #: Entry ids of the outcomes handed to the poller and not acknowledged yet.
        #: With the loop time just before the command that last made each one this
        #: replica's (the read, a takeover, a renewal): what `holds` trusts without I/O.
        self._holding: dict[str, float] = {}
        #: Entries a renewal found taken over by another replica (this one stalled).
        self._lost: set[str] = set()
        #: Entries that failed the fleet secret's check: id -> (payload, why), to be
        #: dead-lettered by the reader that met them.
        self._rejected: dict[str, tuple[str, str]] = {}
        #: Entries given back after a handler failure (`redeliver`), due to come again.
        self._given_back: set[str] = set()
        #: Outcomes the application took whose acknowledgement Redis did not get yet
        #: (batched by `_send_acks`, or met an unreachable Redis).
        self._acks_owed: set[str] = set()
        self._acks_wanted = anyio.Event()
        #: Ends of checks not written yet, by request id: store_end_check.lua's arguments
        #: for each (`end_check`), carried by the next claim or sent by `_send_ends`.
        self._ends_owed: dict[str, list[str]] = {}
        self._ends_wanted = anyio.Event()
        #: Loop time at which the dispatcher's next claim is expected: the slot of the
        #: token it waits for (`claim_with_token`).
        self._next_claim = -math.inf
        self._last_ack = -math.inf  # loop time of the last `ack()`
        self._tracked = 0
        self._hint_due = 0.0  # server seconds
        self._hint_deadline = 0.0
        self._refreshed = -math.inf  # loop time of the last hints
        self._outages = {job: Outage(f"redis-{job}", store=name) for job in ("leases", "outcomes")}
        self._fingerprint: str | None = None  # the API key's, once the poller binds it
        self._epoch = ""  # the fleet's epoch when this store attached (store_epoch.lua)

    def __repr__(self) -> str:
        signed = ", secret='***'" if self._signer is not None else ""
        return (
            f"RedisStore({self._connection.url!r}, name={self.name!r}, "
            f"lease={self.lease:g}{signed})"
        )

    #: Tasks live in Redis, shared by the fleet: hints are hints, claims need a round trip,
    #: and there is nothing to snapshot (a new replica resumes them).
    capabilities: Final = StoreCapabilities(
        local=False, snapshot=False, redeliver=True, submit_sending=True, claim_with_token=True
    )

    def __len__(self) -> int:
        return self._tracked

    def __contains__(self, request_id: object) -> bool:
        return False  # not known without I/O: ask `get()`

    def snapshot(self) -> list[dict[str, Any]]:
        raise UsageError("a RedisStore keeps its tasks in Redis: there is nothing to snapshot")

    @property
    def connection(self) -> RedisConnection:
        return self._connection

    def _key(self, suffix: str) -> str:
        return self._prefix + suffix

    # -- clocks -------------------------------------------------------------------------

    def _to_server(self, loop_time: float) -> float:
        return loop_time + self._offset if loop_time != math.inf else math.inf

    def _to_loop(self, server_time: float) -> float:
        return server_time - self._offset

    async def _measure_offset(self, samples: int = 1) -> None:
        """Set the offset from the quickest of `samples` round trips to the server's clock.

        The server read its clock somewhere within the round trip, so the midpoint is off
        by at most half of it; a first call may also pay for connecting and loading the
        script, hence several samples when attaching.
        """
        best = math.inf
        for _ in range(samples):
            before = self._clock()
            # Not `client.time()`: coredis 6.9 loses TIME's sub-second part (see
            # RedisConnection.server_time).
            server = await self._connection.server_time(self._tasks)
            after = self._clock()
            if after - before < best:
                best = after - before
                self._offset = server - (before + after) / 2

    # -- lifecycle ----------------------------------------------------------------------

    async def bind_key(self, fingerprint: str) -> None:
        """Serve only the API key of this fingerprint (`DispatchClient.key_fingerprint`).

        The poller calls this before `attach`, which then binds the fleet name to the key
        or, if another key holds the name, refuses with `UsageError` and touches nothing.
        """
        self._fingerprint = fingerprint

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
            raise LifecycleError("this RedisStore already serves a Poller; give each its own")
        async with self._connection:
            self._sink, self._clock, self._lead = sink, clock, last_check_lead
            # Wakes the poller's consumer when the fleet becomes idle through another
            # replica (no outcome arrives here then).
            self._wake = wake
            try:
                if self._fingerprint is not None:
                    await self._connection.bind_key(self.name, self._fingerprint)
                await self._connection.bind_secret(
                    self.name, self._signer.fingerprint() if self._signer else None
                )
                await self._measure_offset(samples=3)
                epoch = await self._script(
                    "store_epoch.lua", [self._key("epoch")], [uuid.uuid4().hex]
                )
                self._epoch = _text(epoch[0])
                await self._connection.warn_if_evicting(self.name)
                await self._ensure_group()
                await self._refresh()
                async with anyio.create_task_group() as jobs:
                    jobs.start_soon(self._read_outcomes, name="async_dispatch.redis.outcomes")
                    jobs.start_soon(self._maintain, name="async_dispatch.redis.leases")
                    jobs.start_soon(self._send_acks, name="async_dispatch.redis.acks")
                    jobs.start_soon(self._send_ends, name="async_dispatch.redis.ends")
                    try:
                        yield
                    finally:
                        jobs.cancel_scope.cancel()
                await self._last_ends()
                await self._last_acks()
            finally:
                self._sink = self._wake = None
                self._held.clear()
                self._submitting.clear()
                self._holding.clear()
                self._lost.clear()
                self._given_back.clear()
                self._acks_owed.clear()
                self._rejected.clear()
                self._ends_owed.clear()

    async def _ensure_group(self) -> None:
        await self._script("store_group.lua", [self._stream], [GROUP])

    async def _script(self, filename: str, keys: list[str], args: list[Any]) -> list[Any]:
        return await self._connection.run_script(filename, keys, args)

    # -- tracking -----------------------------------------------------------------------

    def _add_args(self, task: TrackedTask) -> list[Any]:
        """store_add.lua's six arguments for `task`."""
        context = self._context_json(task)
        # repr(): every digit, and "inf" as the scripts expect; cheaper than a format.
        offset = self._offset
        return [
            task.request_id,
            context,
            repr(task.started + offset),
            repr(task.deadline + offset),
            repr(task.due + offset),  # inf stays inf
            # When its last check falls due: the script files each check by it.
            repr(task.deadline - self._lead + offset),
        ]

    @staticmethod
    def _context_json(task: TrackedTask) -> str:
        """The task's context as stored (JSON text, kept byte for byte: outcomes carry it
        as it is); `UsageError` if it is not JSON-serialisable."""
        try:
            return _json_text(task.context)
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"a fleet's task context must be JSON-serialisable: {exc} "
                f"(request id {task.request_id!r})"
            ) from exc

    def _add_keys(self) -> list[str]:
        return [
            self._tasks,
            self._last,
            self._due,
            self._deadlines,
            self._intents,
            self._intent_started,
            self._parked_data,
            self._parked,
            self._done,
            self._intent_sent,
        ]

    def _stored(self, task: TrackedTask, context: str) -> list[str]:
        """The trace context, spec and (with a fleet secret) record MAC of `task`, whose
        context is stored as `context` (`_add_args` made it), as store_add.lua's last
        arguments."""
        trace, spec = trace_text(task.trace), _spec_json(task)
        if self._signer is None:
            return [trace, spec, ""]
        return [trace, spec, self._signer.record(task.request_id, context, trace, spec)]

    async def add(self, task: TrackedTask) -> bool:
        args = self._add_args(task)
        reply = await self._script(
            "store_add.lua", self._add_keys(), [*args, "", *self._stored(task, args[1])]
        )
        if reply[0]:
            self._tracked += 1
            self._hint_due = min(self._hint_due, self._to_server(task.due))
            self._hint_deadline = min(self._hint_deadline, self._to_server(task.deadline))
        return bool(reply[0])

    async def add_many(self, tasks: Iterable[TrackedTask]) -> list[TrackedTask]:
        """Track `tasks`, `_ADD_BATCH` per script call (store_add_many.lua), each chunk
        sent as one MessagePack argument holding the records ready to store (packing them
        in Lua, and per-argument work on both sides, was most of the cost of tracking many
        ids), and the next chunk encoded while Redis runs the one before:
        `_ADD_IN_FLIGHT` calls at most are under way.

        Repeats of an id are dropped here, so chunks are independent of each other and
        may run in any order: the first task given with an id is the one tracked.
        """
        batch: list[TrackedTask] = []
        seen: set[str] = set()
        for task in tasks:
            if task.request_id not in seen:
                seen.add(task.request_id)
                batch.append(task)
        added: dict[int, list[TrackedTask]] = {}
        failures: list[BaseException] = []
        keys = [self._tasks, self._last, self._due, self._deadlines, self._done]
        in_flight = anyio.Semaphore(_ADD_IN_FLIGHT)

        async def send(index: int, chunk: list[TrackedTask], args: list[Any]) -> None:
            try:
                reply = await self._script("store_add_many.lua", keys, args)
            except Exception as exc:  # raised by add_many once the others are done
                failures.append(exc)
                return
            finally:
                in_flight.release()
            flags = _text(reply[0])
            new = [task for task, flag in zip(chunk, flags, strict=True) if flag == "1"]
            added[index] = new
            if new:
                self._tracked += len(new)
                due = min(task.due for task in new)
                deadline = min(task.deadline for task in new)
                self._hint_due = min(self._hint_due, self._to_server(due))
                self._hint_deadline = min(self._hint_deadline, self._to_server(deadline))

        async with anyio.create_task_group() as tg:
            for index, chunk in enumerate(_chunks(batch)):
                args = self._add_many_args(chunk)
                await in_flight.acquire()
                if failures:
                    in_flight.release()
                    break
                tg.start_soon(send, index, chunk, args)
        if failures:
            raise failures[0]
        return [task for index in sorted(added) for task in added[index]]

    def _add_many_args(self, chunk: list[TrackedTask]) -> list[Any]:
        """store_add_many.lua's argument for `chunk`: each task's id, its record as
        `task_start` would write it (with the fleet secret's MAC, if any), and its sets and
        scores, in one MessagePack array (`_msgpack`; the rules are store_add.lua's and
        lua/_task.lua's)."""
        offset, lead, inf, signer = self._offset, self._lead, math.inf, self._signer
        # `track_many` gives every id the same context and trace context: a record's
        # start is encoded once per chunk for them (unless the task has a spec, or the
        # record a MAC, which covers its id).
        heads: dict[tuple[int, int], bytes] = {}
        text, record_head, tail = _msgpack.text, _msgpack.record_head, _msgpack.tail
        items = [_msgpack.array_head(5 * len(chunk))]
        add = items.append
        for task in chunk:
            key = (id(task.context), id(task.trace))
            shared = task.spec is None and signer is None
            head = heads.get(key) if shared else None
            if head is None:
                context = self._context_json(task)
                trace = trace_text(task.trace) if task.trace else ""
                spec = _spec_json(task) if task.spec is not None else ""
                mac = signer.record(task.request_id, context, trace, spec) if signer else ""
                head = record_head(context.encode(), trace.encode(), spec.encode(), mac.encode())
                if shared:
                    heads[key] = head
            add(text(task.request_id.encode()))
            add(head)
            started, deadline = task.started + offset, task.deadline + offset
            last_check = task.deadline - lead + offset
            due = task.due
            if due == inf:
                add(tail(started, deadline, last_check, _msgpack.NO_CHECK, 0.0, deadline))
                continue
            due += offset
            # A check due at or after the last-check time is the last one; a routine one
            # is scored in deadlines by the last-check time (lua/_task.lua).
            if due >= last_check:
                add(tail(started, deadline, last_check, _msgpack.LAST_CHECK, due, deadline))
            else:
                add(tail(started, deadline, last_check, _msgpack.ROUTINE_CHECK, due, last_check))
        return [b"".join(items)]

    async def get(self, request_id: str) -> LeasedTask | None:
        if request_id in self._ends_owed:
            await self._pay_ends()  # its record as this replica last wrote it
        reply = await self._script("store_get.lua", [self._tasks], [request_id])
        if not reply[0]:
            return None
        try:
            return self._task(request_id, reply[1:])
        except IntegrityError as exc:
            await self._reject_record(request_id, None, exc)
            return None

    async def _reject_record(self, request_id: str, token: int | None, why: Exception) -> None:
        """End a task whose record fails the fleet secret's check: FAILED, without the
        context (it cannot be trusted), so the application hears of it, once."""
        logger.error(
            "task_record_integrity_failed",
            request_id=request_id,
            store=self.name,
            reason=str(why),
            hint="something without the fleet secret wrote this task's record in Redis: "
            "find who writes to the fleet's keys",
        )
        task = LeasedTask(request_id, started=0.0, deadline=0.0, context=None, lease=token or 0)
        error = FleetIntegrityError(
            f"task {request_id!r}: its record in fleet {self.name!r} failed the fleet "
            f"secret's check ({why}), so it is no longer tracked: check the task at the "
            "service, and find who writes to the fleet's keys"
        )
        outcome = make_outcome(task, OutcomeKind.FAILED, 0.0, error=error)
        await self.resolve(task, outcome, fenced=token is not None)

    def _task(self, request_id: str, f: Any) -> LeasedTask:
        """A task from [token, ctx, started, deadline, polls, errors, last_input, status,
        err, trace, spec, phase, MAC, phase MAC] as stored (an older script's reply, without
        the last ones, too).

        Raises:
            IntegrityError: With a fleet secret, the record's MAC does not hold.
        """
        if self._signer is not None:
            self._signer.check_record(
                request_id,
                _text(f[1]),
                _text(f[9]) if len(f) > 9 else "",
                _text(f[10]) if len(f) > 10 else "",
                _text(f[12]) if len(f) > 12 else "",
            )
            if len(f) > 11 and _text(f[11]) == "wait":
                self._signer.check_reading(
                    request_id, "ph", "wait", _text(f[13]) if len(f) > 13 else ""
                )
        task = LeasedTask(
            request_id,
            started=self._to_loop(float(_text(f[2]))),
            deadline=self._to_loop(float(_text(f[3]))),
            context=json.loads(_text(f[1]) or "null"),
            lease=int(_text(f[0]) or 0),
        )
        task.polls = int(_text(f[4]) or 0)
        task.errors = int(_text(f[5]) or 0)
        task.last_input = _text(f[6]) or None
        status = _text(f[7])
        if status:
            task.last_status = parse_status_payload(request_id, json.loads(status))
        err = _text(f[8])
        task.last_error = error_from_data(json.loads(err)) if err else None
        if len(f) > 9:
            task.trace = trace_of(_text(f[9]))
        if len(f) > 11:
            task.spec = TaskSpec.from_json(_text(f[10]))
            task.phase = _text(f[11])
        return task

    async def forget(self, request_id: str) -> bool:
        reply = await self._script(
            "store_forget.lua",
            [self._tasks, self._last, self._due, self._deadlines],
            [request_id],
        )
        self._held.pop(request_id, None)
        self._ends_owed.pop(request_id, None)
        return bool(reply[0])

    # -- checks -------------------------------------------------------------------------

    def next_due(self) -> float:
        return min(self._to_loop(self._hint_due), self._refreshed + REFRESH)

    def try_claim(self, now: float) -> TrackedTask | None:
        return None  # a claim is a round trip to Redis: see `claim()`

    async def claim(self, now: float) -> LeasedTask | None:
        keys = [self._last, self._due, self._deadlines, self._tasks]
        reply = await self._claim(keys, [_seconds(self.lease), self.consumer, "", ""])
        return await self._claimed(reply)

    def claims_tokens_of(self, limiter: Limiter) -> bool:
        """Whether `claim_with_token` can take `limiter`'s tokens: a `RedisTokenBucket`
        on the same Redis (the same connection, or one to the same URL) and, on a Redis
        Cluster, of the same name as this store (its key then shares the fleet's slot,
        which one script needs)."""
        if not isinstance(limiter, RedisTokenBucket):
            return False
        ours = self._connection
        if not ours.same_server(limiter.connection):
            return False
        return limiter.name == self.name or not (ours.cluster or limiter.connection.cluster)

    async def claim_with_token(self, now: float, limiter: Limiter) -> LeasedTask | None:
        """Claim the most urgent due check and reserve its token of `limiter` (a
        `RedisTokenBucket`: `claims_tokens_of`) in one script, then wait for the token's
        slot. Nothing due reserves nothing; the lease runs from the slot on."""
        assert isinstance(limiter, RedisTokenBucket)
        bucket_key, gcra = limiter._gcra_arguments()
        keys = [self._last, self._due, self._deadlines, self._tasks, bucket_key]
        reply = await self._claim(keys, [_seconds(self.lease), self.consumer, *gcra])
        task = await self._claimed(reply)
        if not reply[0]:
            return None  # nothing was due: no token was taken
        reserved = reservation(reply[_CLAIM_FIELDS:])
        if task is None:  # claimed, and ended FAILED (its record failed the secret's check)
            await limiter._refund(reserved[3])
            return None
        self._next_claim = self._clock() + reserved[0] / 1e6
        # The lease runs from the slot on (store_claim.lua).
        self._held[task.request_id] = (task.lease, self._next_claim + self.lease)
        if not await limiter._await_slot(*reserved):
            # A pause heard of while waiting covers the slot: a token after the pause.
            await limiter.acquire()
        return task

    async def _claim(self, keys: list[str], args: list[str]) -> list[Any]:
        """Run store_claim.lua, carrying the ends of checks this replica owes."""
        owed = self._take_ends()
        if not owed:
            return await self._script("store_claim.lua", keys, args)
        try:
            reply = await self._script(
                "store_claim.lua", keys, [*args, *(arg for end in owed.values() for arg in end)]
            )
        except BaseException:
            self._owe_again(owed)
            raise
        self._ends_paid(owed)
        return reply

    async def _claimed(self, reply: list[Any]) -> LeasedTask | None:
        """The task store_claim.lua claimed, or None; the hints of its reply noted."""
        server_now = float(_text(reply[1]))
        self._tracked = int(reply[2])
        self._refreshed = self._clock()
        if not reply[0]:
            next_due = _text(reply[3])
            self._hint_due = float(next_due) if next_due else math.inf
            return None
        # Something was due: more may be. The next claim round says.
        self._hint_due = server_now
        request_id, token = _text(reply[3]), int(reply[4])
        try:
            task = self._task(request_id, [token, *reply[5:_CLAIM_FIELDS]])
        except IntegrityError as exc:
            await self._reject_record(request_id, token, exc)
            return None
        task.due = math.inf
        self._held[request_id] = (token, self._clock() + self.lease)
        return task

    async def end_check(self, task: TrackedTask, end: CheckEnd) -> None:
        """Finish a claimed check: its end is written with this replica's next claim
        (store_claim.lua carries it), or on its own `_END_MAX_DELAY` after it at the
        latest (`_send_ends`): under load the end of a check costs no round trip of its
        own.

        Until then the claim stays this replica's, renewed with the others; should the
        replica die first, the lease runs out and the check is made again elsewhere (the
        same as a check whose end could not be written). `get()` from this replica sees
        the end at once; other replicas, once it is written.
        """
        due = self._to_server(end.due)
        status = end.status
        status_json = json.dumps(status_payload(status)) if status is not None else ""
        error_json = _error_json(end.error)
        macs = ["", "", ""]
        if self._signer is not None:
            rid, signer = task.request_id, self._signer
            macs = [
                signer.reading(rid, "st", status_json) if status_json else "",
                signer.reading(rid, "er", error_json) if error_json else "",
                # 'wait' makes the next claim resubmit the task: a side effect at the
                # service, so only a replica may set it.
                signer.reading(rid, "ph", "wait") if end.resubmit else "",
            ]
        self._ends_owed[task.request_id] = [
            task.request_id,
            _token(task),
            str(task.polls),
            str(end.errors),
            error_json,
            status_json,
            _seconds(due),
            "wait" if end.resubmit else "",
            *macs,
        ]
        self._ends_wanted.set()
        # This process's copy of the record, as the script will write it.
        task.due, task.errors, task.last_error = end.due, end.errors, end.error
        task.phase = "wait" if end.resubmit else ""
        if status is not None:
            task.last_status = status
        self._hint_due = min(self._hint_due, due)

    def _take_ends(self) -> dict[str, list[str]]:
        """The ends owed, `_END_BATCH` at most, no longer owed (`_owe_again` if their
        script fails)."""
        owed = self._ends_owed
        if len(owed) <= _END_BATCH:
            self._ends_owed = {}
            return owed
        taken = dict(list(owed.items())[:_END_BATCH])
        for request_id in taken:
            del owed[request_id]
        return taken

    def _owe_again(self, ends: dict[str, list[str]]) -> None:
        """Ends whose script failed: owed again, unless a newer end of the task is."""
        for request_id, end in ends.items():
            self._ends_owed.setdefault(request_id, end)
        self._ends_wanted.set()

    def _ends_paid(self, ends: dict[str, list[str]]) -> None:
        """Ends written: their claims are no longer this replica's to renew."""
        held = self._held
        for request_id, end in ends.items():
            mine = held.get(request_id)
            if mine is not None and str(mine[0]) == end[1]:  # not claimed again since
                del held[request_id]

    async def _pay_ends(self) -> None:
        """Write every end owed now (store_end_check.lua, `_END_BATCH` per call)."""
        while self._ends_owed:
            owed = self._take_ends()
            try:
                await self._script(
                    "store_end_check.lua",
                    [self._tasks, self._last, self._due],
                    [arg for end in owed.values() for arg in end],
                )
            except BaseException:
                self._owe_again(owed)
                raise
            self._ends_paid(owed)

    async def _send_ends(self) -> None:
        """Write the ends no claim carried in time (see `_END_DELAY`)."""
        backoff = 0.1
        while True:
            await self._ends_wanted.wait()
            self._ends_wanted = anyio.Event()
            first = self._clock()
            while self._ends_owed:
                wake = max(first + _END_DELAY, self._next_claim + _END_SLACK)
                wake = min(wake, first + _END_MAX_DELAY)
                if self._clock() >= wake:
                    break
                await anyio.sleep(wake - self._clock())
            try:
                await self._pay_ends()
                backoff = 0.1
            except CoordinationError:
                # Still owed; the leases of their claims run out if Redis stays away.
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _last_ends(self) -> None:
        """On detach, write the ends owed (briefly, shielded): else their checks would be
        made again once their leases ran out."""
        if not self._ends_owed:
            return
        with anyio.CancelScope(shield=True), contextlib.suppress(CoordinationError):
            with anyio.move_on_after(self._connection_timeout()):
                await self._pay_ends()

    # -- endings ------------------------------------------------------------------------

    def _signed(self, outcome: Outcome) -> tuple[str, str]:
        """`outcome` as an entry's text, and its MAC ('' without a fleet secret)."""
        text = encode_outcome(outcome)
        return text, self._signer.outcome(text) if self._signer is not None else ""

    async def resolve(self, task: TrackedTask, outcome: Outcome, *, fenced: bool) -> bool:
        if fenced:
            self._held.pop(task.request_id, None)
        text, mac = self._signed(outcome)
        reply = await self._script(
            "store_resolve.lua",
            [
                self._tasks,
                self._last,
                self._due,
                self._deadlines,
                self._done,
                self._stream,
            ],
            [
                task.request_id,
                "1" if fenced else "0",
                _token(task),
                text,
                str(self.finished_ttl),
                mac,
            ],
        )
        if reply[0]:
            self._held.pop(task.request_id, None)
            self._tracked = max(0, self._tracked - 1)
        return bool(reply[0])

    async def begin_resubmit(self, task: TrackedTask) -> bool:
        reply = await self._script(
            "store_begin_resubmit.lua", [self._tasks], [task.request_id, _token(task)]
        )
        if reply[0]:
            task.phase = "sending"  # the claim stays held (and renewed) while it is sent
        return bool(reply[0])

    async def resubmitted(self, task: TrackedTask, new: TrackedTask) -> bool:
        args = self._add_args(new)  # [rid, ctx, started, deadline, due, last-check time]
        trace, spec, mac = self._stored(new, args[1])
        reply = await self._script(
            "store_resubmitted.lua",
            [self._tasks, self._last, self._due, self._deadlines, self._done],
            [
                task.request_id,
                _token(task),
                str(self.finished_ttl),
                *args,
                spec,
                trace,
                mac,
            ],
        )
        self._held.pop(task.request_id, None)
        if reply[0]:
            self._hint_due = min(self._hint_due, self._to_server(new.due))
        return bool(reply[0])

    async def notify(self, task: TrackedTask, outcome: Outcome, input_key: str) -> None:
        text, mac = self._signed(outcome)
        await self._script(
            "store_notify.lua", [self._tasks, self._stream], [input_key, text, task.request_id, mac]
        )
        task.last_input = input_key

    async def reject(self, outcome: Outcome) -> None:
        await self._script("store_reject.lua", [self._stream], [*self._signed(outcome)])

    def next_deadline(self) -> float:
        return min(self._to_loop(self._hint_deadline), self._refreshed + REFRESH)

    async def expire(self, now: float) -> int:
        return await self._refresh()

    async def _refresh(self) -> int:
        """The periodic round of store_expire.lua: end what is due to end, read the hints."""
        reply = await self._script(
            "store_expire.lua",
            [
                self._deadlines,
                self._last,
                self._due,
                self._stream,
                self._intents,
                self._intent_started,
                self._done,
                self._tasks,
                self._parked_data,
                self._parked,
                self._intent_sent,
                self._key("rounds"),
            ],
            [
                _EXPIRE_BATCH,
                str(self.finished_ttl),
                _seconds(max(self.lease, _HOLD_AFTER_GAP)),
                _seconds(max(_GAP, self.lease / 3)),
            ],
        )
        ended = int(reply[0])
        self._tracked = int(reply[2])
        deadline, due = _text(reply[3]), _text(reply[4])
        self._hint_deadline = float(deadline) if deadline else math.inf
        self._hint_due = float(due) if due else math.inf
        self._refreshed = self._clock()
        if not self._tracked and not int(reply[5]) and not int(reply[6]) and self._wake:
            self._wake()  # the fleet may have become idle elsewhere: let `async for` look
        return ended

    async def ack(self, receipt: Any) -> None:
        """Acknowledge an outcome the application took, in a batch with others.

        A lone acknowledgement (none other owed, none in the last `_ACK_DELAY`: the
        application holds each outcome longer than that) is paid before this returns,
        so before the poller hands out the next outcome: a replica that stalls or dies
        then has only the outcome in its application's hands delivered again, not the
        one before it too. In a burst the others wait at most `_ACK_DELAY` (or go at
        once with a full batch), so a burst costs one round trip per `_ACK_BATCH`, and
        a replica that stalls in it has those taken in its last `_ACK_DELAY` delivered
        again as well. Until Redis has it the outcome stays held by this replica, so
        nobody else delivers it.
        """
        now = self._clock()
        lone = not self._acks_owed and now - self._last_ack >= _ACK_DELAY
        self._last_ack = now
        self._acks_owed.add(receipt)
        if len(self._acks_owed) >= _ACK_BATCH:
            await self._pay_acks()
        elif lone and not self._outages["outcomes"]:
            try:
                await self._pay_acks()
            except CoordinationError:
                self._acks_wanted.set()  # still owed: sent again a moment later
        else:
            self._acks_wanted.set()

    async def _send_acks(self) -> None:
        """Send the acknowledgements `ack()` queued, `_ACK_DELAY` after the first."""
        while True:
            await self._acks_wanted.wait()
            self._acks_wanted = anyio.Event()
            await anyio.sleep(_ACK_DELAY)
            # Still owed if Redis is unreachable: the outcome reader pays them once back.
            with contextlib.suppress(CoordinationError):
                await self._pay_acks()

    async def _pay_acks(self) -> None:
        """Acknowledge the outcomes owed, `_ACK_BATCH` per call."""
        owed = list(self._acks_owed)
        for start in range(0, len(owed), _ACK_BATCH):
            chunk = owed[start : start + _ACK_BATCH]
            await self._script("store_ack.lua", [self._stream], [GROUP, *chunk])
            self._acks_owed.difference_update(chunk)
            for receipt in chunk:
                self._holding.pop(receipt, None)
                self._lost.discard(receipt)
        if not self._acks_owed and self._wake is not None:
            self._wake()  # the stream may be empty now: let a finite `async for` look

    async def _last_acks(self) -> None:
        """On detach, send what is owed (briefly, shielded): else outcomes the
        application took would be delivered again after `outcome_idle`."""
        if not self._acks_owed:
            return
        with anyio.CancelScope(shield=True), contextlib.suppress(CoordinationError):
            with anyio.move_on_after(self._connection_timeout()):
                await self._pay_acks()

    # -- submits and early webhooks -----------------------------------------------------

    async def begin_submit(self) -> str:
        ticket = uuid.uuid4().hex
        await self._script(
            "store_begin_submit.lua",
            [self._intents, self._intent_started],
            [ticket, _seconds(self.submit_timeout + self.lease)],
        )
        self._submitting.add(ticket)
        return ticket

    async def submit_sending(self, ticket: Any, context: Any, prompt: str) -> None:
        """The submit of `ticket` goes on the wire now: keep what its SUBMIT_UNCERTAIN
        would need (store_send_intent.lua), should this replica stop before tracking it.

        That outcome carries `context` and says when the submit was sent, by which
        replica, and which prompt (its SHA-256 and length: a prompt may hold secrets,
        and none is written to Redis). No request id is known then, so none is made up.

        Raises:
            UsageError: `context` is not JSON (a fleet's task context must be), refused
                here, before the task exists, rather than after the service created it.
        """
        try:
            context_json = json.dumps(context, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"a fleet's task context must be JSON-serialisable: {exc} (refused before "
                "the submit was sent)"
            ) from exc
        sent = datetime.fromtimestamp(self._to_server(self._clock()), tz=timezone.utc)
        digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        # Only what is known: the process that sent it stopped renewing its intent.
        message = (
            f"a submit sent at {sent:%Y-%m-%d %H:%M:%S} UTC by {self.consumer} (prompt "
            f"sha256 {digest}, {len(prompt)} characters) has no recorded answer: the "
            "process that sent it stopped renewing it before tracking its task (it "
            "stopped, stalled or lost Redis). The task may exist at the service without "
            "being tracked: look for it there before resubmitting"
        )
        error = json.dumps({"type": "SubmitUncertainError", "message": message})
        members = f'"error":{error},"context":{context_json}'
        if self._signer is not None:
            # Signed over the values (the outcome store_expire.lua builds is parsed before
            # it is checked), bound to nothing else: no request id exists yet.
            mac = self._signer.intent(json.loads("{" + members + "}"))
            members += f',"mac":"{mac}"'
        await self._script(
            "store_send_intent.lua",
            [self._intents, self._intent_started, self._intent_sent],
            [
                str(ticket),
                members,
                _seconds(self.submit_timeout + self.lease),
            ],
        )

    async def end_submit(self, ticket: Any, task: TrackedTask | None) -> TaskStatus | None:
        if task is None:
            await self._script(
                "store_add.lua", self._add_keys(), ["", "", "", "", "", "", str(ticket)]
            )
            self._submitting.discard(ticket)
            return None
        args = self._add_args(task)
        reply = await self._script(
            "store_add.lua", self._add_keys(), [*args, str(ticket), *self._stored(task, args[1])]
        )
        self._submitting.discard(ticket)
        if reply[0]:
            self._tracked += 1
            self._hint_due = min(self._hint_due, self._to_server(task.due))
            self._hint_deadline = min(self._hint_deadline, self._to_server(task.deadline))
        parked = _text(reply[1])
        if parked and self._signer is not None:
            mac, parked = parked[:MAC_CHARS], parked[MAC_CHARS:]
            try:
                self._signer.check_reading(task.request_id, "parked", parked, mac)
            except IntegrityError:
                logger.error(
                    "parked_webhook_integrity_failed",
                    request_id=task.request_id,
                    store=self.name,
                    hint="a webhook reading held in Redis was not written by a replica: "
                    "ignored (the task is checked as usual); find who writes to the "
                    "fleet's keys",
                )
                return None
        return parse_status_payload(task.request_id, json.loads(parked)) if parked else None

    async def park(self, request_id: str, status: TaskStatus) -> bool:
        payload = json.dumps(status_payload(status))
        if self._signer is not None:
            # The MAC first (fixed length): a parked reading becomes the task's first one.
            payload = self._signer.reading(request_id, "parked", payload) + payload
        reply = await self._script(
            "store_park.lua",
            [self._intents, self._parked_data, self._parked],
            [
                request_id,
                payload,
                str(self.park_ttl),
                str(self.max_parked),
            ],
        )
        return bool(reply[0])

    async def finished(self, request_id: str) -> bool:
        with self._connection.translate_errors("reading a finished marker"):
            return await self._connection.client.zscore(self._done, request_id) is not None

    async def idle(self) -> bool:
        """Whether the fleet has nothing left (the poller's ``async for`` then ends).

        Raises:
            FleetStateLost: The fleet's epoch marker is gone or another: Redis lost the
                state this replica attached to, so "nothing left" would be a lie.
        """
        if self._acks_owed:
            await self._pay_acks()  # XLEN below counts only what nobody took
        reply = await self._script(
            "store_idle.lua",
            [self._deadlines, self._intents, self._stream, self._key("epoch")],
            [self._epoch],
        )
        self._tracked = int(reply[0])
        if not int(reply[3]):
            logger.error("fleet_state_lost", store=self.name)
            raise FleetStateLost(
                f"Redis at {self._connection.url} lost the state of fleet {self.name!r} "
                "(its epoch marker is gone: a restart without persistence, a FLUSHDB, or "
                "eviction): the tasks tracked before are no longer checked; track them "
                "again or resubmit, and give Redis persistence and maxmemory-policy "
                "noeviction"
            )
        return not any(int(n) for n in reply[:3])

    # -- background jobs ----------------------------------------------------------------

    def _failed(self, job: str, exc: CoordinationError) -> None:
        self._outages[job].failed(exc)

    def _recovered(self, job: str) -> None:
        self._outages[job].recovered()

    async def _maintain(self) -> None:
        """Renew the leases of the checks this replica runs and the intents of its
        submits in flight; re-measure the clock offset."""
        backoff = 0.1
        last_sync = self._clock()
        while True:
            try:
                # Only leases with less than `_RENEW_AT` of them left: most checks end
                # well before, and cost no renewal.
                asked = self._clock()
                held = {
                    request_id: token
                    for request_id, (token, until) in self._held.items()
                    if until - asked < self.lease * _RENEW_AT
                }
                if held:
                    args: list[Any] = [_seconds(self.lease)]
                    for request_id, token in held.items():
                        args += [request_id, str(token)]
                    lost = set(
                        map(
                            _text,
                            await self._script(
                                "store_renew.lua", [self._last, self._due, self._tasks], args
                            ),
                        )
                    )
                    for request_id, token in held.items():
                        mine = self._held.get(request_id)
                        if mine is None or mine[0] != token:
                            continue  # ended, or claimed again meanwhile under a new token
                        if request_id in lost:
                            del self._held[request_id]
                        else:
                            self._held[request_id] = (token, asked + self.lease)
                if self._submitting:
                    # A live replica's submits are its own to finish: their intents never
                    # expire while it renews them, however long they queue for a token.
                    await self._script(
                        "store_hold_intents.lua",
                        [self._intents],
                        [_seconds(self.lease), *self._submitting],
                    )
                if self._clock() - last_sync >= self.resync:
                    await self._measure_offset()
                    last_sync = self._clock()
                self._recovered("leases")
                backoff = 0.1
                await anyio.sleep(self.lease / 3)
            except CoordinationError as exc:
                self._failed("leases", exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _read_outcomes(self) -> None:
        """Read the outcome stream as this replica's consumer, keep what it holds, and
        take over a dead one's."""
        backoff = 0.1
        # Renewals and takeovers every quarter of the idle limit at most, so a read never
        # blocks longer than half of that: the outcomes this replica holds stay its own.
        takeover_every = min(self.outcome_idle / 4, 5.0)
        block_ms = max(
            1, min(500, int(self._connection_timeout() * 500), int(takeover_every * 500))
        )
        next_takeover = self._clock()
        client_error = False
        while True:
            try:
                if client_error:
                    await self._ensure_group()  # Redis may have restarted without it
                    client_error = False
                if self._acks_owed:
                    await self._pay_acks()
                if self._clock() >= next_takeover:
                    await self._keep_holding()
                    if self._room():
                        await self._take_over()
                    next_takeover = self._clock() + takeover_every
                if not self._room():
                    # The read-ahead bound: what this replica's application has not
                    # taken yet is enough; the rest stays in Redis for the others.
                    await anyio.sleep(_FULL_WAIT)
                    continue
                asked = self._clock()
                with self._connection.translate_errors("reading outcomes"):
                    reply = await self._connection.client.xreadgroup(
                        GROUP,
                        self.consumer,
                        streams={self._stream: ">"},
                        count=self._room(),
                        block=block_ms,
                    )
                for entries in (reply or {}).values():
                    for entry in entries:
                        fields = entry.field_values
                        self._hand(
                            _text(entry.identifier),
                            _text(fields.get(b"o")),
                            1,
                            asked,
                            _text(fields.get(b"m")),
                            _text(fields.get(b"p")),
                        )
                await self._dead_letter_rejected()
                self._recovered("outcomes")
                backoff = 0.1
            except CoordinationError as exc:
                self._failed("outcomes", exc)
                client_error = True
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _room(self) -> int:
        """How many more outcomes this replica may read (`read_ahead`), per read at most."""
        return max(0, min(_READ_BATCH, self.read_ahead - len(self._holding)))

    def _connection_timeout(self) -> float:
        return float(getattr(self._connection, "_timeout", 2.0))

    async def _take_over(self) -> None:
        asked = self._clock()
        reply = await self._script(
            "store_takeover.lua",
            [self._stream],
            [GROUP, self.consumer, str(int(self.outcome_idle * 1000)), str(self._room())],
        )
        if int(reply[0]):
            logger.info("outcome_readers_forgotten", store=self.name, count=int(reply[0]))
        for i in range(1, len(reply), 5):
            entry_id, payload = _text(reply[i]), _text(reply[i + 1])
            mac, proof, count = _text(reply[i + 2]), _text(reply[i + 3]), int(reply[i + 4])
            if entry_id in self._holding:
                # Ours, with the application already (renewed late: a stall), and ours
                # again now.
                self._holding[entry_id] = asked
                self._lost.discard(entry_id)
                continue
            if entry_id in self._given_back:
                # This replica gave it back after a handler failure: not a dead replica's.
                self._given_back.discard(entry_id)
                logger.info("outcome_redelivered", entry=entry_id, deliveries=count)
            else:
                logger.warning("outcome_taken_over", entry=entry_id, deliveries=count)
            handed = self._hand(entry_id, payload, count, asked, mac, proof)
            if not handed and count >= UNREADABLE_DELIVERIES and entry_id not in self._rejected:
                await self._dead_letter(entry_id, payload, f"unreadable after {count} deliveries")
        await self._dead_letter_rejected()

    async def _dead_letter_rejected(self) -> None:
        """Move the entries that failed the fleet secret's check to the dead letters."""
        while self._rejected:
            entry_id, (payload, why) = next(iter(self._rejected.items()))
            await self._dead_letter(
                entry_id,
                payload,
                f"failed the fleet secret's check: {why}",
                hint="something without the fleet secret wrote this outcome: inspect it "
                "with XRANGE and find who writes to the fleet's keys",
            )
            del self._rejected[entry_id]

    async def _dead_letter(
        self,
        entry_id: str,
        payload: str,
        reason: str,
        hint: str = "no replica could read this outcome: inspect it with XRANGE",
    ) -> None:
        reply = await self._script(
            "store_dead_letter.lua",
            [self._stream, self._dead_letters],
            [GROUP, entry_id, payload, reason, str(_DEAD_LETTERS_KEPT)],
        )
        if int(reply[0]):
            logger.error(
                "outcome_dead_lettered",
                entry=entry_id,
                store=self.name,
                stream=self._dead_letters,
                reason=reason,
                hint=hint,
            )

    def _retry_delay(self) -> float:
        """Seconds before an outcome given back (`redeliver`) may be taken again: one
        takeover period, so the wait is at most two of them whoever takes it."""
        return min(self.outcome_idle / 4, 5.0)

    async def redeliver(self, receipt: Any, reason: str) -> bool:
        """The application's handler failed on the outcome of `receipt`: deliver it again
        (to any replica, after `_retry_delay`), or dead-letter it once it has been
        delivered `MAX_DELIVERIES` times. True if it went to the dead-letter stream.

        The outcome stops being renewed here first: if Redis is unreachable now, it is
        taken over after `outcome_idle` like a dead replica's (never lost, never held for
        ever). `reason` goes into the dead letter: keep secrets out of it.
        """
        self._holding.pop(receipt, None)
        idle_ms = max(0, int((self.outcome_idle - self._retry_delay()) * 1000))
        reply = await self._script(
            "store_release.lua",
            [self._stream, self._dead_letters],
            [
                GROUP,
                self.consumer,
                receipt,
                str(MAX_DELIVERIES),
                reason,
                str(idle_ms),
                str(_DEAD_LETTERS_KEPT),
            ],
        )
        if int(reply[0]) == 2:
            logger.error(
                "outcome_dead_lettered",
                entry=receipt,
                store=self.name,
                stream=self._dead_letters,
                hint=f"{reason}: inspect it with XRANGE",
            )
            return True
        if int(reply[0]) == 1:
            self._given_back.add(receipt)
        return False

    async def _keep_holding(self) -> None:
        """Renew this replica's claim on the outcomes its poller holds (store_hold.lua).

        An entry the script did not keep was taken over by another replica while this
        one stalled: it is noted lost, so `holds` drops it from the poller's queue.
        """
        holding = list(self._holding)
        for start in range(0, len(holding), _HOLD_BATCH):
            batch = holding[start : start + _HOLD_BATCH]
            asked = self._clock()
            kept = set(
                map(
                    _text,
                    await self._script(
                        "store_hold.lua", [self._stream], [GROUP, self.consumer, *batch]
                    ),
                )
            )
            for entry_id in batch:
                if entry_id not in self._holding:
                    continue  # acknowledged meanwhile
                if entry_id in kept:
                    self._holding[entry_id] = asked
                else:
                    self._lost.add(entry_id)

    async def holds(self, receipt: Any) -> bool:
        """Whether the outcome of `receipt` is still this replica's to hand over.

        Another replica takes an outcome over once it went `outcome_idle` seconds without
        this one renewing it, which a live replica does every quarter of that: so while
        the last renewal is younger than half of it, nobody can have taken it, and the
        answer costs no I/O. Older (this replica stalled: SIGSTOP, a long pause, a
        blocked loop), Redis is asked and the claim renewed if it is still ours; if not,
        the outcome is dropped here: the replica that took it delivers it.
        """
        since = self._holding.get(receipt)
        if receipt in self._lost:
            since = None
        elif since is None or self._clock() - since < self.outcome_idle / 2:
            return True  # fresh (or not a stream entry this store tracks: deliver it)
        asked = self._clock()
        kept = await self._script("store_hold.lua", [self._stream], [GROUP, self.consumer, receipt])
        if receipt in map(_text, kept):
            self._holding[receipt] = asked
            self._lost.discard(receipt)
            return True
        self._holding.pop(receipt, None)
        self._lost.discard(receipt)
        logger.info("outcome_taken_over_elsewhere", entry=receipt, store=self.name)
        return False

    def _hand(
        self,
        entry_id: str,
        payload: str,
        deliveries: int,
        asked: float,
        mac: str = "",
        proof: str = "",
    ) -> bool:
        """Hand an entry to the poller; False if this version cannot read it, or (with a
        fleet secret) if it fails the check, which puts it in `_rejected`.

        An unreadable entry stays pending: after `outcome_idle` another replica (perhaps
        a newer version, during a rolling deploy) takes it over and tries. Once it has
        been delivered `UNREADABLE_DELIVERIES` times it goes to the dead-letter stream.
        """
        sink = self._sink
        assert sink is not None
        if self._signer is not None:
            try:
                self._signer.check_entry(payload, mac, proof)
            except (IntegrityError, ValueError, TypeError, AttributeError) as exc:
                logger.error(
                    "outcome_integrity_failed",
                    entry=entry_id,
                    store=self.name,
                    reason=str(exc)[:200],
                    hint="not delivered: moved to the dead-letter stream",
                )
                self._rejected[entry_id] = (payload, str(exc)[:200])
                return False
        try:
            outcome = decode_outcome(payload, deliveries)
        except (ValueError, KeyError, TypeError, DispatchError) as exc:
            logger.warning("outcome_unreadable", entry=entry_id, error=repr(exc)[:200])
            return False
        self._holding[entry_id] = asked
        sink(outcome, entry_id)
        return True
