"""What a fleet is doing, read from Redis: the data behind ``async-dispatch fleet``.

`read_fleet()` reads one fleet ``name``'s keys (see `RedisStore` and `RedisTokenBucket` for
the layout) in one read-only Lua script, so every figure of a `FleetView` comes from the
same instant of the Redis server's clock:

- tasks: tracked (the deadlines zset), due now, last checks planned, the next check and
  the next deadline;
- claims: checks leased right now and by which replica (the claim script records the
  claimer's consumer name as ``by``), and leases that ran out without being renewed (a
  replica died or hangs: those checks are due again for the others);
- outcomes: in the stream and not yet acknowledged (XLEN), and those read by a replica
  and not yet acknowledged, per replica (the XPENDING summary);
- submits in flight (intents), and the age of the oldest one; early webhooks parked;
- the budget: how far the bucket's GCRA schedule (its ``tat``) runs ahead of the server's
  clock, which is the tokens in use divided by the rate, and the 429 pause in force.
  During a pause the lead is measured from the pause's end (the bucket restarts there
  holding ``burst - 1`` tokens' worth of lead, by `RedisTokenBucket`'s rule), so a pause
  is not counted twice.

Finding the claims means reading the hash of each entry of the check sets: at most
`limit` entries are inspected (soonest first), and the view says when that cut it short.

An idle fleet and a name that holds nothing read the same figures (all zeros), so the view
also says whether any of the fleet's keys exist (`FleetView.found`): a mistyped name is
then told apart from a quiet fleet. `fleet_names()` lists the names that do exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs
import coredis

from .._errors import UsageError
from ._connection import KEY_PREFIX, RedisConnection
from ._task_store import GROUP

__all__ = ["INSPECT_LIMIT", "FleetView", "fleet_names", "read_fleet"]

#: The most check entries one read inspects for claims (one HMGET each, inside Redis).
INSPECT_LIMIT: Final = 10_000
#: What `fleet_names()` looks at: this many SCAN calls of this many keys each, at most.
_SCAN_CALLS: Final = 20
_SCAN_COUNT: Final = 1000


def _counts(flat: Any) -> dict[str, int]:
    pairs = list(flat) if isinstance(flat, list) else []
    return {_text(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _float(value: object) -> float | None:
    text = _text(value)
    return float(text) if text else None


@attrs.frozen(kw_only=True)
class FleetView:
    """One snapshot of a fleet's state; times are seconds relative to `server_time`."""

    name: str
    #: The Redis server's clock when the snapshot was taken (seconds since the epoch).
    server_time: float
    tracked: int
    due_now: int
    last_checks: int
    #: Seconds until the next planned check (negative: overdue), None when none is planned.
    next_check_in: float | None
    next_deadline_in: float | None
    #: Checks claimed by a replica whose lease is still running, and by whom.
    leased: int
    leases_by_replica: Mapping[str, int]
    #: Claims whose lease ran out unrenewed: their replica died or hangs.
    stale_leases: int
    inspected: int
    #: True when more check entries exist than were inspected for claims.
    truncated: bool
    #: Outcomes in the stream not yet acknowledged by the application (any replica).
    outcomes_waiting: int
    #: Of those, the ones a replica has read and not acknowledged yet, per replica.
    outcomes_pending: int
    outcomes_pending_by_replica: Mapping[str, int]
    #: Outcomes moved to the fleet's dead-letter stream (``deadletter``): ones no replica
    #: could read, and ones the application's handler failed on at every delivery.
    #: Nothing removes them but an operator (XRANGE to read, DEL once handled).
    dead_letters: int = 0
    submits_in_flight: int
    oldest_submit_age: float | None
    parked_webhooks: int
    #: How far the bucket's schedule runs ahead of the server clock (of the pause's end,
    #: during a pause): the tokens in use divided by the rate. 0.0: the bucket is full.
    schedule_ahead: float
    #: Seconds left of the fleet's 429 pause (0.0 when none).
    paused_for: float
    #: The bucket's rate, when the reader was told it: turns `schedule_ahead` into tokens.
    rate: float | None = None
    #: False when none of the fleet's keys exists: nothing ever ran under this name (or
    #: everything of it is gone), which an all-zero view alone cannot tell from idleness.
    #: A store's outcome stream stays once created, so a fleet that ran stays found.
    found: bool = True
    #: True when the fleet signs its outcomes with a fleet secret (`RedisStore(secret=)`),
    #: False when its replicas run without one, None when no replica has said which (none
    #: attached yet, or one of a version that predates the binding).
    signed: bool | None = None

    @property
    def tokens_in_use(self) -> float | None:
        """Tokens reserved ahead of now (`schedule_ahead` times the rate), if it is known."""
        return None if self.rate is None else self.schedule_ahead * self.rate

    @property
    def replicas(self) -> list[str]:
        """Every replica that holds a lease or an unacknowledged outcome, sorted."""
        return sorted(set(self.leases_by_replica) | set(self.outcomes_pending_by_replica))

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: what ``async-dispatch fleet --json`` prints."""
        return {
            "name": self.name,
            "found": self.found,
            "signed": self.signed,
            "server_time": round(self.server_time, 6),
            "tasks": {
                "tracked": self.tracked,
                "due_now": self.due_now,
                "last_checks": self.last_checks,
                "next_check_in": _rounded(self.next_check_in),
                "next_deadline_in": _rounded(self.next_deadline_in),
            },
            "leases": {
                "leased": self.leased,
                "by_replica": dict(sorted(self.leases_by_replica.items())),
                "stale": self.stale_leases,
                "inspected": self.inspected,
                "truncated": self.truncated,
            },
            "outcomes": {
                "waiting": self.outcomes_waiting,
                "pending": self.outcomes_pending,
                "pending_by_replica": dict(sorted(self.outcomes_pending_by_replica.items())),
                "dead_letters": self.dead_letters,
            },
            "submits_in_flight": self.submits_in_flight,
            "oldest_submit_age": _rounded(self.oldest_submit_age),
            "parked_webhooks": self.parked_webhooks,
            "budget": {
                "schedule_ahead": round(self.schedule_ahead, 6),
                "rate": self.rate,
                "tokens_in_use": _rounded(self.tokens_in_use),
                "paused_for": round(self.paused_for, 6),
            },
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


async def read_fleet(
    connection: RedisConnection,
    name: str,
    *,
    rate: float | None = None,
    limit: int = INSPECT_LIMIT,
) -> FleetView:
    """Read fleet `name`'s state from Redis, in one round trip that writes nothing (and
    one for the dead letters and the secret binding, which need no common instant with
    the rest).

    Args:
        connection: An entered `RedisConnection`.
        name: The fleet's name, as given to `RedisStore` and `RedisTokenBucket`.
        rate: The bucket's rate, if known: the view then counts the tokens in use.
        limit: The most check entries to inspect for claims.

    Raises:
        CoordinationError: Redis could not be reached or failed.
    """
    if not isinstance(name, str) or not name or "{" in name or "}" in name:
        raise UsageError(f"name must be a non-empty str without braces, got {name!r}")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise UsageError(f"rate must be a finite number > 0, got {rate!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UsageError(f"limit must be an int >= 0, got {limit!r}")

    def key(suffix: str) -> str:
        return RedisConnection.key(name, suffix)

    reply = await connection.run_script(
        "fleet_view.lua",
        [
            key("deadlines"),
            key("last"),
            key("due"),
            key("outcomes"),
            key("intents"),
            key("intent_started"),
            key("parked"),
            key("bucket"),
            key("tasks"),
        ],
        [GROUP, limit],
    )
    (
        stamp,
        tracked,
        due_now,
        last_checks,
        next_due,
        next_deadline,
        inspected,
        truncated,
        leased,
        stale,
        claimers,
        outcomes,
        pending,
        consumers,
        intents,
        oldest,
        parked,
        now_us,
        tat_us,
        paused_until_us,
        found,
    ) = reply
    with connection.translate_errors("reading the dead letters and the secret binding"):
        async with connection.client.pipeline(transaction=False) as both:
            counted = both.xlen(key("deadletter"))
            bound = both.get(key("integrity"))  # `RedisConnection.bind_secret`
        dead_letters, binding = await counted, _text(await bound)
    now = float(_text(stamp))
    now_micro = float(_text(now_us))
    tat = _float(tat_us)
    paused_until = _float(paused_until_us)
    next_check = _float(next_due)
    deadline = _float(next_deadline)
    started = _float(oldest)
    # The fleet may send from now, or from the end of a pause in force: the schedule's
    # lead over that instant is what the budget has spoken for.
    sendable = max(now_micro, paused_until or 0.0)
    return FleetView(
        name=name,
        server_time=now,
        tracked=_int(tracked),
        due_now=_int(due_now),
        last_checks=_int(last_checks),
        next_check_in=None if next_check is None else next_check - now,
        next_deadline_in=None if deadline is None else deadline - now,
        leased=_int(leased),
        leases_by_replica=_counts(claimers),
        stale_leases=_int(stale),
        inspected=_int(inspected),
        truncated=bool(_int(truncated)),
        outcomes_waiting=_int(outcomes),
        outcomes_pending=_int(pending),
        outcomes_pending_by_replica=_counts(consumers),
        dead_letters=_int(dead_letters),
        submits_in_flight=_int(intents),
        oldest_submit_age=None if started is None else max(0.0, now - started),
        parked_webhooks=_int(parked),
        schedule_ahead=max(0.0, (tat - sendable) / 1e6) if tat is not None else 0.0,
        paused_for=max(0.0, (sendable - now_micro) / 1e6),
        rate=rate,
        found=_int(found) > 0,
        signed=None if not binding else binding != "unsigned",
    )


async def fleet_names(connection: RedisConnection, *, limit: int = 10) -> list[str]:
    """Up to `limit` fleet names that hold keys on this Redis, sorted: to suggest one when
    a name holds nothing.

    A bounded SCAN (`_SCAN_CALLS` calls of `_SCAN_COUNT` keys at most per node, never a
    ``KEYS``): on a large database it may miss names, so the list is a hint, not an
    inventory. On a Redis Cluster every primary is scanned, each within that bound: SCAN
    walks the keys of the one node it is sent to, and a fleet's keys live on the node that
    owns its slot; the names are then the first `limit` of all the nodes', sorted.

    Raises:
        CoordinationError: Redis could not be reached or failed.
    """
    names: set[str] = set()
    with connection.translate_errors("listing fleets"):
        client = connection.client
        if isinstance(client, coredis.RedisCluster):
            for node in client.primaries:
                found: set[str] = set()
                async with node:
                    await _scan_names(node, found, limit)
                names |= found
        else:
            await _scan_names(client, names, limit)
    return sorted(names)[:limit]


async def _scan_names(node: coredis.Redis[bytes], names: set[str], limit: int) -> None:
    """Add to `names` the fleet names of the keys `node` holds, until it has `limit`."""
    pattern = RedisConnection.key("*", "*")
    start = len(f"{KEY_PREFIX}:{{")  # where the name begins, after its opening brace
    cursor = 0
    for _ in range(_SCAN_CALLS):
        cursor, keys = await node.scan(cursor=cursor, match=pattern, count=_SCAN_COUNT)
        for key in keys:
            text = _text(key)
            end = text.find("}:", start)
            if end > start:
                names.add(text[start:end])
        if cursor == 0 or len(names) >= limit:
            return


def _int(value: object) -> int:
    return int(_text(value) or 0) if not isinstance(value, int) else value
