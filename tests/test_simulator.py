"""The simulator speaks the Remote Dispatch wire contract: routes, auth, validation, the
life of a task through every status, and the timestamps and bodies along the way."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest

from async_dispatch.testing import (
    Durations,
    OutcomeMix,
    Simulator,
    SimulatorConfig,
    simulator,
)
from async_dispatch.testing._clock import Clock
from async_dispatch.testing._submit import Simulate, Submission
from async_dispatch.testing._tasks import create_task

KEY = "sim-key"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")


pytestmark = pytest.mark.virtual_clock  # trio on a MockClock: waits cost no real time


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with simulator(seed=1) as running:
        yield running


@pytest.fixture
def http(sim: Simulator) -> httpx.AsyncClient:
    return sim.http_client()


async def submit(http: httpx.AsyncClient, body: Any, key: str | None = KEY) -> httpx.Response:
    headers = {"x-api-key": key} if key is not None else {}
    return await http.post("/remote-dispatch", json=body, headers=headers)


async def read(http: httpx.AsyncClient, request_id: str, key: str | None = KEY) -> httpx.Response:
    headers = {"x-api-key": key} if key is not None else {}
    return await http.get(f"/remote-dispatch/responses/{request_id}", headers=headers)


async def new_task(http: httpx.AsyncClient, **simulate: Any) -> str:
    response = await submit(http, {"prompt": "find jobs", "simulate": simulate})
    assert response.status_code == 202, response.text
    return str(response.json()["requestId"])


# -- submit and read --------------------------------------------------------------------


@pytest.mark.anyio
async def test_submit_answers_202_with_a_request_id(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    response = await submit(http, {"prompt": "/Operator find jobs"})

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"req_[0-9a-f]{12}", response.json()["requestId"])
    assert sim.stats.tasks_created == 1
    assert sim.stats.requests["submit"] == 1
    assert sim.stats.responses[202] == 1


@pytest.mark.anyio
async def test_routes_answer_under_any_base_url_prefix(sim: Simulator) -> None:
    http = sim.http_client(base_url="http://127.0.0.1/fast/v2")

    request_id = await new_task(http, outcome="success", duration=0)
    response = await read(http, request_id)

    assert response.status_code == 200
    assert response.json()["status"] == "success"


@pytest.mark.anyio
async def test_unknown_routes_and_methods(http: httpx.AsyncClient) -> None:
    assert (await http.get("/elsewhere", headers={"x-api-key": KEY})).status_code == 404
    assert (await http.get("/remote-dispatch", headers={"x-api-key": KEY})).status_code == 405
    wrong = await http.post("/remote-dispatch/responses/req_1", headers={"x-api-key": KEY})
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"


@pytest.mark.anyio
async def test_extra_fields_pass_through(http: httpx.AsyncClient) -> None:
    body = {
        "prompt": "hello",
        "attachments": [{"name": "a.txt"}],
        "variables": {"x": 1},
        "executionMode": "cloud",
        "clearChat": False,
        "timeZone": "America/Los_Angeles",
        "previousRequestId": None,
    }
    assert (await submit(http, body)).status_code == 202


# -- auth -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("key", [None, "", "wrong-key"])
async def test_a_missing_or_wrong_key_gets_401(sim: Simulator, key: str | None) -> None:
    http = sim.http_client()
    request_id = await new_task(http)

    for response in (await submit(http, {"prompt": "x"}, key), await read(http, request_id, key)):
        assert response.status_code == 401
        assert "detail" in response.json()
        assert "wrong-key" not in response.text
    assert sim.stats.tasks_created == 1


@pytest.mark.anyio
async def test_a_key_without_access_gets_403() -> None:
    async with simulator(forbidden_keys={"no-access"}) as sim:
        response = await submit(sim.http_client(), {"prompt": "x"}, "no-access")
    assert response.status_code == 403
    assert "no-access" not in response.text


@pytest.mark.anyio
async def test_a_task_is_unknown_to_other_keys() -> None:
    async with simulator(api_keys={"alice", "bob"}) as sim:
        http = sim.http_client()
        created = await submit(http, {"prompt": "x"}, "alice")
        request_id = created.json()["requestId"]

        as_alice = await read(http, request_id, "alice")
        as_bob = await read(http, request_id, "bob")
        unknown = await read(http, "req_000000000000", "bob")

    assert as_alice.status_code == 200
    assert as_bob.status_code == unknown.status_code == 404
    assert as_bob.content == unknown.content  # no hint that the id exists


# -- validation -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'"prompt"', None),
        (b"{}", "prompt"),
        (b'{"prompt": ""}', "prompt"),
        (b'{"prompt": "   "}', "prompt"),
        (b'{"prompt": 42}', "prompt"),
        (b'{"prompt": "x", "clearChat": "yes"}', "clearChat"),
        (b'{"prompt": "x", "browserWindowId": 7}', "browserWindowId"),
        (b'{"prompt": "x", "executionMode": "moon"}', "executionMode"),
        (b'{"prompt": "x", "responseFormat": "json"}', "responseFormat"),
        (b'{"prompt": "x", "callbackUrl": "ftp://h/x"}', "callbackUrl"),
        (b'{"prompt": "x", "callbackHeaders": {"a": 1}}', "callbackHeaders"),
        (b'{"prompt": "x", "simulate": {"outcome": "maybe"}}', "simulate"),
        (b'{"prompt": "x", "simulate": {"duration": -1}}', "simulate"),
        (b'{"prompt": "x", "simulate": {"inputRequests": 0}}', "simulate"),
    ],
)
async def test_a_bad_body_gets_422(
    sim: Simulator, http: httpx.AsyncClient, content: bytes, field: str | None
) -> None:
    response = await http.post(
        "/remote-dispatch",
        content=content,
        headers={"x-api-key": KEY, "content-type": "application/json"},
    )

    assert response.status_code == 422
    issues = response.json()["detail"]
    assert issues
    if field is not None:
        assert issues[0]["loc"][:2] == ["body", field]
    assert sim.stats.tasks_created == 0


# -- the life of a task -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_task_is_pending_then_succeeds(sim: Simulator, http: httpx.AsyncClient) -> None:
    request_id = await new_task(http, outcome="success", duration=0.5)

    pending = (await read(http, request_id)).json()
    await anyio.sleep(0.6)
    done = (await read(http, request_id)).json()

    assert pending == {
        "status": "pending",
        "response": None,
        "createdAt": pending["createdAt"],
        "completedAt": None,
        "usage": None,
        "browserWindowId": None,
        "hitlInputMetadata": None,
    }
    assert ISO.fullmatch(pending["createdAt"])
    assert done["status"] == "success"
    assert done["createdAt"] == pending["createdAt"]
    assert ISO.fullmatch(done["completedAt"])
    assert done["response"]["text"]
    assert done["response"]["output"] == {"type": "text", "text": done["response"]["text"]}
    assert isinstance(done["usage"]["actions"], int)
    assert isinstance(done["usage"]["credits"], float)
    took = datetime.fromisoformat(done["completedAt"]) - datetime.fromisoformat(done["createdAt"])
    assert took.total_seconds() == pytest.approx(0.5, abs=1e-5)


@pytest.mark.anyio
async def test_an_error_has_a_text_and_a_completion_time(http: httpx.AsyncClient) -> None:
    request_id = await new_task(http, outcome="error", duration=0)

    body = (await read(http, request_id)).json()

    assert body["status"] == "error"
    assert body["response"]["text"]
    assert ISO.fullmatch(body["completedAt"])


@pytest.mark.anyio
async def test_input_required_returns_to_pending_then_finishes(http: httpx.AsyncClient) -> None:
    """Two input requests with distinct ids, completedAt null until the very end."""
    request_id = await new_task(
        http, outcome="input-required", duration=0.45, inputWait=0.15, inputRequests=2
    )
    seen: list[tuple[str, str | None]] = []
    with anyio.fail_after(5):
        while not seen or seen[-1][0] != "success":
            body = (await read(http, request_id)).json()
            if body["status"] != "success":
                assert body["completedAt"] is None
            hitl = body["hitlInputMetadata"]
            step = (body["status"], hitl["id"] if hitl else None)
            if not seen or seen[-1] != step:
                seen.append(step)
            await anyio.sleep(0.01)

    statuses = [status for status, _ in seen]
    assert statuses == [
        "pending",
        "input-required",
        "pending",
        "input-required",
        "pending",
        "success",
    ]
    first, second = seen[1][1], seen[3][1]
    assert first
    assert second
    assert first != second


@pytest.mark.anyio
async def test_input_required_body(http: httpx.AsyncClient) -> None:
    request_id = await new_task(http, outcome="input-required", duration=0, inputWait=60)

    body = (await read(http, request_id)).json()

    assert body["status"] == "input-required"
    assert body["response"]["text"]
    assert body["completedAt"] is None
    assert body["hitlInputMetadata"]["id"].startswith("hitl_")


@pytest.mark.anyio
async def test_input_required_can_end_in_error(http: httpx.AsyncClient) -> None:
    request_id = await new_task(
        http, outcome="input-required", duration=0, inputWait=0.05, finalOutcome="error"
    )
    await anyio.sleep(0.1)
    assert (await read(http, request_id)).json()["status"] == "error"


@pytest.mark.anyio
async def test_a_never_task_stays_pending(sim: Simulator, http: httpx.AsyncClient) -> None:
    request_id = await new_task(http, outcome="never")

    await anyio.sleep(0.2)
    body = (await read(http, request_id)).json()

    assert body["status"] == "pending"
    assert sim.task_completed_at(request_id) is None


@pytest.mark.anyio
async def test_completion_time_is_exposed_in_clock_and_wall_time(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    before = anyio.current_time()
    request_id = await new_task(http, outcome="success", duration=0.3)
    after = anyio.current_time()

    completion = sim.task_completed_at(request_id)
    await anyio.sleep(0.3)
    body = (await read(http, request_id)).json()

    assert completion is not None
    assert before + 0.3 <= completion.clock <= after + 0.3
    assert completion.wall.isoformat(timespec="microseconds") == body["completedAt"]
    assert sim.task_completed_at("req_unknown") is None


@pytest.mark.anyio
async def test_time_scale_compresses_simulated_durations() -> None:
    async with simulator(time_scale=0.01) as sim:
        request_id = await new_task(sim.http_client(), outcome="success", duration=60)
        completion = sim.task_completed_at(request_id)
        assert completion is not None
        assert completion.clock - anyio.current_time() <= 0.6


@pytest.mark.anyio
async def test_structured_output_follows_the_response_format(http: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
        },
    }
    body = {
        "prompt": "x",
        "responseFormat": {"type": "jsonSchema", "jsonSchema": schema},
        "browserWindowId": "win-1",
        "simulate": {"outcome": "success", "duration": 0},
    }
    request_id = (await submit(http, body)).json()["requestId"]

    done = (await read(http, request_id)).json()

    assert done["browserWindowId"] == "win-1"
    assert done["response"]["output"] == {
        "type": "structured",
        "content": {"title": "example", "count": 1, "tags": ["example"], "kind": "a"},
    }


@pytest.mark.anyio
async def test_the_run_draws_outcomes_and_durations_from_its_config() -> None:
    config = SimulatorConfig(outcomes=OutcomeMix.only("error"), durations=Durations.fixed(0))
    async with simulator(config) as sim:
        http = sim.http_client()
        response = await submit(http, {"prompt": "x"})
        body = (await read(http, response.json()["requestId"])).json()
    assert body["status"] == "error"


def test_a_task_phase_is_a_pure_function_of_time() -> None:
    submission = Submission(
        prompt="x",
        simulate=Simulate(outcome="input-required", duration=3, input_wait=1, input_requests=2),
    )
    task = create_task(
        submission,
        request_id="req_x",
        api_key="k",
        now=100.0,
        config=SimulatorConfig(),
        clock=Clock(),
        rng=random.Random(0),
    )

    phases = [task.phase_at(t) for t in (100.5, 101.0, 101.5, 102.5, 103.5, 104.5, 105.0)]

    assert [phase for phase, _ in phases] == [
        "pending",
        "input-required",
        "input-required",
        "pending",
        "input-required",
        "pending",
        "success",
    ]
    assert phases[1][1] is phases[2][1]
    first, second = phases[1][1], phases[4][1]
    assert first is not None
    assert second is not None
    assert first.hitl_id != second.hitl_id
    assert task.events(include_input=True) == [101.0, 103.0, 105.0]
    assert task.events(include_input=False) == [105.0]


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(api_keys=set())
    with pytest.raises(ValueError):
        OutcomeMix(success=0, error=0, input_required=0, never=0)
    with pytest.raises(ValueError):
        SimulatorConfig(time_scale=0)


def test_an_unseeded_run_shows_its_seed() -> None:
    sim = Simulator()
    assert isinstance(sim.seed, int)
    assert str(sim.seed) in repr(sim)
