"""The poller, end to end against an in-process service: outcomes, deadlines, 429s,
webhooks, cancellation, checkpoints and misuse. Each test runs on asyncio (real time) and
on trio (virtual time); times are written in virtual seconds and multiplied by `scale`.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import anyio
import pytest

import _poller_helpers as helpers
from _chaos import ChaosService, Fault, Step, Timeline, client_for, status_payload
from _poller_helpers import drain, fast, running
from async_dispatch import (
    AuthenticationError,
    BadRequestError,
    DeliveryResult,
    InvalidRequestIdError,
    InvalidResponseError,
    NotFoundError,
    Outcome,
    OutcomeKind,
    PermissionDeniedError,
    Poller,
    PollerUnavailable,
    RateLimitedError,
    ServerError,
    TokenBucket,
    UsageError,
)

pytestmark = pytest.mark.virtual_clock  # trio runs on a virtual clock
scale = helpers.scale
wait_until = helpers.wait_until


async def next_outcome(poller: Poller) -> Outcome:
    return await poller.results().__anext__()


def finals(outcomes: list[Outcome]) -> dict[str, Outcome]:
    """The final outcome of each id, checking there is exactly one."""
    result: dict[str, Outcome] = {}
    for outcome in outcomes:
        if outcome.final:
            assert outcome.request_id not in result, f"two final outcomes for {outcome}"
            result[outcome.request_id] = outcome
    return result


# -- outcomes ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_outcome_kind(scale: float) -> None:
    service = ChaosService(
        {
            "req_ok": Timeline.finishing(1 * scale, "success"),
            "req_err": Timeline.finishing(1 * scale, "error"),
            "req_hitl": Timeline(
                (
                    Step(0, "pending"),
                    Step(1 * scale, "input-required", "log in please"),
                    Step(4 * scale, "success", "done"),
                )
            ),
            "req_slow": Timeline.never(),
            "req_bad": Timeline.never(),
        }
    )
    service.forced["req_bad"] = 422
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_ok", context={"n": 1})
        await poller.track("req_err")
        await poller.track("req_hitl")
        await poller.track("req_slow", deadline=6 * scale)
        await poller.track("req_gone")
        await poller.track("req_bad")
        await poller.track("not\na valid id")
        outcomes = await drain(poller)

    by_id = finals(outcomes)
    assert {i: o.kind for i, o in by_id.items()} == {
        "req_ok": OutcomeKind.SUCCESS,
        "req_err": OutcomeKind.ERROR,
        "req_hitl": OutcomeKind.SUCCESS,
        "req_slow": OutcomeKind.TIMED_OUT,
        "req_gone": OutcomeKind.FAILED,
        "req_bad": OutcomeKind.FAILED,
        "not\na valid id": OutcomeKind.FAILED,
    }
    notes = [o for o in outcomes if not o.final]
    assert [(o.request_id, o.kind) for o in notes] == [("req_hitl", OutcomeKind.INPUT_REQUIRED)]
    assert notes[0].status is not None
    assert notes[0].status.text == "log in please"
    assert by_id["req_ok"].context == {"n": 1}
    assert by_id["req_ok"].status is not None
    assert by_id["req_ok"].status.text == "success text"
    assert by_id["req_err"].status is not None
    assert by_id["req_err"].status.is_terminal
    assert isinstance(by_id["req_gone"].error, NotFoundError)
    assert isinstance(by_id["req_bad"].error, BadRequestError)
    assert isinstance(by_id["not\na valid id"].error, InvalidRequestIdError)
    assert by_id["req_slow"].status is not None  # the last reading is kept
    assert by_id["req_slow"].elapsed == pytest.approx(6 * scale, abs=max(0.01, 5 * scale))
    assert not service.requests_for("not\na valid id")
    assert len(service.requests_for("req_gone")) == 1  # a 404 is never retried


@pytest.mark.anyio
async def test_invalid_ids_fail_without_a_request(scale: float) -> None:
    service = ChaosService({})
    bad: list[Any] = ["", ".", "..", "x" * 5000, "new\nline", "nul\x00", 123]
    async with running(service, **fast(scale)) as poller:
        for request_id in bad:
            await poller.track(request_id)
        outcomes = await drain(poller)
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED] * len(bad)
    assert all(isinstance(o.error, InvalidRequestIdError) for o in outcomes)
    assert outcomes[-1].request_id == "123"
    assert service.log == []


# -- deadlines --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_deadline_fires_with_no_check_due(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never()})
    settings = fast(scale, initial_interval=1000 * scale, max_interval=1000 * scale)
    async with running(service, **settings) as poller:
        started = anyio.current_time()
        await poller.track("req_a", deadline=5 * scale)
        [outcome] = await drain(poller)
        waited = anyio.current_time() - started
    assert outcome.kind is OutcomeKind.TIMED_OUT
    # No routine check falls before the deadline, but a task always gets a last check
    # shortly before it: TIMED_OUT means the service still said "not finished" then.
    assert outcome.polls == 1
    assert [request.request_id for request in service.log] == ["req_a"]
    assert 5 * scale <= waited < 5 * scale + max(0.5, scale)


@pytest.mark.anyio
async def test_deadline_fires_while_a_check_hangs(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never(), "req_b": Timeline.never()}, hang=True)
    async with running(service, **fast(scale, max_in_flight=2)) as poller:
        started = anyio.current_time()
        await poller.track("req_a", deadline=5 * scale)
        await poller.track("req_b", deadline=50 * scale)
        first = await next_outcome(poller)
        waited = anyio.current_time() - started
        assert (first.request_id, first.kind, first.polls) == ("req_a", OutcomeKind.TIMED_OUT, 1)
        assert 5 * scale <= waited < 5 * scale + max(0.5, scale)
        # The hung request of the timed-out task was abandoned, not left holding a worker.
        await wait_until(lambda: service.active == 1)
        assert len(poller) == 1
    assert service.active == 0
    assert service.cancelled == len(service.log) == 2


@pytest.mark.anyio
async def test_tracking_twice_keeps_the_first_deadline_and_context(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never()})
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a", deadline=3 * scale, context="first")
        await poller.track("req_a", deadline=300 * scale, context="second")
        assert len(poller) == 1
        [outcome] = await drain(poller)
    assert (outcome.kind, outcome.context) == (OutcomeKind.TIMED_OUT, "first")
    assert outcome.elapsed < 100 * scale


@pytest.mark.anyio
async def test_zero_deadline_times_out_at_once(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.finishing(0)})
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a", deadline=0)
        [outcome] = await drain(poller)
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert service.log == []


# -- input required ---------------------------------------------------------------------


def hitl_timeline(scale: float) -> Timeline:
    q1 = {"question": "password?"}
    q2 = {"question": "2FA code?"}
    return Timeline(
        (
            Step(0, "pending"),
            Step(2 * scale, "input-required", "log in", hitl=q1),
            Step(8 * scale, "pending"),  # the person answered
            Step(10 * scale, "input-required", "log in", hitl=q1),  # a stale replica
            Step(12 * scale, "pending"),
            Step(14 * scale, "input-required", "code", hitl=q2),  # a new request
            Step(20 * scale, "success", "done"),
        )
    )


@pytest.mark.anyio
async def test_each_input_request_is_reported_once(scale: float) -> None:
    service = ChaosService({"req_a": hitl_timeline(scale)})
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a")
        outcomes = await drain(poller)
    assert [(o.kind, o.final) for o in outcomes] == [
        (OutcomeKind.INPUT_REQUIRED, False),
        (OutcomeKind.INPUT_REQUIRED, False),
        (OutcomeKind.SUCCESS, True),
    ]
    first, second = (o.status for o in outcomes[:2])
    assert first is not None
    assert first.hitl_input_metadata == {"question": "password?"}
    assert second is not None
    assert second.hitl_input_metadata == {"question": "2FA code?"}
    seen = [r.answered for r in service.log]
    assert seen.count("input-required") > 2  # polled repeatedly while it waited
    assert poller.stats.outcomes[OutcomeKind.INPUT_REQUIRED] == 2


@pytest.mark.anyio
async def test_stop_on_input_required_makes_it_final(scale: float) -> None:
    service = ChaosService({"req_a": hitl_timeline(scale)})
    async with running(service, **fast(scale), stop_on_input_required=True) as poller:
        await poller.track("req_a")
        outcomes = await drain(poller)
        polls = len(service.log)
        await anyio.sleep(10 * scale)
    assert [(o.kind, o.final) for o in outcomes] == [(OutcomeKind.INPUT_REQUIRED, True)]
    assert len(service.log) == polls  # nothing more was checked


@pytest.mark.anyio
async def test_input_required_without_metadata_is_keyed_by_text(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never()})
    async with running(service, **fast(scale, initial_interval=1000 * scale)) as poller:
        await poller.track("req_a")
        for text in ("one", "one", "two", "two", "one"):
            payload = status_payload("req_a", Step(0, "input-required", text))
            assert await poller.deliver(payload) is DeliveryResult.ACCEPTED
        await poller.forget("req_a")
        outcomes = await drain(poller)
    assert [o.status.text for o in outcomes if o.status] == ["one", "two", "one"]


# -- adding work while iterating, forget, forever ---------------------------------------


@pytest.mark.anyio
async def test_tasks_added_while_iterating_are_yielded(scale: float) -> None:
    service = ChaosService({f"req_{n}": Timeline.finishing(n * scale) for n in range(5)})
    seen: list[str] = []
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_0")
        async for outcome in poller:
            seen.append(outcome.request_id)
            n = len(seen)
            if n < 5:
                await poller.track(f"req_{n}")
    assert seen == [f"req_{n}" for n in range(5)]


@pytest.mark.anyio
async def test_forget(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never(), "req_b": Timeline.never()})
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a")
        await poller.track("req_b")
        assert await poller.forget("req_a") is True
        assert await poller.forget("req_a") is False
        assert await poller.forget("req_unknown") is False
        assert "req_a" not in poller
        assert "req_b" in poller
        assert [e["request_id"] for e in poller.snapshot()] == ["req_b"]

        async def forget_later() -> None:
            await anyio.sleep(3 * scale)
            assert await poller.forget("req_b")

        async with anyio.create_task_group() as tg:
            tg.start_soon(forget_later)
            outcomes = await drain(poller)  # ends when the last task is forgotten
    assert outcomes == []
    assert poller.stats.tracked == 0


@pytest.mark.anyio
async def test_results_forever_keeps_waiting(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.finishing(0)})
    got: list[Outcome] = []
    async with running(service, **fast(scale)) as poller:

        async def consume() -> None:
            async for outcome in poller.results(forever=True):
                got.append(outcome)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(10 * scale)
            assert got == []  # nothing tracked, and still waiting
            await poller.track("req_a")
            await wait_until(lambda: len(got) == 1)
            await anyio.sleep(10 * scale)
            assert len(got) == 1
            tg.cancel_scope.cancel()
    assert got[0].kind is OutcomeKind.SUCCESS


# -- rate limits ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_429_pauses_every_worker(anyio_backend: Any, scale: float) -> None:
    pause = 20 * scale
    ids = [f"req_{n:02}" for n in range(30)]
    service = ChaosService(
        dict.fromkeys(ids, Timeline.finishing(0)),
        [Fault.NONE] * 3 + [Fault.RATE_LIMITED_AFTER],
        retry_after=pause,
    )
    margin = 0.0 if helpers.is_virtual(anyio_backend) else 0.05
    async with running(
        service, **fast(scale, max_in_flight=8, rate=50 / scale, deadline=1000 * scale)
    ) as poller:
        await poller.track_many(ids)
        outcomes = await drain(poller)
    assert {o.kind for o in outcomes} == {OutcomeKind.SUCCESS}
    assert len(finals(outcomes)) == len(ids)
    [limited] = [r for r in service.log if r.fault is Fault.RATE_LIMITED_AFTER]
    starts = [r.at for r in service.log]
    during = [t for t in starts if limited.at + margin < t < limited.at + pause - margin]
    assert during == []
    assert max(starts) >= limited.at + pause - margin
    assert (poller.stats.rate_limited, poller.stats.pauses) == (1, 1)


@pytest.mark.anyio
async def test_429_without_retry_after_backs_off_and_recovers(
    anyio_backend: Any, scale: float
) -> None:
    if not helpers.is_virtual(anyio_backend):
        pytest.skip("pauses of whole seconds: virtual time only")
    service = ChaosService(
        {"req_a": Timeline.finishing(0)},
        [Fault.RATE_LIMITED, Fault.RATE_LIMITED, Fault.RATE_LIMITED_DATE],
    )
    bucket = TokenBucket(1000, 10)
    async with running(service, **fast(scale), bucket=bucket) as poller:
        await poller.track("req_a")
        [outcome] = await drain(poller)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert poller.bucket is bucket
    gaps = [b.at - a.at for a, b in zip(service.log, service.log[1:], strict=False)]
    # 1 s, then 2 s (doubling without Retry-After; real seconds: the pause is the server's).
    assert gaps[0] >= 1.0 - 0.01
    assert gaps[1] >= 2.0 - 0.01
    assert poller.stats.rate_limited == 3


# -- webhooks ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_deliver_is_idempotent(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never(), "req_b": Timeline.never()})
    done = status_payload("req_a", Step(0, "success", "via webhook"))
    async with running(service, **fast(scale, initial_interval=1000 * scale)) as poller:
        await poller.track("req_a", deadline=10_000 * scale)
        await poller.track("req_b", deadline=10_000 * scale)
        pending = status_payload("req_b", Step(0, "pending"))
        assert await poller.deliver(pending) is DeliveryResult.ACCEPTED
        assert await poller.deliver(done) is DeliveryResult.ACCEPTED  # before the first poll
        assert await poller.deliver(done) is DeliveryResult.DUPLICATE
        assert await poller.deliver({**done, "status": "error"}) is DeliveryResult.DUPLICATE
        unknown = status_payload("req_zzz", Step(0, "success"))
        assert await poller.deliver(unknown) is DeliveryResult.UNKNOWN
        with pytest.raises(InvalidResponseError):
            await poller.deliver({"status": "success"})
        with pytest.raises(InvalidResponseError):
            await poller.deliver({"requestId": "req_b", "status": 7})  # no usable status
        outcome = await next_outcome(poller)
        await poller.forget("req_b")
        assert await drain(poller) == []
    assert (outcome.request_id, outcome.kind, outcome.polls) == ("req_a", OutcomeKind.SUCCESS, 0)
    assert outcome.status is not None
    assert outcome.status.text == "via webhook"
    assert service.log == []
    assert (poller.stats.deliveries, poller.stats.duplicate_deliveries) == (2, 2)


@pytest.mark.anyio
async def test_webhook_while_a_check_is_in_flight(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never()}, hang=True)
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a")
        await wait_until(lambda: service.active == 1)
        await poller.deliver(status_payload("req_a", Step(0, "error", "boom")))
        [outcome] = await drain(poller)
    assert outcome.kind is OutcomeKind.ERROR
    assert outcome.polls == 1
    assert service.active == 0


# -- fatal errors -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_401_is_raised_from_the_iterator(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.finishing(0)}, key="another-key")
    async with running(service, **fast(scale)) as poller:
        await poller.track("req_a")
        with pytest.raises(AuthenticationError):
            await drain(poller)
        with pytest.raises(AuthenticationError):  # and again: it concerns every task
            await next_outcome(poller)
        assert [e["request_id"] for e in poller.snapshot()] == ["req_a"]
        await anyio.sleep(10 * scale)
    assert len(service.log) == 1  # no more requests with a refused key


@pytest.mark.anyio
async def test_403_is_raised_from_the_iterator(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.finishing(0), "req_b": Timeline.finishing(0)})
    service.forced["req_a"] = 403
    async with running(service, **fast(scale, max_in_flight=1)) as poller:
        await poller.track("req_a")
        await poller.track("req_b", deadline=1000 * scale)
        with pytest.raises(PermissionDeniedError):
            await drain(poller)


# -- cancellation and checkpoints -------------------------------------------------------


@pytest.mark.anyio
async def test_leaving_mid_flight_leaves_nothing_running(scale: float) -> None:
    ids = [f"req_{n}" for n in range(10)]
    service = ChaosService(dict.fromkeys(ids, Timeline.never()), hang=True)
    before = {task.id for task in anyio.get_running_tasks()}
    with anyio.move_on_after(5 * scale):
        async with running(service, **fast(scale, max_in_flight=4)) as poller:
            await poller.track_many(ids)
            await drain(poller)
    assert len(service.log) == 4
    assert service.active == 0
    assert service.cancelled == 4
    assert {task.id for task in anyio.get_running_tasks()} == before
    assert sorted(e["request_id"] for e in poller.snapshot()) == ids
    with pytest.raises(RuntimeError):
        await poller.track("req_new")


@pytest.mark.anyio
async def test_snapshot_and_restore_round_trip(scale: float) -> None:
    service = ChaosService(
        {
            "req_wait": Timeline.never(),
            "req_done": Timeline.finishing(0),
            "req_late": Timeline.finishing(0),
        }
    )
    lazy = fast(scale, initial_interval=1000 * scale, max_interval=1000 * scale)
    async with running(service, **lazy) as poller:
        await poller.track("req_wait", deadline=20 * scale, context={"user": 7})
        await poller.track("req_done", context=object())  # not JSON: restored as None
        await poller.track("req_late", deadline=0)  # timed out, outcome not consumed
        await poller.deliver(status_payload("req_done", Step(0, "success")))  # queued, not consumed
        await wait_until(lambda: "req_late" not in poller)
        snapshot = json.loads(json.dumps(poller.snapshot()))
        assert len(poller) == 3
    assert sorted(e["request_id"] for e in snapshot) == ["req_done", "req_late", "req_wait"]
    entry = {e["request_id"]: e for e in snapshot}
    assert entry["req_wait"]["context"] == {"user": 7}
    assert entry["req_done"]["context"] is None
    assert entry["req_wait"]["deadline"] == pytest.approx(time.time() + 20 * scale, abs=1.0)

    async with running(service, **fast(scale)) as poller:
        started = anyio.current_time()
        assert await poller.restore(snapshot) == 3
        assert await poller.restore(snapshot) == 0  # already tracked
        outcomes = finals(await drain(poller))
        waited = anyio.current_time() - started
    assert outcomes["req_done"].kind is OutcomeKind.SUCCESS
    assert outcomes["req_late"].kind is OutcomeKind.TIMED_OUT
    assert outcomes["req_late"].polls == 0
    assert outcomes["req_wait"].kind is OutcomeKind.TIMED_OUT
    assert outcomes["req_wait"].context == {"user": 7}
    assert waited == pytest.approx(20 * scale, abs=max(0.5, 5 * scale))


@pytest.mark.anyio
async def test_restore_rejects_garbage(scale: float) -> None:
    async with running(ChaosService({}), **fast(scale)) as poller:
        for entry in ({}, {"request_id": "req_a"}, {"request_id": "req_a", "deadline": "soon"}):
            with pytest.raises(UsageError):
                await poller.restore([entry])


@pytest.mark.anyio
async def test_consumer_cancelled_before_taking_an_outcome_loses_nothing(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.finishing(0)})
    async with running(service, **fast(scale, initial_interval=1000 * scale)) as poller:
        await poller.track("req_a")
        await poller.deliver(status_payload("req_a", Step(0, "success")))
        with anyio.CancelScope() as scope:
            scope.cancel()
            await next_outcome(poller)
        assert [e["request_id"] for e in poller.snapshot()] == ["req_a"]
        [outcome] = await drain(poller)
    assert outcome.kind is OutcomeKind.SUCCESS


# -- stats ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_count_what_happened(scale: float) -> None:
    service = ChaosService(
        {"req_a": Timeline.finishing(0), "req_b": Timeline.never()},
        [Fault.HTTP_500, Fault.UNKNOWN_STATUS, Fault.RESET, Fault.RATE_LIMITED_AFTER],
        retry_after=2 * scale,
    )
    async with running(service, **fast(scale, max_in_flight=1)) as poller:
        await poller.track("req_a")
        await poller.track("req_b", deadline=20 * scale)
        await poller.deliver(status_payload("req_x", Step(0, "success")))
        outcomes = await drain(poller)
        await poller.deliver(status_payload("req_a", Step(0, "success")))
        stats = poller.stats
    assert {o.request_id: o.kind for o in outcomes} == {
        "req_a": OutcomeKind.SUCCESS,
        "req_b": OutcomeKind.TIMED_OUT,
    }
    assert stats.polls_sent == len(service.log)
    assert stats.retries == 2
    assert stats.unknown_statuses == 1
    assert (stats.rate_limited, stats.pauses) == (1, 1)
    assert (stats.deliveries, stats.duplicate_deliveries) == (0, 1)
    assert (stats.tracked, stats.in_flight, stats.submits_sent) == (0, 0, 0)
    assert stats.outcomes[OutcomeKind.SUCCESS] == stats.outcomes[OutcomeKind.TIMED_OUT] == 1
    data = json.loads(json.dumps(stats.as_dict()))
    assert data["outcomes"]["timed-out"] == 1
    b_out = next(o for o in outcomes if o.request_id == "req_b")
    assert b_out.polls >= 1
    assert b_out.error is None or isinstance(
        b_out.error, ServerError | InvalidResponseError | RateLimitedError
    )


# -- misuse -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_misuse_is_refused(scale: float) -> None:
    service = ChaosService({"req_a": Timeline.never()})
    async with client_for(service) as client:
        for bad in (
            {"rate": -1},
            {"rate": 0},
            {"rate": math.nan},
            {"deadline": -5},
            {"deadline": 0},
            {"initial_interval": 0},
            {"max_in_flight": 0},
            {"max_in_flight": 2.5},
            {"jitter": 1.0},
            {"burst": 0},
        ):
            with pytest.raises(UsageError):
                Poller(client, **bad)
        with pytest.raises(UsageError):
            Poller("not a client")  # type: ignore[arg-type]

        poller = Poller(client, **fast(scale))
        with pytest.raises(RuntimeError, match="async with"):
            await poller.track("req_a")
        with pytest.raises(RuntimeError, match="async with"):
            poller.results()
        with pytest.raises(PollerUnavailable):
            await poller.deliver({"requestId": "req_a"})
        async with poller:
            with pytest.raises(RuntimeError):
                await poller.__aenter__()
            for deadline in (-1, math.nan, "10", True):
                with pytest.raises(UsageError):
                    await poller.track("req_a", deadline=deadline)  # type: ignore[arg-type]
            assert "req_a" not in poller
            await poller.track("req_a")

            async def iterate() -> None:
                await drain(poller)

            async with anyio.create_task_group() as tg:
                tg.start_soon(iterate)
                await anyio.sleep(scale)
                with pytest.raises(RuntimeError, match="already being iterated"):
                    await next_outcome(poller)
                tg.cancel_scope.cancel()
        with pytest.raises(RuntimeError):
            await poller.track("req_b")
        with pytest.raises(RuntimeError):
            await next_outcome(poller)
