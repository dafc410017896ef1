"""The same simulator over real loopback TCP, served by uvicorn: lifespan starts it, a
dropped connection is a transport error for httpx, and leaving the block shuts it down."""

from __future__ import annotations

import logging

import anyio
import httpx
import pytest

from async_dispatch.testing import Faults, SimulatorConfig, serve

KEY = {"x-api-key": "sim-key"}


@pytest.mark.anyio
async def test_over_tcp(caplog: pytest.LogCaptureFixture) -> None:
    config = SimulatorConfig(seed=2, faults=Faults(drop=1.0, on_status=True))
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with (
        serve(config) as running,
        httpx.AsyncClient(base_url=running.base_url) as http,
    ):
        assert running.base_url == f"{running.origin}/fast/v2"
        assert running.origin == f"http://127.0.0.1:{running.port}"
        started = running.simulator.running  # the ASGI lifespan started it

        body = {
            "prompt": "x",
            "executionMode": "cloud",
            "simulate": {"outcome": "success", "duration": 0},
        }
        submitted = await http.post("/remote-dispatch", json=body, headers=KEY)
        unauthorised = await http.get("/remote-dispatch/responses/req_1")
        request_id = submitted.json()["requestId"]
        with pytest.raises(httpx.TransportError):
            await http.get(f"/remote-dispatch/responses/{request_id}", headers=KEY)

    assert started
    assert submitted.status_code == 202
    assert unauthorised.status_code == 401
    assert running.simulator.stats.faults["drop"] == 1
    assert not running.simulator.running  # and the lifespan stopped it
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.anyio
async def test_leaving_by_cancellation_shuts_the_server_down() -> None:
    port = 0
    with anyio.move_on_after(0.3):
        async with serve() as running:
            port = running.port
            async with httpx.AsyncClient(base_url=running.base_url) as http:
                assert (await http.get("/remote-dispatch/responses/x", headers=KEY)).status_code
            await anyio.sleep_forever()

    assert port
    assert not running.simulator.running
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)
