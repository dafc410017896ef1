"""Submitting through the poller: budget sharing with checks, webhooks that beat the
submit's answer, and errors that leave the ``async with`` unwrapped."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import httpx
import pytest

import _poller_helpers as helpers
from async_dispatch import (
    AuthenticationError,
    DeliveryResult,
    DispatchClient,
    OutcomeKind,
    Poller,
    RetryPolicy,
    UsageError,
)

pytestmark = pytest.mark.virtual_clock  # trio runs on a virtual clock
scale = helpers.scale
wait_until = helpers.wait_until

KEY = "sk-test-submits"
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def pending(request_id: str) -> dict[str, Any]:
    return {
        "status": "pending",
        "response": None,
        "createdAt": "2024-12-19T00:00:00.000000+00:00",
        "completedAt": None,
        "requestId": request_id,
    }


def success(request_id: str) -> dict[str, Any]:
    return {
        **pending(request_id),
        "status": "success",
        "response": {"text": "done"},
        "completedAt": "2024-12-19T00:01:10.000000+00:00",
    }


def client(handler: Handler) -> DispatchClient:
    return DispatchClient(
        api_key=KEY,
        base_url="http://127.0.0.1:9",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry=RetryPolicy(attempts=1),
        execution_mode="cloud",
    )


@pytest.mark.anyio
async def test_an_auth_error_leaves_the_block_unwrapped(scale: float) -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "bad key"})

    async def track_one() -> None:
        async with Poller(client(refuse), initial_interval=0.1 * scale) as poller:
            await poller.track("req_1")
            async for _ in poller:
                pass

    with pytest.raises(AuthenticationError):  # not an ExceptionGroup
        await track_one()


@pytest.mark.anyio
async def test_a_webhook_that_beats_the_submit_answer_is_kept(scale: float) -> None:
    """A fast service can call back before the POST's answer is read: not a 404."""
    answer_submit = anyio.Event()
    submit_received = anyio.Event()
    polls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            submit_received.set()
            await answer_submit.wait()
            return httpx.Response(202, json={"requestId": "req_fast"})
        polls.append(request.url.path)
        return httpx.Response(200, json=pending("req_fast"))

    async with Poller(client(handler), initial_interval=10 * scale) as poller:
        async with anyio.create_task_group() as tg:
            tg.start_soon(poller.submit, "/Operator quick one")
            await submit_received.wait()
            assert await poller.deliver(success("req_fast")) is DeliveryResult.ACCEPTED
            answer_submit.set()
        outcomes = [outcome async for outcome in poller]

    assert [(o.request_id, o.kind) for o in outcomes] == [("req_fast", OutcomeKind.SUCCESS)]
    assert polls == []  # resolved by the webhook alone


@pytest.mark.anyio
async def test_an_unclaimed_early_webhook_is_dropped_when_submits_end(scale: float) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json={"requestId": "req_mine"})

    async with Poller(client(handler), initial_interval=10 * scale) as poller:
        submit_done = anyio.Event()

        async def submit() -> None:
            await poller.submit("/Operator mine")
            submit_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit)
            await anyio.lowlevel.checkpoint()
            await poller.deliver(success("req_stranger"))
        await submit_done.wait()
        assert await poller.deliver(success("req_stranger")) is DeliveryResult.UNKNOWN
        assert "req_stranger" not in poller
        await poller.forget("req_mine")


@pytest.mark.anyio
async def test_many_submitters_do_not_starve_the_checks(scale: float) -> None:
    """Forty concurrent submits and twenty due checks share a saturated budget about
    evenly: the submits queue in the bucket one at a time, beside one dispatching worker."""
    ids = itertools.count()
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "POST":
            return httpx.Response(202, json={"requestId": f"req_new{next(ids)}"})
        return httpx.Response(200, json=pending(request.url.path.rsplit("/", 1)[-1]))

    rate = 20 / scale  # 20 grants per virtual second
    async with Poller(
        client(handler),
        rate=rate,
        burst=1,
        initial_interval=0.01 * scale,
        max_interval=0.01 * scale,
        jitter=0.0,
    ) as poller:
        for n in range(20):
            await poller.track(f"req_old{n}")
        await anyio.sleep(0.02 * scale)  # every check is due
        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(poller.submit, "/Operator more")
        for request_id in list(poller.snapshot()):
            await poller.forget(request_id["request_id"])

    submits = seen.count("POST")
    checks = seen.count("GET")
    assert submits == 40
    # Without the lane, checks would get about 1 grant in 41 while submits queue.
    assert checks >= 30, (checks, submits)


@pytest.mark.anyio
async def test_a_poller_needs_an_open_client() -> None:
    unopened = DispatchClient(api_key=KEY, base_url="http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="not open"):
        async with Poller(unopened):
            pass


@pytest.mark.anyio
async def test_a_bad_deadline_is_refused_before_the_task_is_created() -> None:
    posts: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(202, json={"requestId": "req_1"})

    async with Poller(client(handler)) as poller:
        with pytest.raises(UsageError, match="deadline"):
            await poller.submit("/Operator go", deadline=-1)
    assert posts == []  # nothing created that could not be tracked
