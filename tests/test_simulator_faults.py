"""Injected faults look like the real failures they model, and replay by seed; the
per-key rate limit answers 429 with a Retry-After in either form."""

from __future__ import annotations

import email.utils
import json
from typing import Any

import anyio
import httpx
import pytest

from async_dispatch.testing import Faults, RateLimit, Simulator, SimulatorConfig, simulator

KEY = "sim-key"
HEADERS = {"x-api-key": KEY}


pytestmark = pytest.mark.virtual_clock  # trio on a MockClock: waits cost no real time


async def submit(http: httpx.AsyncClient, key: str = KEY) -> httpx.Response:
    body = {
        "prompt": "x",
        "executionMode": "cloud",
        "simulate": {"outcome": "success", "duration": 0},
    }
    return await http.post("/remote-dispatch", json=body, headers={"x-api-key": key})


async def read(http: httpx.AsyncClient, request_id: str, key: str = KEY) -> httpx.Response:
    return await http.get(f"/remote-dispatch/responses/{request_id}", headers={"x-api-key": key})


async def task_under(faults: Faults, **config: Any) -> tuple[Simulator, httpx.AsyncClient, str]:
    """A simulator with ``faults`` on reads, and one finished task on it."""
    sim = Simulator(SimulatorConfig(faults=faults, seed=3, **config))
    http = sim.http_client()
    response = await submit(http)
    assert response.status_code == 202
    return sim, http, response.json()["requestId"]


# -- each fault -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_server_error() -> None:
    sim, http, request_id = await task_under(Faults(server_error=1.0))
    codes = {(await read(http, request_id)).status_code for _ in range(30)}
    assert codes == {500, 502, 503, 504}
    response = await read(http, request_id)
    assert response.json() == {"error": response.reason_phrase}
    assert sim.stats.faults["server_error"] == 31


@pytest.mark.anyio
async def test_server_error_codes_can_be_chosen() -> None:
    _, http, request_id = await task_under(Faults(server_error=1.0, server_error_codes=(503,)))
    assert (await read(http, request_id)).status_code == 503


@pytest.mark.anyio
async def test_html_error_page() -> None:
    _, http, request_id = await task_under(Faults(html_error=1.0))
    response = await read(http, request_id)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


@pytest.mark.anyio
async def test_html_page_with_200() -> None:
    _, http, request_id = await task_under(Faults(html_ok=1.0))
    response = await read(http, request_id)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.anyio
async def test_truncated_json() -> None:
    _, http, request_id = await task_under(Faults(truncated_json=1.0))
    response = await read(http, request_id)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content.startswith(b'{"status":')
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.anyio
async def test_dropped_connection_is_a_transport_error() -> None:
    sim, http, request_id = await task_under(Faults(drop=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        await read(http, request_id)
    assert sim.stats.faults["drop"] == 1
    assert sim.stats.responses[200] == 0


@pytest.mark.anyio
async def test_slow_answer() -> None:
    _, http, request_id = await task_under(Faults(slow=1.0, slow_delay=0.2))
    start = anyio.current_time()
    response = await read(http, request_id)
    assert response.status_code == 200
    assert anyio.current_time() - start >= 0.2


@pytest.mark.anyio
async def test_a_slow_answer_past_the_read_timeout_times_out() -> None:
    _, http, request_id = await task_under(Faults(slow=1.0, slow_delay=30))
    with pytest.raises(httpx.ReadTimeout):
        await http.get(f"/remote-dispatch/responses/{request_id}", headers=HEADERS, timeout=0.1)


@pytest.mark.anyio
async def test_unknown_status_value() -> None:
    _, http, request_id = await task_under(Faults(unknown_status=1.0))
    response = await read(http, request_id)
    assert response.status_code == 200
    assert response.json()["status"] == "paused"


@pytest.mark.anyio
async def test_faults_spare_404s_unknown_status_only() -> None:
    _, http, _ = await task_under(Faults(unknown_status=1.0))
    assert (await read(http, "req_000000000000")).status_code == 404


@pytest.mark.anyio
async def test_faults_spare_submits_unless_asked() -> None:
    sim, http, _ = await task_under(Faults(server_error=1.0, drop=0.0))
    assert (await submit(http)).status_code == 202
    assert sim.stats.faults["server_error"] == 0


@pytest.mark.anyio
async def test_a_failed_submit_may_still_have_created_the_task() -> None:
    """The uncertain submit: the answer is lost, the task exists."""
    sim = Simulator(SimulatorConfig(faults=Faults(server_error=1.0, on_submit=True), seed=1))
    http = sim.http_client()
    response = await submit(http)
    assert response.status_code >= 500
    assert sim.stats.tasks_created == 1

    dropping = Simulator(SimulatorConfig(faults=Faults(drop=1.0, on_submit=True), seed=1))
    with pytest.raises(httpx.RemoteProtocolError):
        await submit(dropping.http_client())
    assert dropping.stats.tasks_created == 1
    (request_id,) = dropping.app.tasks
    ok = Simulator(SimulatorConfig(seed=1))  # same seed, no faults: same id
    assert (await submit(ok.http_client())).json()["requestId"] == request_id


@pytest.mark.anyio
async def test_faults_can_spare_reads() -> None:
    _, http, request_id = await task_under(Faults(server_error=1.0, on_status=False))
    assert (await read(http, request_id)).status_code == 200


def test_fault_probabilities_cannot_exceed_one() -> None:
    with pytest.raises(ValueError, match="sum"):
        Faults(server_error=0.6, drop=0.6)
    with pytest.raises(ValueError):
        Faults(slow=1.5)


# -- replay -----------------------------------------------------------------------------


async def run_of(seed: int) -> list[object]:
    """What 60 reads of a mixed-fault run look like."""
    faults = Faults(
        server_error=0.1,
        html_error=0.1,
        html_ok=0.1,
        truncated_json=0.1,
        drop=0.1,
        unknown_status=0.1,
        on_submit=True,
    )
    sim = Simulator(SimulatorConfig(faults=faults, seed=seed))
    http = sim.http_client()
    seen: list[object] = []
    request_id = "req_000000000000"
    for _ in range(6):
        try:
            response = await submit(http)
            seen.append((response.status_code, response.content))
            if response.status_code == 202 and response.content.endswith(b"}"):
                request_id = response.json()["requestId"]
        except httpx.TransportError as exc:
            seen.append(type(exc).__name__)
        for _ in range(10):
            try:
                response = await read(http, request_id)
                seen.append((response.status_code, response.content[:12]))
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
    return seen


@pytest.mark.anyio
async def test_the_same_seed_replays_the_same_faults() -> None:
    first, second, other = await run_of(11), await run_of(11), await run_of(12)
    assert first == second
    assert first != other
    assert "RemoteProtocolError" in first


# -- rate limit -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_rate_limit_answers_429_with_retry_after_seconds() -> None:
    async with simulator(rate_limit=RateLimit(rate=20, burst=2), api_keys={"a", "b"}) as sim:
        http = sim.http_client()
        assert (await submit(http, "a")).status_code == 202
        assert (await submit(http, "a")).status_code == 202
        limited = await submit(http, "a")
        assert (await submit(http, "b")).status_code == 202  # the limit is per key
        await anyio.sleep(0.06)
        assert (await submit(http, "a")).status_code == 202

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert "detail" in limited.json()
    assert sim.stats.rate_limited == 1
    assert sim.stats.tasks_created == 4


@pytest.mark.anyio
async def test_retry_after_as_an_http_date() -> None:
    limit = RateLimit(rate=0.5, burst=1, retry_after="http-date")
    async with simulator(rate_limit=limit) as sim:
        http = sim.http_client()
        await submit(http)
        limited = await submit(http)

    assert limited.status_code == 429
    retry_at = email.utils.parsedate_to_datetime(limited.headers["retry-after"])
    server_now = email.utils.parsedate_to_datetime(limited.headers["date"])
    assert retry_at.tzinfo is not None
    assert 2 <= (retry_at - server_now).total_seconds() <= 3


@pytest.mark.anyio
async def test_auth_failures_do_not_spend_tokens() -> None:
    async with simulator(rate_limit=RateLimit(rate=0.1, burst=1)) as sim:
        http = sim.http_client()
        assert (await submit(http, "wrong")).status_code == 401
        assert (await submit(http)).status_code == 202


@pytest.mark.anyio
async def test_the_busiest_window_stays_within_the_limit() -> None:
    rate, burst = 20.0, 5
    async with simulator(rate_limit=RateLimit(rate=rate, burst=burst)) as sim:
        http = sim.http_client()
        codes = []
        with anyio.move_on_after(0.6):
            while True:
                codes.append((await read(http, "req_000000000000")).status_code)
                await anyio.sleep(0.005)

    accepted = sim.accepted_request_times()
    assert len(accepted) == codes.count(404)
    assert codes.count(429) == sim.stats.rate_limited > 0
    assert burst < sim.rate_window_max(0.5) <= burst + rate * 0.5 + 1
    assert sim.rate_window_max(0.5, api_key=KEY) == sim.rate_window_max(0.5)
    assert sim.rate_window_max(0.5, api_key="nobody") == 0
