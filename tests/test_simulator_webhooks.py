"""Webhooks: delivered when a task finishes (and on input requests when asked), with the
secret and headers given at submit, retried when they fail, sometimes dropped or doubled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import httpx
import pytest

from async_dispatch.testing import Simulator, SimulatorConfig, Webhooks

KEY = "sim-key"
HOOK = "http://127.0.0.1/hooks/dispatch"


pytestmark = pytest.mark.virtual_clock  # trio on a MockClock: waits cost no real time


@attrs.define
class Call:
    headers: dict[str, str]
    payload: dict[str, Any]
    at: float


@attrs.define
class Receiver:
    """A tiny ASGI webhook receiver that records calls and fails the first ``fail_first``."""

    fail_first: int = 0
    calls: list[Call] = attrs.Factory(list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.calls.append(Call(headers, json.loads(body), anyio.current_time()))
        status = 500 if len(self.calls) <= self.fail_first else 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def hooks(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as client:
        yield client


async def submit(sim: Simulator, **fields: Any) -> str:
    body = {"prompt": "x", "executionMode": "cloud", "callbackUrl": HOOK, **fields}
    response = await sim.http_client().post(
        "/remote-dispatch", json=body, headers={"x-api-key": KEY}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["requestId"])


def config(**webhooks: Any) -> SimulatorConfig:
    return SimulatorConfig(seed=5, webhooks=Webhooks(backoff=0.01, **webhooks))


@pytest.mark.anyio
async def test_a_finished_task_is_delivered_with_secret_and_headers(
    receiver: Receiver, hooks: httpx.AsyncClient
) -> None:
    async with Simulator(config(), webhook_client=hooks) as sim:
        request_id = await submit(
            sim,
            callbackSecret="s3cret",
            callbackHeaders={"Authorization": "Bearer t0k"},
            simulate={"outcome": "success", "duration": 0.2},
        )
        with anyio.fail_after(5):
            await sim.wait_webhooks()
        status = await sim.http_client().get(
            f"/remote-dispatch/responses/{request_id}", headers={"x-api-key": KEY}
        )

    (call,) = receiver.calls
    completion = sim.task_completed_at(request_id)
    assert completion is not None
    assert call.at >= completion.clock  # not a moment before the task finished
    assert call.headers["authorization"] == "Bearer t0k"
    assert call.headers["content-type"] == "application/json"
    assert call.payload == {**status.json(), "requestId": request_id, "callbackSecret": "s3cret"}
    assert sim.stats.webhooks_sent == sim.stats.webhooks_delivered == 1


@pytest.mark.anyio
async def test_an_error_is_delivered_and_a_missing_secret_is_null(
    receiver: Receiver, hooks: httpx.AsyncClient
) -> None:
    async with Simulator(config(), webhook_client=hooks) as sim:
        await submit(sim, simulate={"outcome": "error", "duration": 0})
        await submit(sim, simulate={"outcome": "never"})  # nothing to deliver, ever
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    (call,) = receiver.calls
    assert call.payload["status"] == "error"
    assert call.payload["callbackSecret"] is None


@pytest.mark.anyio
async def test_input_requests_are_delivered_when_asked(
    receiver: Receiver, hooks: httpx.AsyncClient
) -> None:
    async with Simulator(config(notify_input_required=True), webhook_client=hooks) as sim:
        simulate = {"outcome": "input-required", "duration": 0.2, "inputRequests": 2}
        await submit(sim, simulate={**simulate, "inputWait": 0.1})
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    statuses = [call.payload["status"] for call in receiver.calls]
    assert statuses == ["input-required", "input-required", "success"]
    first, second = (call.payload["hitlInputMetadata"]["inputId"] for call in receiver.calls[:2])
    assert first != second
    assert receiver.calls[0].payload["completedAt"] is None


@pytest.mark.anyio
@pytest.mark.parametrize("notify_input_required", [False, True])
async def test_a_task_that_ends_waiting_is_delivered_once_as_final(
    receiver: Receiver, hooks: httpx.AsyncClient, notify_input_required: bool
) -> None:
    """Its last input request opens as it ends: one delivery, with ``completedAt`` set."""
    webhooks = config(notify_input_required=notify_input_required)
    async with Simulator(webhooks, webhook_client=hooks) as sim:
        simulate = {"duration": 0.2, "inputRequests": 2, "inputWait": 0.1, "endsWaiting": True}
        await submit(sim, simulate=simulate)
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    calls = [(c.payload["status"], c.payload["completedAt"] is not None) for c in receiver.calls]
    early = [("input-required", False)] if notify_input_required else []
    assert calls == [*early, ("input-required", True)]
    assert receiver.calls[-1].payload["usage"] is not None


@pytest.mark.anyio
async def test_input_requests_are_not_delivered_by_default(
    receiver: Receiver, hooks: httpx.AsyncClient
) -> None:
    async with Simulator(config(), webhook_client=hooks) as sim:
        simulate = {"outcome": "input-required", "duration": 0, "inputWait": 0.1}
        await submit(sim, simulate=simulate)
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    assert [call.payload["status"] for call in receiver.calls] == ["success"]


@pytest.mark.anyio
async def test_a_failed_delivery_is_retried(hooks: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.fail_first = 2
    async with Simulator(config(), webhook_client=hooks) as sim:
        await submit(sim, simulate={"outcome": "success", "duration": 0})
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    assert len(receiver.calls) == 3
    assert receiver.calls[0].payload == receiver.calls[2].payload
    assert receiver.calls[2].at - receiver.calls[1].at >= 0.0199  # backoff doubled
    stats = sim.stats
    assert (stats.webhooks_sent, stats.webhooks_failed, stats.webhooks_delivered) == (3, 2, 1)


@pytest.mark.anyio
async def test_delivery_is_abandoned_after_max_attempts(
    hooks: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    async with Simulator(config(max_attempts=3), webhook_client=hooks) as sim:
        await submit(sim, simulate={"outcome": "success", "duration": 0})
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    assert len(receiver.calls) == 3
    assert sim.stats.webhooks_abandoned == 1
    assert sim.stats.webhooks_delivered == 0


@pytest.mark.anyio
async def test_an_unreachable_receiver_is_a_failed_delivery() -> None:
    """Nothing listens on port 1: connection refused, retried, abandoned (own httpx client)."""
    async with Simulator(config(max_attempts=2)) as sim:
        await submit(
            sim,
            callbackUrl="http://127.0.0.1:1/hook",
            simulate={"outcome": "success", "duration": 0},
        )
        with anyio.fail_after(60):  # virtual on trio, where connect timeouts may autojump
            await sim.wait_webhooks()

    assert (sim.stats.webhooks_sent, sim.stats.webhooks_abandoned) == (2, 1)


@pytest.mark.anyio
async def test_deliveries_can_be_dropped(hooks: httpx.AsyncClient, receiver: Receiver) -> None:
    async with Simulator(config(drop=1.0), webhook_client=hooks) as sim:
        await submit(sim, simulate={"outcome": "success", "duration": 0})
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    assert receiver.calls == []
    assert sim.stats.webhooks_dropped == 1


@pytest.mark.anyio
async def test_deliveries_can_be_duplicated(hooks: httpx.AsyncClient, receiver: Receiver) -> None:
    async with Simulator(config(duplicate=1.0), webhook_client=hooks) as sim:
        request_id = await submit(sim, simulate={"outcome": "success", "duration": 0})
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    assert [call.payload["requestId"] for call in receiver.calls] == [request_id, request_id]
    assert sim.stats.webhooks_duplicated == 1
    assert sim.stats.webhooks_delivered == 2


@pytest.mark.anyio
async def test_many_deliveries_share_one_scheduler(
    hooks: httpx.AsyncClient, receiver: Receiver
) -> None:
    async with Simulator(config(), webhook_client=hooks) as sim:
        for i in range(50):
            await submit(sim, simulate={"outcome": "success", "duration": (i % 7) / 20})
        assert sim.pending_webhooks == 50
        with anyio.fail_after(5):
            await sim.wait_webhooks()

    assert len(receiver.calls) == 50
    assert len({call.payload["requestId"] for call in receiver.calls}) == 50
    assert sim.pending_webhooks == 0


@pytest.mark.anyio
async def test_leaving_the_simulator_cancels_pending_deliveries(
    hooks: httpx.AsyncClient, receiver: Receiver
) -> None:
    async with Simulator(config(), webhook_client=hooks) as sim:
        await submit(sim, simulate={"outcome": "success", "duration": 3600})
        was_running = sim.running
    assert was_running
    assert not sim.running
    assert receiver.calls == []
