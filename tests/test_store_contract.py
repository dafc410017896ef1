"""One contract for every `TaskStore`: the same cases over each store, driven directly.

In the style of saq's shared queue tests: each case runs on every store (`MemoryStore`,
`RedisStore` on the real Redis, the third store of `tests/_third_store.py` written from
public names only, and `SQLiteStore`), on asyncio and trio, through the protocol alone:
attached to a recording sink instead of a poller. Where stores really differ, the case
says so for that store with a strict xfail and the reason, never a skip: if a store
starts to meet the contract, the xfail fails and must go.

A store is "reopened" by a new instance over the same backing (the same Redis name, the
same SQLite file; for the stores that live in memory, the same instance): that is what a
process restart looks like to the contract.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import anyio
import attrs
import pytest

from _third_store import ListStore
from async_dispatch import (
    CheckEnd,
    MemoryStore,
    NotFoundError,
    Outcome,
    OutcomeKind,
    RequestTimeoutError,
    SubmitSendingStore,
    SubmitUncertainError,
    TaskSpec,
    TaskStatus,
    TaskStore,
    TrackedTask,
    UsageError,
    make_outcome,
)
from async_dispatch._errors import InvalidRequestIdError
from async_dispatch._models import Status
from async_dispatch.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

#: How long before its deadline a task's last check falls, in these cases.
LEAD = 2.0
#: "signed" is `RedisStore` with a fleet secret: every case must hold the same with it.
STORES = ["memory", "redis", "signed", "list", "sqlite"]
#: A fleet secret for the "signed" store (a test value: real ones come from a vault).
SECRET: Final = "contract-suite-fleet-secret-0123456789"

Received = list[tuple[Outcome, Any]]


class Harness:
    """Opens one kind of store, attaches it to a list, waits for what it hands over."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self._request = request
        self._path = tmp_path / "tasks.db"
        self._same: TaskStore | None = None
        #: A fleet (RedisStore), signed or not: the cases wait the same for either.
        self.fleet = kind in ("redis", "signed")
        if self.fleet:
            self._url: str = request.getfixturevalue("redis_url")
            self._name: str = request.getfixturevalue("redis_name")

    def open(self) -> TaskStore:
        """A store over this case's backing: a new instance, as a restarted process has."""
        if self.fleet:
            from async_dispatch.redis import RedisStore

            # Short limits, so a "dead" replica's outcomes and intents come back quickly.
            return RedisStore(
                self._url,
                name=self._name,
                lease=1.0,
                outcome_idle=0.5,
                submit_timeout=0.1,
                secret=SECRET if self.kind == "signed" else None,
            )
        if self.kind == "sqlite":
            return SQLiteStore(self._path)
        if self._same is None:
            self._same = MemoryStore() if self.kind == "memory" else ListStore()
        return self._same

    @contextlib.asynccontextmanager
    async def attached(self, store: TaskStore | None = None) -> AsyncIterator[Attached]:
        store = store if store is not None else self.open()
        received: Received = []

        def sink(outcome: Outcome, receipt: Any) -> None:
            received.append((outcome, receipt))

        async with store.attach(sink, anyio.current_time, lambda: None, last_check_lead=LEAD):
            yield Attached(store, received, self.kind, fleet=self.fleet)


class Attached:
    def __init__(self, store: TaskStore, received: Received, kind: str, *, fleet: bool) -> None:
        self.store, self.received, self.kind, self.fleet = store, received, kind, fleet
        #: How long an outcome may take to arrive: a fleet's come through its stream
        #: reader (and a dead replica's after its idle limit); a local store's at once.
        self.patience = 4.0 if fleet else 0.5

    async def wait_for(self, n: int) -> list[Outcome]:
        """The first `n` outcomes handed over."""
        with anyio.fail_after(self.patience):
            while len(self.received) < n:  # noqa: ASYNC110 - the sink is a plain callable
                await anyio.sleep(0.01)
        return [outcome for outcome, _ in self.received[:n]]

    async def settle(self) -> list[Outcome]:
        """Everything handed over once what is on its way has arrived."""
        await anyio.sleep(0.3 if self.fleet else 0)
        return [outcome for outcome, _ in self.received]


@pytest.fixture(params=STORES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return Harness(str(request.param), request, tmp_path)


def store_params(**differences: str) -> pytest.MarkDecorator:
    """Parametrise a case over every store; a store named in `differences` (kind=reason)
    really differs from the contract there: a strict xfail with that reason."""
    return pytest.mark.parametrize(
        "harness",
        [
            pytest.param(
                kind,
                marks=pytest.mark.xfail(strict=True, reason=f"{kind}: {differences[kind]}")
                if kind in differences
                else (),
            )
            for kind in STORES
        ],
        indirect=True,
    )


def new_task(
    rid: str, *, due: float = 0.0, deadline: float = 60.0, context: Any = None
) -> TrackedTask:
    now = anyio.current_time()
    return TrackedTask(rid, started=now, deadline=now + deadline, context=context, due=now + due)


def reading(rid: str, status: str = "success") -> TaskStatus:
    return TaskStatus(
        request_id=rid,
        status=Status.from_wire(status),
        raw_status=status,
        created_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
        text="done",
        response={"text": "done", "extra": [1, {}]},
    )


def ids(tasks: Iterator[TrackedTask] | list[TrackedTask]) -> list[str]:
    return [task.request_id for task in tasks]


# -- tracking ---------------------------------------------------------------------------


async def test_first_writer_wins(harness: Harness) -> None:
    async with harness.attached() as a:
        assert await a.store.add(new_task("req_a", context={"n": 1}))
        assert not await a.store.add(new_task("req_a", context={"n": 2}))
        task = await a.store.get("req_a")
        assert task is not None
        assert task.context == {"n": 1}
        assert await a.store.get("req_zz") is None


async def test_add_many_tracks_only_the_new_ones(harness: Harness) -> None:
    async with harness.attached() as a:
        assert await a.store.add(new_task("req_old"))
        batch = [new_task("req_x"), new_task("req_old"), new_task("req_y"), new_task("req_x")]
        assert ids(await a.store.add_many(batch)) == ["req_x", "req_y"]
        for rid in ("req_old", "req_x", "req_y"):
            assert await a.store.get(rid) is not None


async def test_a_finished_id_is_not_tracked_again(harness: Harness) -> None:
    async with harness.attached() as a:
        task = new_task("req_f")
        assert await a.store.add(task)
        outcome = make_outcome(task, OutcomeKind.SUCCESS, anyio.current_time(), via="webhook")
        assert await a.store.resolve(task, outcome, fenced=False)
        assert not await a.store.add(new_task("req_f"))
        assert ids(await a.store.add_many([new_task("req_f")])) == []
        assert await a.store.get("req_f") is None
        assert await a.store.finished("req_f")
        assert not await a.store.finished("req_other")
        assert [o.request_id for o in await a.settle()] == ["req_f"]


async def test_forget_ends_tracking_without_an_outcome(harness: Harness) -> None:
    async with harness.attached() as a:
        await a.store.add(new_task("req_g"))
        assert await a.store.forget("req_g")
        assert not await a.store.forget("req_g")
        assert await a.store.get("req_g") is None
        assert await a.store.claim(anyio.current_time()) is None
        assert await a.settle() == []


# -- checks -----------------------------------------------------------------------------


async def test_claims_count_polls_and_end_check_records(harness: Harness) -> None:
    async with harness.attached() as a:
        store = a.store
        await store.add(new_task("req_c", context=["ctx"]))
        await store.add(new_task("req_later", due=30.0))
        if store.capabilities.local:
            task = store.try_claim(anyio.current_time())
        else:
            assert store.try_claim(anyio.current_time()) is None  # it needs I/O to claim
            task = await store.claim(anyio.current_time())
        assert task is not None
        assert (task.request_id, task.polls, task.context) == ("req_c", 1, ["ctx"])
        assert await store.claim(anyio.current_time()) is None  # claimed; the other later
        gone = RequestTimeoutError("status check timed out")
        end = CheckEnd(due=anyio.current_time(), status=reading("req_c", "pending"))
        await store.end_check(task, end)
        again = await store.claim(anyio.current_time())
        assert again is not None
        assert (again.request_id, again.polls) == ("req_c", 2)
        assert again.last_status == reading("req_c", "pending")
        await store.end_check(again, CheckEnd(due=math.inf, error=gone, errors=3))
        held = await store.get("req_c")
        assert held is not None
        assert held.polls == 2
        assert held.errors == 3
        assert isinstance(held.last_error, RequestTimeoutError)
        assert held.last_status == reading("req_c", "pending")  # None keeps the last one
        assert await store.claim(anyio.current_time()) is None  # no check planned


async def test_last_checks_are_served_before_routine_ones(harness: Harness) -> None:
    async with harness.attached() as a:
        await a.store.add(new_task("req_routine", due=-5.0))
        # Due within LEAD of its deadline: its last check.
        await a.store.add(new_task("req_last", due=-1.0, deadline=0.5))
        first = await a.store.claim(anyio.current_time())
        assert first is not None
        assert first.request_id == "req_last"


async def test_a_routine_check_waiting_at_its_last_check_time_is_served_as_the_last(
    harness: Harness,
) -> None:
    async with harness.attached() as a:
        await a.store.add(new_task("req_old", due=-5.0))  # the most overdue routine check
        # Its last check falls due in 0.1 s; the budget keeps its routine check waiting.
        await a.store.add(new_task("req_near", due=-1.0, deadline=LEAD + 0.1))
        await anyio.sleep(0.2)
        await a.store.expire(anyio.current_time())  # a fleet promotes it in this round
        first = await a.store.claim(anyio.current_time())
        assert first is not None
        assert first.request_id == "req_near"


# -- endings ----------------------------------------------------------------------------


async def test_resolve_first_writer_wins_fenced_or_not(harness: Harness) -> None:
    async with harness.attached() as a:
        store = a.store
        await store.add(new_task("req_r"))
        await store.add(new_task("req_w", due=0.0))
        task = await store.claim(anyio.current_time())
        assert task is not None
        first = make_outcome(task, OutcomeKind.SUCCESS, anyio.current_time(), via="poll")
        assert await store.resolve(task, first, fenced=True)
        assert not await store.resolve(task, first, fenced=False)
        assert not await store.resolve(task, first, fenced=True)
        # A webhook resolves whoever holds the claim; the holder's poll then loses.
        held = await store.claim(anyio.current_time())
        assert held is not None
        assert held.request_id == "req_w"
        webhook = await store.get("req_w")
        assert webhook is not None
        pushed = make_outcome(webhook, OutcomeKind.ERROR, anyio.current_time(), via="webhook")
        assert await store.resolve(webhook, pushed, fenced=False)
        late = make_outcome(held, OutcomeKind.SUCCESS, anyio.current_time(), via="poll")
        assert not await store.resolve(held, late, fenced=True)
        await a.wait_for(2)
        got = {o.request_id: (o.kind, o.via, o.final) for o in await a.settle()}
        assert got == {
            "req_r": (OutcomeKind.SUCCESS, "poll", True),
            "req_w": (OutcomeKind.ERROR, "webhook", True),
        }


async def test_outcomes_keep_their_error_type_and_provenance(harness: Harness) -> None:
    async with harness.attached() as a:
        task = new_task("req_e", context={"user": 7, "tags": []})
        await a.store.add(task)
        gone = NotFoundError("HTTP 404: unknown", status_code=404, request_id="req_e")
        outcome = make_outcome(
            task, OutcomeKind.FAILED, anyio.current_time(), error=gone, via="webhook"
        )
        assert await a.store.resolve(task, outcome, fenced=False)
        (got,) = await a.wait_for(1)
        assert isinstance(got.error, NotFoundError)
        assert (got.error.status_code, got.error.request_id) == (404, "req_e")
        assert str(got.error) == "HTTP 404: unknown"
        assert (got.via, got.context, got.kind) == (
            "webhook",
            {"user": 7, "tags": []},
            outcome.kind,
        )


async def test_expire_times_out_via_the_deadline_with_the_last_error(harness: Harness) -> None:
    async with harness.attached() as a:
        store = a.store
        # Longer than a fleet's clock error (up to 1 s with coredis 6.9: issue #20 item 1).
        deadline = 1.1 if a.fleet else 0.3
        await store.add(new_task("req_t", deadline=deadline, context=[1, "two", {}]))
        await store.add(new_task("req_keep", due=math.inf))
        task = await store.claim(anyio.current_time())
        assert task is not None
        error = RequestTimeoutError("the status check timed out")
        await store.end_check(task, CheckEnd(due=math.inf, error=error, errors=1))
        assert await store.expire(anyio.current_time()) == 0
        with anyio.fail_after(a.patience + deadline):
            while not await store.expire(anyio.current_time()):  # noqa: ASYNC110 - polled
                await anyio.sleep(0.05)
        (outcome,) = await a.wait_for(1)
        assert (outcome.request_id, outcome.kind) == ("req_t", OutcomeKind.TIMED_OUT)
        assert (outcome.via, outcome.polls, outcome.context) == ("deadline", 1, [1, "two", {}])
        assert isinstance(outcome.error, RequestTimeoutError)
        assert outcome.elapsed > 0
        assert await store.finished("req_t")
        assert await store.get("req_t") is None
        assert await store.get("req_keep") is not None


async def test_notify_delivers_once_per_input_key(harness: Harness) -> None:
    async with harness.attached() as a:
        await a.store.add(new_task("req_i"))
        for key in ("input-1", "input-1", "input-2", "input-2"):
            task = await a.store.get("req_i")
            assert task is not None
            notice = make_outcome(task, OutcomeKind.INPUT_REQUIRED, 0.0, final=False)
            await a.store.notify(task, notice, key)
        await a.wait_for(2)
        got = await a.settle()
        assert [(o.kind, o.final) for o in got] == [(OutcomeKind.INPUT_REQUIRED, False)] * 2
        task = await a.store.get("req_i")
        assert task is not None
        assert task.last_input == "input-2"


async def test_reject_hands_over_the_outcome_of_a_task_never_tracked(harness: Harness) -> None:
    async with harness.attached() as a:
        never = TrackedTask("'not sendable'", started=0.0, deadline=1.0, context={"c": 1})
        error = InvalidRequestIdError("request id contains spaces")
        await a.store.reject(make_outcome(never, OutcomeKind.FAILED, 0.0, error=error))
        (got,) = await a.wait_for(1)
        assert (got.request_id, got.kind, got.context) == (
            "'not sendable'",
            OutcomeKind.FAILED,
            {"c": 1},
        )
        assert isinstance(got.error, InvalidRequestIdError)
        assert await a.store.get("'not sendable'") is None


# -- what outlives a process ------------------------------------------------------------


_IN_MEMORY = "an outcome lives in this process's queue; its task stays in snapshot() instead"


@store_params(memory=_IN_MEMORY, list=_IN_MEMORY)
async def test_an_outcome_is_held_until_acked(harness: Harness) -> None:
    async with harness.attached() as a:
        task = new_task("req_h")
        await a.store.add(task)
        await a.store.resolve(task, make_outcome(task, OutcomeKind.SUCCESS, 0.0), fenced=False)
        await a.wait_for(1)
    # The process "crashed" before the application took it: the next one gets it again.
    async with harness.attached() as b:
        (again,) = await b.wait_for(1)
        assert (again.request_id, again.deliveries) == ("req_h", 2)
        await b.store.ack(b.received[0][1])
    async with harness.attached() as c:
        await anyio.sleep(1.0 if harness.fleet else 0)  # past the idle limit
        assert await c.settle() == []


async def test_snapshot_keeps_a_task_until_its_outcome_is_acked(harness: Harness) -> None:
    """Per capability: a store that snapshots keeps an unacked outcome's task in it."""
    async with harness.attached() as a:
        task = new_task("req_s", context={"k": "v"})
        await a.store.add(task)
        await a.store.add(new_task("req_open"))
        await a.store.resolve(task, make_outcome(task, OutcomeKind.SUCCESS, 0.0), fenced=False)
        await a.wait_for(1)
        receipt = a.received[0][1]
        if not a.store.capabilities.snapshot:
            with pytest.raises(UsageError):
                a.store.snapshot()
            return
        entries = {entry["request_id"]: entry for entry in a.store.snapshot()}
        assert set(entries) == {"req_s", "req_open"}
        assert entries["req_s"]["context"] == {"k": "v"}
        assert abs(entries["req_s"]["deadline"] - (time.time() + 60)) < 5
        await a.store.ack(receipt)
        assert [entry["request_id"] for entry in a.store.snapshot()] == ["req_open"]


async def test_tracked_tasks_outlive_a_detach(harness: Harness) -> None:
    async with harness.attached() as a:
        await a.store.add(new_task("req_d", deadline=30.0, context={"x": [1]}))
        task = await a.store.claim(anyio.current_time())
        assert task is not None
        status = reading("req_d", "pending")
        await a.store.end_check(task, CheckEnd(due=anyio.current_time() + 5, status=status))
        deadline = task.deadline
    async with harness.attached() as b:
        again = await b.store.get("req_d")
        assert again is not None
        assert (again.polls, again.context, again.last_status) == (1, {"x": [1]}, status)
        assert abs(again.deadline - deadline) < 0.5


async def sent(store: TaskStore, context: Any = None, prompt: str = "the prompt") -> Any:
    """A submit that went on the wire: begun, and (for a store that asks) marked sent, as
    the poller does once the submit's turn and token are taken."""
    ticket = await store.begin_submit()
    if store.capabilities.submit_sending:
        sending: SubmitSendingStore = store  # type: ignore[assignment]
        await sending.submit_sending(ticket, context, prompt)
    return ticket


_NO_INTENTS = "a submit lives in this process: a crash mid-submit leaves nothing to report"


@store_params(memory=_NO_INTENTS, list=_NO_INTENTS)
async def test_a_submit_cut_short_by_a_crash_becomes_submit_uncertain(harness: Harness) -> None:
    async with harness.attached() as a:
        await sent(a.store)
        # ...and the process died before end_submit.
    async with harness.attached() as b:
        with anyio.fail_after(b.patience):
            while not b.received:
                await b.store.expire(anyio.current_time())
                await anyio.sleep(0.1)
        (outcome,) = await b.wait_for(1)
        assert (outcome.kind, outcome.final) == (OutcomeKind.SUBMIT_UNCERTAIN, True)
        assert isinstance(outcome.error, SubmitUncertainError)
        await b.store.ack(b.received[0][1])
        assert await b.store.idle()


_NO_CONTEXT = (
    "SQLiteStore takes no submit_sending (capabilities.submit_sending is False): its "
    "intents keep only when the submit began"
)


@store_params(memory=_NO_INTENTS, list=_NO_INTENTS)
async def test_a_submit_uncertain_outcome_says_what_is_known(harness: Harness) -> None:
    async with harness.attached() as a:
        await sent(a.store)
    async with harness.attached() as b:
        with anyio.fail_after(b.patience):
            while not b.received:
                await b.store.expire(anyio.current_time())
                await anyio.sleep(0.1)
        (outcome,) = await b.wait_for(1)
        assert outcome.request_id == ""  # no task id is known: none is made up
        assert "replica" not in str(outcome.error)
        assert "UTC" in str(outcome.error)  # when the submit began
        await b.store.ack(b.received[0][1])


@store_params(memory=_NO_INTENTS, list=_NO_INTENTS, sqlite=_NO_CONTEXT)
async def test_a_submit_uncertain_outcome_carries_the_context_and_a_digest_of_the_prompt(
    harness: Harness,
) -> None:
    prompt = "book the flight with card 4111 1111 1111 1111"
    async with harness.attached() as a:
        await sent(a.store, {"order": 7}, prompt)
    async with harness.attached() as b:
        with anyio.fail_after(b.patience):
            while not b.received:
                await b.store.expire(anyio.current_time())
                await anyio.sleep(0.1)
        (outcome,) = await b.wait_for(1)
        assert outcome.context == {"order": 7}  # what the caller attached, to act on
        assert hashlib.sha256(prompt.encode()).hexdigest() in str(outcome.error)
        assert "4111" not in str(outcome.error)  # a digest: the prompt may hold secrets
        await b.store.ack(b.received[0][1])


_SENT_UNKNOWN = (
    "SQLiteStore takes no submit_sending: a crash while a submit waited for its token "
    "cannot be told from one after it was sent"
)


@store_params(memory=_NO_INTENTS, list=_NO_INTENTS, sqlite=_SENT_UNKNOWN)
async def test_a_submit_that_never_went_out_is_not_reported_uncertain(
    harness: Harness,
) -> None:
    """Issue #20 item 3: a submit that died while it waited for its turn sent nothing."""
    async with harness.attached() as a:
        await a.store.begin_submit()
        # ...and the process died while the submit waited for its token.
    async with harness.attached() as b:
        deadline = anyio.current_time() + (2.0 if b.fleet else 0.2)
        while anyio.current_time() < deadline:
            await b.store.expire(anyio.current_time())
            await anyio.sleep(0.1)
        assert await b.settle() == []
        assert await b.store.idle()  # the intent went, without an outcome


async def test_a_live_process_keeps_its_waiting_submit_from_being_reported_uncertain(
    harness: Harness,
) -> None:
    """Issue #20 item 3: a submit queued behind a small budget, for longer than a submit's
    timeout and a lease, is still its process's own (the store renews it)."""
    async with harness.attached() as a:
        ticket = await a.store.begin_submit()
        deadline = anyio.current_time() + (2.0 if a.fleet else 0.2)
        while anyio.current_time() < deadline:
            await a.store.expire(anyio.current_time())
            await anyio.sleep(0.1)
        assert not await a.store.idle()  # still in flight
        await a.store.end_submit(ticket, None)
        assert await a.settle() == []
        assert await a.store.idle()


# -- submits and early webhooks ---------------------------------------------------------


async def test_early_webhooks_are_parked_only_while_a_submit_is_in_flight(
    harness: Harness,
) -> None:
    async with harness.attached() as a:
        store = a.store
        assert not await store.park("req_p", reading("req_p"))
        assert await store.idle()
        ticket = await store.begin_submit()
        assert not await store.idle()
        assert await store.park("req_p", reading("req_p"))
        early = await store.end_submit(ticket, new_task("req_p"))
        assert early == reading("req_p")
        assert await store.get("req_p") is not None
        ticket = await store.begin_submit()
        assert await store.end_submit(ticket, None) is None
        assert not await store.park("req_q", reading("req_q"))
        assert await store.forget("req_p")
        assert await store.idle()


async def test_idle_means_nothing_tracked_and_no_submit_in_flight(harness: Harness) -> None:
    async with harness.attached() as a:
        store = a.store
        assert await store.idle()
        task = new_task("req_n")
        await store.add(task)
        assert not await store.idle()
        await store.resolve(task, make_outcome(task, OutcomeKind.SUCCESS, 0.0), fenced=False)
        await a.wait_for(1)
        await store.ack(a.received[0][1])
        assert await store.idle()


# -- resubmissions ----------------------------------------------------------------------


#: The trace context of the resubmitted tasks: every attempt is part of the task's one trace.
TRACE: Final = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def spec_task(rid: str, *, deadline: float = 60.0, attempts: tuple[str, ...] = ()) -> TrackedTask:
    task = new_task(rid, deadline=deadline, context={"user": 7})
    task.trace = TRACE
    task.spec = TaskSpec(
        prompt="/Operator again",
        options={"time_zone": "UTC", "response_format": {"type": "jsonSchema", "jsonSchema": {}}},
        output="tests.models:Invoice",
        attempts=attempts,
    )
    return task


async def _claim(store: TaskStore) -> TrackedTask:
    with anyio.fail_after(2):
        while True:
            task = await store.claim(anyio.current_time())
            if task is not None:
                return task
            await anyio.sleep(0.01)


async def test_a_resubmission_swaps_the_failed_attempt_for_the_new_one(harness: Harness) -> None:
    async with harness.attached() as a:
        store = a.store
        await store.add(spec_task("req_1"))
        task = await _claim(store)
        assert (task.phase, task.spec) == ("", spec_task("req_1").spec)
        assert not await store.begin_resubmit(task)  # not planned for resubmission
        await store.end_check(
            task,
            CheckEnd(due=anyio.current_time(), status=reading("req_1", "error"), resubmit=True),
        )
        waiting = await store.get("req_1")
        assert waiting is not None
        assert waiting.phase == "wait"
        task = await _claim(store)
        assert task.phase == "wait"
        assert task.last_status == reading("req_1", "error")
        assert await store.begin_resubmit(task)
        assert not await store.begin_resubmit(task)  # once
        assert task.phase == "sending"
        assert (await store.get("req_1")).phase == "sending"  # type: ignore[union-attr]
        assert task.spec is not None
        assert task.trace == TRACE
        new = TrackedTask(
            "req_2",
            started=task.started,
            deadline=task.deadline,
            context=task.context,
            due=0.0,
            trace=task.trace,
        )
        new.spec = attrs.evolve(task.spec, attempts=("req_1",))
        assert await store.resubmitted(task, new)
        assert not await store.resubmitted(task, new)  # the old attempt is gone
        assert await store.get("req_1") is None
        assert await store.finished("req_1")  # a late webhook for it is a duplicate
        assert not await store.add(new_task("req_1"))
        again = await store.get("req_2")
        assert again is not None
        assert (again.phase, again.context, again.spec) == ("", {"user": 7}, new.spec)
        assert again.trace == TRACE
        assert abs(again.deadline - task.deadline) < 0.5
        claimed = await _claim(store)
        assert claimed.request_id == "req_2"
        done = make_outcome(claimed, OutcomeKind.SUCCESS, anyio.current_time(), via="poll")
        assert done.attempts == ("req_1", "req_2")
        assert await store.resolve(claimed, done, fenced=True)
        (outcome,) = await a.wait_for(1)
        assert (outcome.request_id, outcome.attempts) == ("req_2", ("req_1", "req_2"))
        assert outcome.trace_context == TRACE
        assert len(await a.settle()) == 1  # the swap itself hands nothing over


async def test_a_resubmitted_task_that_times_out_lists_every_attempt(harness: Harness) -> None:
    async with harness.attached() as a:
        deadline = 1.1 if a.fleet else 0.3
        await a.store.add(spec_task("req_3", deadline=deadline, attempts=("req_1", "req_2")))
        with anyio.fail_after(a.patience + deadline):
            while not await a.store.expire(anyio.current_time()):  # noqa: ASYNC110 - polled
                await anyio.sleep(0.05)
        (outcome,) = await a.wait_for(1)
        assert outcome.kind is OutcomeKind.TIMED_OUT
        assert outcome.attempts == ("req_1", "req_2", "req_3")
        assert outcome.trace_context == TRACE  # the Lua's outcome carries both


_CLAIM_HELD = "one process: the claim of a resubmission under way is never lost"


@store_params(memory=_CLAIM_HELD, list=_CLAIM_HELD)
async def test_a_resubmission_under_way_is_found_marked_after_a_crash(harness: Harness) -> None:
    """The mark is durable before the submit is sent: whoever claims the task next sees
    ``sending`` (and ends it SUBMIT_UNCERTAIN) instead of planning another submit."""
    async with harness.attached() as a:
        await a.store.add(spec_task("req_m"))
        task = await _claim(a.store)
        await a.store.end_check(task, CheckEnd(due=anyio.current_time(), resubmit=True))
        task = await _claim(a.store)
        assert await a.store.begin_resubmit(task)
        # ...and the process died before the submit's answer.
    async with harness.attached() as b:
        with anyio.fail_after(4):  # a fleet's lease (1 s here) runs out first
            while (found := await b.store.claim(anyio.current_time())) is None:  # noqa: ASYNC110 - polled
                await anyio.sleep(0.05)
        assert (found.request_id, found.phase) == ("req_m", "sending")
        assert found.spec == spec_task("req_m").spec
