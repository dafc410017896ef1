"""`async_dispatch.aiohttp`: the cleanup context, app keys and webhook handler, served."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from _webhooks_helpers import bound_socket, other_tasks, wait_until
from async_dispatch import DispatchClient, OutcomeKind
from async_dispatch.aiohttp import (
    RUNTIME_KEY,
    get_poller,
    get_runtime,
    setup_dispatch,
    webhook_handler,
)
from async_dispatch.testing import Durations, OutcomeMix, Simulator, SimulatorConfig, serve_asgi
from async_dispatch.webhooks import DispatchRuntime

SECRET = "aiohttp-secret-" + "w" * 30


pytestmark = pytest.mark.asyncio_only  # uvicorn and aiohttp run on asyncio only


async def submit(request: web.Request) -> web.Response:
    request_id = await get_runtime(request).submit(await request.text())
    return web.json_response({"request_id": request_id})


async def tracked(request: web.Request) -> web.Response:
    return web.json_response({"tracked": get_poller(request).stats.tracked})


@pytest.mark.anyio
async def test_served_app_receives_webhooks_and_cleans_up() -> None:
    config = SimulatorConfig(
        seed=2, durations=Durations.fixed(0.1), outcomes=OutcomeMix.only("success")
    )
    with bound_socket() as (sim_sock, sim_port), bound_socket() as (sock, port):
        async with Simulator(config) as sim, serve_asgi(sim.app, sim_sock):
            before = other_tasks()
            runtime = DispatchRuntime(
                DispatchClient(
                    api_key="sim-key",
                    base_url=sim.base_url_on(sim_port),
                    execution_mode="cloud",
                ),
                callback_url=f"http://127.0.0.1:{port}/custom/hook",
                callback_secret=SECRET,
                max_body_size=1000,
                safety_interval=30,
            )
            app = web.Application()
            setup_dispatch(app, runtime, path=None)
            app.router.add_post("/custom/hook", webhook_handler)
            app.router.add_post("/submit", submit)
            app.router.add_get("/tracked", tracked)
            assert app[RUNTIME_KEY] is runtime
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            try:
                await web.SockSite(runner, sock).start()
                assert runtime.running
                base = f"http://127.0.0.1:{port}"
                async with aiohttp.ClientSession(base) as http:
                    async with http.post("/submit", data="hello") as response:
                        request_id = (await response.json())["request_id"]
                    async with http.get("/tracked") as response:
                        assert await response.json() == {"tracked": 1}
                    await wait_until(lambda: runtime.outcome(request_id) is not None)
                    outcome = runtime.outcome(request_id)
                    assert outcome is not None
                    assert (outcome.kind, outcome.polls) == (OutcomeKind.SUCCESS, 0)

                    async def chunks() -> AsyncIterator[bytes]:
                        for _ in range(20):
                            yield b"z" * 100

                    # Chunked, no Content-Length: refused once the limit is passed.
                    async with http.post("/custom/hook", data=chunks()) as response:
                        assert response.status == 413
                        assert json.loads(await response.read())["reason"] == "too_large"
                    async with http.post("/custom/hook", data=b"x" * 1001) as response:
                        assert response.status == 413
                    forged = {"requestId": request_id, "callbackSecret": "guess"}
                    async with http.post("/custom/hook", json=forged) as response:
                        assert response.status == 401
            finally:
                await runner.cleanup()
            assert "stopped" in repr(runtime)
            await wait_until(lambda: other_tasks() <= before, timeout=3)


@pytest.mark.anyio
async def test_handler_answers_503_until_the_app_has_started() -> None:
    app = web.Application()
    client = DispatchClient(api_key="k", base_url="http://127.0.0.1:9")
    setup_dispatch(app, DispatchRuntime(client, callback_url="http://x.test/hook"))
    assert [r.method for r in app.router.routes()] == ["POST"]
    request = make_mocked_request("POST", "/webhooks/dispatch", app=app)
    response = await webhook_handler(request)
    assert response.status == 503
    assert json.loads(response.body) == {"ok": False, "reason": "unavailable"}  # type: ignore[arg-type]


TOKEN = "Bearer " + "a" * 40


async def raw_post(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Send `head` and `body` over a plain loopback socket; the answer's status line."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(head + body)
        answer = b""
        while b"\r\n" not in answer:
            answer += await stream.receive()
        return answer.split(b"\r\n", 1)[0]


def head(token: str, length: int) -> bytes:
    lines = ["POST /webhooks/dispatch HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"Authorization: {token}", "Content-Type: application/json"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.anyio
async def test_headers_are_checked_before_the_body_and_slow_bodies_get_408() -> None:
    async with Simulator(SimulatorConfig(seed=1)) as sim:
        runtime = DispatchRuntime(
            sim.client(),
            callback_url="http://127.0.0.1/webhooks/dispatch",
            callback_secret=SECRET,
            header_name="Authorization",
            header_value=TOKEN,
        )
        runtime.receiver.body_timeout = 0.5
        app = web.Application()
        setup_dispatch(app, runtime)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        with bound_socket() as (sock, port):
            try:
                await web.SockSite(runner, sock).start()
                with anyio.fail_after(5):
                    # No token: refused at once, though the declared body never comes.
                    assert await raw_post(port, head("Bearer guess", 500)) == (
                        b"HTTP/1.1 401 Unauthorized"
                    )
                    started = anyio.current_time()
                    # The right token, then a body that stalls after 10 of 500 bytes.
                    status = await raw_post(port, head(TOKEN, 500), b'{"request')
                    assert status == b"HTTP/1.1 408 Request Timeout"
                    assert anyio.current_time() - started >= 0.45
            finally:
                await runner.cleanup()
