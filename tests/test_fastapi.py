"""`async_dispatch.fastapi`, in process on both backends (the served app: test_examples)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from _webhooks_helpers import wait_until
from async_dispatch import OutcomeKind
from async_dispatch.fastapi import (
    PollerDep,
    RuntimeDep,
    dispatch_lifespan,
    get_runtime,
    webhook_router,
)
from async_dispatch.testing import Durations, OutcomeMix, Simulator, SimulatorConfig
from async_dispatch.webhooks import DispatchRuntime

SECRET = "fastapi-secret-" + "z" * 30
HOOK = "/hooks/dispatch"


pytestmark = pytest.mark.virtual_clock  # trio on a MockClock: waits cost no real time


def build_app(runtime: DispatchRuntime) -> FastAPI:
    app = FastAPI(lifespan=dispatch_lifespan(runtime))
    app.include_router(webhook_router(HOOK))

    @app.post("/submit")
    async def submit(prompt: str, dispatch: RuntimeDep) -> dict[str, str]:
        return {"request_id": await dispatch.submit(prompt)}

    @app.get("/submitted")
    async def submitted(poller: PollerDep) -> dict[str, int]:
        return {"submitted": poller.stats.submits_sent}

    return app


@contextlib.asynccontextmanager
async def app_and_simulator(**runtime_options: Any) -> AsyncIterator[tuple[FastAPI, Simulator]]:
    """The app, with the simulator delivering webhooks into it in process."""
    box: list[FastAPI] = []

    async def to_app(scope: Any, receive: Any, send: Any) -> None:
        await box[0](scope, receive, send)

    config = SimulatorConfig(
        seed=3, durations=Durations.fixed(0.1), outcomes=OutcomeMix.only("success")
    )
    transport = httpx.ASGITransport(app=to_app)
    async with (
        httpx.AsyncClient(transport=transport) as hooks,
        Simulator(config, webhook_client=hooks) as sim,
    ):
        runtime = DispatchRuntime(
            sim.client(),
            callback_url=f"http://app.test{HOOK}",
            callback_secret=SECRET,
            **runtime_options,
        )
        box.append(build_app(runtime))
        yield box[0], sim


async def post_in_chunks(app: FastAPI, path: str, chunks: list[bytes]) -> tuple[int, bytes, int]:
    """POST without Content-Length, body in chunks, straight through ASGI.

    Returns the status, the body and how many chunks the app never asked for.
    """
    pending = list(chunks)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app.test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("app.test", 80),
        "state": {},
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body, len(pending)


def http(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test")


@pytest.mark.anyio
async def test_lifespan_dependencies_and_webhook_route() -> None:
    async with app_and_simulator(safety_interval=30) as (app, sim), http(app) as client:
        async with app.router.lifespan_context(app):
            runtime = app.state.async_dispatch
            assert isinstance(runtime, DispatchRuntime)
            assert "running" in repr(runtime)
            response = await client.post("/submit", params={"prompt": "hello"})
            request_id = response.json()["request_id"]
            assert (await client.get("/submitted")).json() == {"submitted": 1}
            await wait_until(lambda: runtime.outcome(request_id) is not None)
            outcome = runtime.outcome(request_id)
            assert outcome is not None
            assert (outcome.kind, outcome.polls) == (OutcomeKind.SUCCESS, 0)
            assert sim.stats.webhooks_delivered == 1
            assert sim.stats.requests["status"] == 0
        # Shut down: state cleared, everything closed, webhooks refused with a retryable 503.
        assert not runtime.running
        assert not hasattr(app.state, "async_dispatch")
        late = await client.post(HOOK, content=b"{}")
        assert (late.status_code, late.json()) == (503, {"ok": False, "reason": "unavailable"})


@pytest.mark.anyio
async def test_webhook_route_answers_what_the_receiver_decides() -> None:
    async with (
        app_and_simulator(max_body_size=200) as (app, _),
        http(app) as client,
        app.router.lifespan_context(app),
    ):
        forged = {"requestId": "req_x", "status": "success", "callbackSecret": "guess"}
        response = await client.post(HOOK, json=forged)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"ok": False, "reason": "bad_secret"}
        assert (await client.post(HOOK, content=b"{")).status_code == 400
        unknown = {**forged, "callbackSecret": SECRET, "createdAt": "2024-12-19T00:00:00Z"}
        assert (await client.post(HOOK, json=unknown)).status_code == 404
        # Too large, whether declared up front or only found while streaming.
        assert (await client.post(HOOK, content=b"x" * 201)).status_code == 413

        status, body, unread = await post_in_chunks(app, HOOK, [b"y" * 50] * 10)
        assert (status, json.loads(body)["reason"]) == (413, "too_large")
        assert unread == 5  # stopped reading at the limit


@pytest.mark.anyio
async def test_dependency_without_lifespan_says_what_to_do() -> None:
    async with app_and_simulator() as (app, _):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            with pytest.raises(RuntimeError, match="dispatch_lifespan"):
                await client.get("/submitted")


def test_get_runtime_is_a_plain_function_of_the_request() -> None:
    # FastAPI's dependency injection needs nothing but the request: no module globals.
    app = FastAPI()
    marker = object.__new__(DispatchRuntime)
    app.state.async_dispatch = marker

    class FakeRequest:
        def __init__(self) -> None:
            self.app = app

    assert get_runtime(FakeRequest()) is marker  # type: ignore[arg-type]


async def post_scripted(
    app: FastAPI, messages: list[dict[str, Any]], headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, dict[str, Any], int]:
    """POST through ASGI with `receive()` answering `messages` in turn, then never.

    Returns the status, the JSON body and how many times the app called `receive()`.
    """
    pending = list(messages)
    calls = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if pending:
            return pending.pop(0)
        await anyio.sleep_forever()  # a sender that stalls mid-body
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": HOOK,
        "raw_path": HOOK.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app.test"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("app.test", 80),
        "state": {},
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), calls


PART = {"type": "http.request", "body": b'{"requestId": "req_', "more_body": True}


@pytest.mark.anyio
async def test_a_body_that_stalls_gets_408_after_body_timeout() -> None:
    async with app_and_simulator() as (app, _), app.router.lifespan_context(app):
        app.state.async_dispatch.receiver.body_timeout = 0.5
        with anyio.fail_after(5):
            status, body, _ = await post_scripted(app, [PART])
        assert (status, body["reason"]) == (408, "too_slow")


@pytest.mark.anyio
async def test_a_sender_that_leaves_mid_body_is_no_application_error() -> None:
    """http.disconnect mid-body: reported, answered to nobody, nothing raised (uvicorn
    would log "Exception in ASGI application" with a traceback for an exception)."""
    async with app_and_simulator() as (app, _), app.router.lifespan_context(app):
        status, body, calls = await post_scripted(app, [PART, {"type": "http.disconnect"}])
        assert (status, body["reason"], calls) == (400, "disconnected", 2)


@pytest.mark.anyio
async def test_a_wrong_header_token_is_refused_before_the_body_is_read() -> None:
    token = "Bearer " + "t" * 40
    async with (
        app_and_simulator(header_name="authorization", header_value=token) as (app, _),
        app.router.lifespan_context(app),
    ):
        for headers in ([], [(b"authorization", b"Bearer guess")]):
            with anyio.fail_after(5):  # the body never comes: only the headers can answer
                status, body, calls = await post_scripted(app, [PART], headers)
            assert (status, body["reason"], calls) == (401, "bad_token", 0)
        declared = [(b"authorization", token.encode()), (b"content-length", b"99999999")]
        status, body, calls = await post_scripted(app, [PART], declared)
        assert (status, body["reason"], calls) == (413, "too_large", 0)
