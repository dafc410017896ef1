"""A fleet secret against a writer to Redis (issue #20 item 17), on a real redis-server.

Without a secret, Redis is inside the fleet's trust boundary: an XADD of ``kind: success``
is delivered as SUCCESS (the first case shows it, so the others are known to test
something). With `RedisStore(secret=...)`, each thing a writer without the secret can
do is tried here the way such a writer would: add an outcome, copy a genuine entry's MAC
onto other text, change a task's context or last reading in its record, forge a submit
intent's SUBMIT_UNCERTAIN. Each time the forgery is not delivered, and says so
(dead-letter stream, an error log, or a FAILED outcome that names the check); genuine
outcomes of the same fleet still arrive. The whole contract suite also runs on a signed
store (`tests/test_store_contract.py`, store "signed").
"""

from __future__ import annotations

import json
from typing import Any, Final

import anyio
import attrs
import pytest

from _logs import capture_logs
from async_dispatch import (
    CheckEnd,
    Outcome,
    OutcomeKind,
    Poller,
    TrackedTask,
    UsageError,
    make_outcome,
)
from async_dispatch._wire import parse_status_payload
from async_dispatch.redis import FleetIntegrityError, RedisConnection, RedisStore
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations
from redis_support import delete_keys

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SECRET = "integrity-suite-fleet-secret-0123456789"

# What a writer to Redis without the secret runs: it can read and rewrite any record.
_REWRITE_RECORD = """
local record = cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1]))
record[ARGV[2]] = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(record))
return 1
"""


def _success(request_id: str, context: Any = None) -> str:
    """An outcome entry's text as a forger would write it."""
    status = {"requestId": request_id, "status": "success", "response": {"text": "forged"}}
    return json.dumps(
        {"request_id": request_id, "kind": "success", "status": status, "context": context}
    )


class Fleet:
    """One `RedisStore` attached to a list, with a writer's access to its keys beside it."""

    def __init__(self, url: str, name: str, secret: str | None) -> None:
        self.name = name
        self.connection = RedisConnection(url)
        self.store = RedisStore(
            self.connection, name=name, lease=1.0, outcome_idle=0.5, secret=secret
        )
        self.received: list[Outcome] = []

    def key(self, suffix: str) -> str:
        return RedisConnection.key(self.name, suffix)

    async def forge(self, **fields: str) -> None:
        await self.connection.client.xadd(self.key("outcomes"), dict(fields))

    async def rewrite(self, request_id: str, field: str, value: str) -> None:
        await self.connection.client.eval(
            _REWRITE_RECORD, keys=[self.key("tasks")], args=[request_id, field, value]
        )

    async def entries(self, suffix: str) -> list[dict[str, str]]:
        out = []
        for entry in await self.connection.client.xrange(self.key(suffix)):
            out.append({_text(k): _text(v) for k, v in entry.field_values.items()})
        return out

    async def wait_for(self, n: int, seconds: float = 5.0) -> list[Outcome]:
        with anyio.fail_after(seconds):
            while len(self.received) < n:  # noqa: ASYNC110 - the sink is a plain callable
                await anyio.sleep(0.02)
        return self.received[:n]

    async def settle(self) -> list[Outcome]:
        await anyio.sleep(0.6)
        return list(self.received)

    def attached(self) -> Any:
        def sink(outcome: Outcome, receipt: Any) -> None:
            self.received.append(outcome)

        return self.store.attach(sink, anyio.current_time, lambda: None, last_check_lead=0.5)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _logged(logs: list[dict[str, Any]], event: str) -> bool:
    return any(e.get("event") == event for e in logs)


def _task(request_id: str, seconds: float = 30.0, context: Any = None) -> TrackedTask:
    now = anyio.current_time()
    task = TrackedTask(request_id, started=now, deadline=now + seconds, context=context)
    task.due = now
    return task


async def test_without_a_secret_a_forged_success_is_delivered(
    redis_url: str, redis_name: str
) -> None:
    """The trust boundary the README states: what the secret is for."""
    fleet = Fleet(redis_url, redis_name, secret=None)
    async with fleet.connection, fleet.attached():
        await fleet.forge(o=_success("req_forged"))
        (outcome,) = await fleet.wait_for(1)
    assert (outcome.request_id, outcome.kind) == ("req_forged", OutcomeKind.SUCCESS)


async def test_a_forged_or_altered_entry_is_dead_lettered_and_genuine_ones_arrive(
    redis_url: str, redis_name: str
) -> None:
    fleet = Fleet(redis_url, redis_name, secret=SECRET)
    async with fleet.connection, fleet.attached():
        store = fleet.store
        assert await store.add(_task("req_real", context={"user": 1}))
        with capture_logs() as logs:
            await fleet.forge(o=_success("req_forged"))  # no MAC at all
            task = await store.claim(anyio.current_time())
            assert task is not None
            assert task.context == {"user": 1}
            outcome = make_outcome(task, OutcomeKind.SUCCESS, anyio.current_time())
            assert await store.resolve(task, outcome, fenced=True)
            (genuine,) = await fleet.wait_for(1)
            # A genuine entry's MAC on other text: the context of another user.
            mac = (await fleet.entries("outcomes"))[-1]["m"]
            await fleet.forge(o=_success("req_real", context={"user": 2}), m=mac)
            # A forged SUBMIT_UNCERTAIN (Redis builds those: its MAC is the intent's).
            uncertain = {"request_id": "", "kind": "submit-uncertain", "context": {"user": 3}}
            await fleet.forge(o=json.dumps({**uncertain, "mac": "0" * 32}))
            # A forged TIMED_OUT with a made-up proof.
            timed_out = {"request_id": "req_real", "kind": "timed-out", "context": None}
            proof = {"m": "0" * 32, "c": "null"}
            await fleet.forge(o=json.dumps(timed_out), p=json.dumps(proof))
            with anyio.fail_after(10):
                while len(await fleet.entries("deadletter")) < 4:  # noqa: ASYNC110 - polls Redis
                    await anyio.sleep(0.05)
            received = await fleet.settle()
        dead = await fleet.entries("deadletter")
    assert [(o.request_id, o.kind, o.context) for o in received] == [
        ("req_real", OutcomeKind.SUCCESS, {"user": 1})
    ]
    assert genuine.context == {"user": 1}
    assert len(dead) == 4
    assert all("failed the fleet secret's check" in entry["reason"] for entry in dead)
    reasons = sorted(entry["reason"].split(": ", 1)[1] for entry in dead)
    assert reasons == [
        "it is not signed",
        "its MAC does not match its text",
        "its record has no valid MAC",
        "its submit intent is not signed",
    ]
    failed = [e for e in logs if e.get("event") == "outcome_integrity_failed"]
    assert len(failed) == 4
    assert all(e["log_level"] == "error" for e in failed)


async def test_a_record_changed_in_redis_ends_failed_without_its_context(
    redis_url: str, redis_name: str
) -> None:
    """The context is what routes a result in the application: a changed one is never
    signed into an outcome. The task ends once, FAILED, naming the check."""
    fleet = Fleet(redis_url, redis_name, secret=SECRET)
    async with fleet.connection, fleet.attached():
        store = fleet.store
        assert await store.add(_task("req_claimed", context={"user": 1}))
        assert await store.add(_task("req_hooked", context={"user": 1}))
        await fleet.rewrite("req_claimed", "c", '{"user": 2}')
        await fleet.rewrite("req_hooked", "c", '{"user": 2}')
        with capture_logs() as logs:
            assert await store.claim(anyio.current_time()) is None  # a check's claim
            assert await store.get("req_hooked") is None  # a webhook's look-up
            outcomes = await fleet.wait_for(2)
        assert await store.get("req_claimed") is None
    assert sorted(o.request_id for o in outcomes) == ["req_claimed", "req_hooked"]
    for outcome in outcomes:
        assert (outcome.kind, outcome.context) == (OutcomeKind.FAILED, None)
        assert isinstance(outcome.error, FleetIntegrityError)
        assert "failed the fleet secret's check" in str(outcome.error)
    events = [e for e in logs if e.get("event") == "task_record_integrity_failed"]
    assert sorted(e["request_id"] for e in events) == ["req_claimed", "req_hooked"]


async def test_a_timed_out_outcome_carries_only_signed_readings(
    redis_url: str, redis_name: str
) -> None:
    """TIMED_OUT is built inside Redis, with the last reading a replica stored: signed,
    it arrives; a reading rewritten in Redis makes the outcome fail the check."""
    fleet = Fleet(redis_url, redis_name, secret=SECRET)
    async with fleet.connection, fleet.attached():
        store = fleet.store
        for rid in ("req_kept", "req_changed"):
            assert await store.add(_task(rid, seconds=1.5, context={"id": rid}))
            task = await store.claim(anyio.current_time())
            assert task is not None
            status = parse_status_payload(task.request_id, {"status": "pending"})
            await store.end_check(task, CheckEnd(due=anyio.current_time() + 60, status=status))
        forged = {"requestId": "req_changed", "status": "success", "response": {"text": "x"}}
        await fleet.rewrite("req_changed", "st", json.dumps(forged))
        with capture_logs() as logs:
            with anyio.fail_after(10):  # the poller's reaper, run by hand, until both ended
                while not (fleet.received and _logged(logs, "outcome_integrity_failed")):
                    await store.expire(anyio.current_time())
                    await anyio.sleep(0.1)
            received = await fleet.settle()
    assert [(o.request_id, o.kind) for o in received] == [("req_kept", OutcomeKind.TIMED_OUT)]
    (kept,) = received
    assert kept.context == {"id": "req_kept"}
    assert kept.status is not None
    assert kept.status.raw_status == "pending"
    (failed,) = [e for e in logs if e.get("event") == "outcome_integrity_failed"]
    assert "its last reading is not signed" in failed["reason"]


async def test_replicas_with_another_secret_or_none_are_refused(
    redis_url: str, redis_name: str
) -> None:
    first = Fleet(redis_url, redis_name, secret=SECRET)
    async with first.connection, first.attached():
        for secret, says in ((None, "this replica has none"), ("x" * 20, "another fleet secret")):
            other = Fleet(redis_url, redis_name, secret=secret)
            with pytest.raises(UsageError, match=says) as caught:
                async with other.connection, other.attached():
                    pytest.fail("attached")
            assert SECRET not in str(caught.value)
            assert "x" * 20 not in str(caught.value)
    # And the other way round: a fleet started without a secret refuses one.
    name = redis_name + "-unsigned"
    try:
        unsigned = Fleet(redis_url, name, secret=None)
        async with unsigned.connection, unsigned.attached():
            signed = Fleet(redis_url, name, secret=SECRET)
            with pytest.raises(UsageError, match="started without a fleet secret"):
                async with signed.connection, signed.attached():
                    pytest.fail("attached")
    finally:
        delete_keys(redis_url, name)


def test_a_secret_is_checked_and_never_shown() -> None:
    with pytest.raises(UsageError, match="at least 16 bytes"):
        RedisStore("redis://127.0.0.1:6379", name="x", secret="short")
    store = RedisStore("redis://127.0.0.1:6379", name="x", secret=SECRET)
    assert SECRET not in repr(store)
    assert "secret='***'" in repr(store)


async def test_a_signed_fleet_runs_a_poller_end_to_end(redis_url: str, redis_name: str) -> None:
    """Through a poller and the simulator: every outcome arrives, and a forgery added
    mid-run is not among them."""
    store = RedisStore(redis_url, name=redis_name, lease=2.0, secret=SECRET)
    async with simulator(seed=7, durations=Durations.fixed(0.3)) as sim:  # noqa: SIM117
        async with sim.client() as client:
            async with Poller(client, store=store, initial_interval=0.1) as poller:
                ids = [await poller.submit("p", context={"n": i}) for i in range(4)]
                await store.connection.client.xadd(
                    RedisConnection.key(redis_name, "outcomes"), {"o": _success(ids[0])}
                )
                got: list[Outcome] = []
                with anyio.fail_after(20):
                    async for outcome in poller:
                        got.append(outcome)
    # Input requests (signed notifications) come too, in the simulator's mix of outcomes.
    assert sorted(o.request_id for o in got if o.final) == sorted(ids)
    assert all(o.status is None or o.status.response != {"text": "forged"} for o in got)


async def test_only_a_replica_can_make_a_task_resubmit(redis_url: str, redis_name: str) -> None:
    """A 'wait' phase makes the next claim resubmit the task (a new run at the service):
    one a replica set is honoured, one written in Redis ends the task instead."""
    fleet = Fleet(redis_url, redis_name, secret=SECRET)
    async with fleet.connection, fleet.attached():
        store = fleet.store
        assert await store.add(_task("req_failed"))
        task = await store.claim(anyio.current_time())
        assert task is not None
        await store.end_check(task, CheckEnd(due=anyio.current_time(), resubmit=True))
        again = await store.claim(anyio.current_time())
        assert again is not None
        assert again.phase == "wait"
        assert await store.add(_task("req_running"))
        await fleet.rewrite("req_running", "ph", "wait")
        with capture_logs() as logs:
            assert await store.claim(anyio.current_time()) is None
            (outcome,) = await fleet.wait_for(1)
    assert (outcome.request_id, outcome.kind) == ("req_running", OutcomeKind.FAILED)
    assert isinstance(outcome.error, FleetIntegrityError)
    assert [e["request_id"] for e in logs if e.get("event") == "task_record_integrity_failed"] == [
        "req_running"
    ]


async def test_an_early_webhook_reading_written_in_redis_is_ignored(
    redis_url: str, redis_name: str
) -> None:
    """A webhook that beats its submit's answer is held in Redis and becomes the task's
    first reading: a reading put there by a writer without the secret is dropped."""
    fleet = Fleet(redis_url, redis_name, secret=SECRET)
    done = parse_status_payload("req_early", {"status": "success", "response": {"text": "ok"}})
    async with fleet.connection, fleet.attached():
        store = fleet.store
        for rid in ("req_early", "req_forged"):
            ticket = await store.begin_submit()
            assert await store.park(rid, attrs.evolve(done, request_id=rid))
            if rid == "req_forged":
                forged = json.dumps({"requestId": rid, "status": "success"})
                await fleet.connection.client.hset(
                    fleet.key("parked_data"), {rid: "0" * 32 + forged}
                )
            with capture_logs() as logs:
                parked = await store.end_submit(ticket, _task(rid))
            if rid == "req_early":
                assert parked is not None
                assert parked.raw_status == "success"
            else:
                assert parked is None
                assert [e["event"] for e in logs] == ["parked_webhook_integrity_failed"]


# Contexts and readings whose JSON texts a reader could re-encode differently: what
# Redis copies into a TIMED_OUT must still check, byte for byte or value for value.
_AWKWARD: Final[list[Any]] = [
    None,
    {},
    [],
    {"b": 1, "a": [1.5e-7, -0.0, 10**30, True, None]},
    {"text": 'caf\u00e9 \u2028 \U0001f680 "quoted" back\\slash /slash/ \t tab'},
    {"nested": {"deep": [[[{"x": "\u00ff"}]]]}},
    "a plain string",
    12345678901234567890,
    3.141592653589793,
]


async def test_timed_out_outcomes_of_awkward_contexts_and_readings_all_check(
    redis_url: str, redis_name: str
) -> None:
    fleet = Fleet(redis_url, redis_name, secret=SECRET)
    async with fleet.connection, fleet.attached():
        store = fleet.store
        for i, context in enumerate(_AWKWARD):
            assert await store.add(_task(f"req_{i}/+=", seconds=1.5, context=context))
        for _ in _AWKWARD:
            task = await store.claim(anyio.current_time())
            assert task is not None
            i = int(task.request_id[4:].split("/")[0])
            reading = {"status": "pending", "response": {"text": _AWKWARD[i]}}
            status = parse_status_payload(task.request_id, reading)
            error = TimeoutError("caf\u00e9 \U0001f680 timed out")
            await store.end_check(
                task, CheckEnd(due=anyio.current_time() + 60, status=status, error=error, errors=1)
            )
        with capture_logs() as logs, anyio.fail_after(10):
            while len(fleet.received) < len(_AWKWARD):
                await store.expire(anyio.current_time())
                await anyio.sleep(0.1)
    assert not [e for e in logs if e.get("event") == "outcome_integrity_failed"]
    got = {o.request_id: o for o in fleet.received}
    for i, context in enumerate(_AWKWARD):
        outcome = got[f"req_{i}/+="]
        assert outcome.kind == OutcomeKind.TIMED_OUT
        assert outcome.context == context
        assert outcome.status is not None
        assert outcome.status.response == {"text": context}
        assert "timed out" in str(outcome.error)
