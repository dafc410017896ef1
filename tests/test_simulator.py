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


CLOUD = {"executionMode": "cloud"}
"""What a submit needs besides its prompt: a mode that runs without a browser window."""


async def new_task(http: httpx.AsyncClient, **simulate: Any) -> str:
    response = await submit(http, {"prompt": "find jobs", **CLOUD, "simulate": simulate})
    assert response.status_code == 202, response.text
    return str(response.json()["requestId"])


# -- submit and read --------------------------------------------------------------------


@pytest.mark.anyio
async def test_submit_answers_202_with_a_request_id(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    response = await submit(http, {"prompt": "/Operator find jobs", **CLOUD})

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"req_[0-9a-f]{12}", response.json()["requestId"])
    assert sim.stats.tasks_created == 1
    assert sim.stats.requests["submit"] == 1
    assert sim.stats.responses[202] == 1


@pytest.mark.anyio
async def test_the_api_answers_under_its_base_path_only(sim: Simulator) -> None:
    """A wrong base URL is a 404 on every path, never a task: the mistake shows at once."""
    assert sim.base_url == "http://127.0.0.1/fast/v2"
    http = sim.http_client()
    request_id = await new_task(http, outcome="success", duration=0)
    assert (await read(http, request_id)).json()["status"] == "success"

    for base in ("http://127.0.0.1", "http://127.0.0.1/v2", "http://127.0.0.1/fast/v2x"):
        wrong = sim.http_client(base_url=base)
        created = await submit(wrong, {"prompt": "x", **CLOUD})
        status = await read(wrong, request_id)
        assert created.status_code == status.status_code == 404, base
        assert created.json() == {"detail": "Not Found"}
    assert sim.stats.tasks_created == 1


@pytest.mark.anyio
async def test_the_base_path_is_configurable() -> None:
    async with simulator(base_path="/api") as sim:
        async with sim.client() as client:
            assert client.base_url == "http://127.0.0.1/api"
            request_id = await client.submit("x")
            assert (await client.get_status(request_id)).request_id == request_id
        root = sim.http_client(base_url="http://127.0.0.1")
        assert (await submit(root, {"prompt": "x", **CLOUD})).status_code == 404
    async with simulator(base_path="") as sim:
        assert (await submit(sim.http_client(), {"prompt": "x", **CLOUD})).status_code == 202
    with pytest.raises(ValueError, match="base_path"):
        SimulatorConfig(base_path="fast/v2")


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

    submitted = await submit(http, {"prompt": "x", **CLOUD}, key)
    for response in (submitted, await read(http, request_id, key)):
        assert response.status_code == 401
        assert "detail" in response.json()
        assert "wrong-key" not in response.text
    assert sim.stats.tasks_created == 1


@pytest.mark.anyio
async def test_a_key_without_access_gets_403() -> None:
    async with simulator(forbidden_keys={"no-access"}) as sim:
        response = await submit(sim.http_client(), {"prompt": "x", **CLOUD}, "no-access")
    assert response.status_code == 403
    assert "no-access" not in response.text


@pytest.mark.anyio
async def test_a_task_is_unknown_to_other_keys() -> None:
    async with simulator(api_keys={"alice", "bob"}) as sim:
        http = sim.http_client()
        created = await submit(http, {"prompt": "x", **CLOUD}, "alice")
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
        (b'{"prompt": "x", "callbackHeaders": ["a"]}', "callbackHeaders"),
        (b'{"prompt": "x"}', "browserWindowId"),
        (b'{"prompt": "x", "executionMode": "client"}', "browserWindowId"),
        (b'{"prompt": "x", "executionMode": null, "browserWindowId": ""}', "browserWindowId"),
        (b'{"prompt": "x", "executionMode": "cloud", "attachment": "f"}', "attachment"),
        (b'{"prompt": "x", "executionMode": "cloud", "simulate": {"inputKind": "x"}}', "simulate"),
        (
            b'{"prompt": "x", "executionMode": "cloud", '
            b'"simulate": {"outcome": "success", "endsWaiting": true}}',
            "simulate",
        ),
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
        assert ["body", field] in [issue["loc"][:2] for issue in issues]
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
    assert done["response"]["output"] == {"type": "text", "content": done["response"]["text"]}
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
            step = (body["status"], hitl["inputId"] if hitl else None)
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
    request_id = await new_task(
        http, outcome="input-required", duration=0, inputWait=60, inputKind="user_approval"
    )

    body = (await read(http, request_id)).json()

    assert body["status"] == "input-required"
    assert body["completedAt"] is None
    assert body["usage"] is None
    hitl = body["hitlInputMetadata"]
    assert hitl["inputId"].startswith("hitl_")
    assert hitl["action"] == {
        "name": "user_approval",
        "step_id": hitl["action"]["step_id"],
        "prompt_message": hitl["action"]["prompt_message"],
        "approve_label": "Place order",
        "reject_label": "Cancel",
    }
    text = hitl["action"]["prompt_message"]
    assert body["response"] == {"text": text, "output": {"type": "text", "content": text}}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("prompt_for_user_input", {"variables"}),
        ("prompt_for_user_file", {"variable_name"}),
        ("user_approval", {"approve_label", "reject_label"}),
    ],
)
async def test_each_kind_of_input_request_has_its_fields(
    http: httpx.AsyncClient, kind: str, fields: set[str]
) -> None:
    request_id = await new_task(
        http, outcome="input-required", duration=0, inputWait=60, inputKind=kind
    )

    action = (await read(http, request_id)).json()["hitlInputMetadata"]["action"]

    assert action["name"] == kind
    assert set(action) == {"name", "step_id", "prompt_message", *fields}
    for variable in action.get("variables", ()):
        assert set(variable) == {"name", "type", "required", "enum_values"}


@pytest.mark.anyio
async def test_input_kinds_are_drawn_from_the_seed() -> None:
    """Without an override each request's kind comes from its seeded id: all three show up,
    and the same seed gives the same kinds."""

    async def kinds(seed: int) -> list[str]:
        async with simulator(seed=seed, input_wait=60, durations=Durations.fixed(0)) as sim:
            http = sim.http_client()
            found = []
            for _ in range(12):
                request_id = await new_task(http, outcome="input-required")
                hitl = (await read(http, request_id)).json()["hitlInputMetadata"]
                found.append(hitl["action"]["name"])
            return found

    first = await kinds(5)
    assert set(first) == {"prompt_for_user_input", "prompt_for_user_file", "user_approval"}
    assert await kinds(5) == first
    async with simulator(input_kinds=["prompt_for_user_file"]) as sim:
        request_id = await new_task(sim.http_client(), outcome="input-required", duration=0)
        hitl = (await read(sim.http_client(), request_id)).json()["hitlInputMetadata"]
        assert hitl["action"]["name"] == "prompt_for_user_file"
    with pytest.raises(ValueError, match="input_kinds"):
        SimulatorConfig(input_kinds=["ask_nicely"])


@pytest.mark.anyio
async def test_the_response_can_be_null_while_waiting(http: httpx.AsyncClient) -> None:
    request_id = await new_task(
        http, outcome="input-required", duration=0, inputWait=60, inputResponse="null"
    )
    body = (await read(http, request_id)).json()
    assert body["status"] == "input-required"
    assert body["response"] is None
    assert body["hitlInputMetadata"]["inputId"]

    async with simulator(input_response="null", input_wait=60) as sim:
        request_id = await new_task(sim.http_client(), outcome="input-required", duration=0)
        assert (await read(sim.http_client(), request_id)).json()["response"] is None


@pytest.mark.anyio
async def test_the_legacy_field_name_for_input_requests(http: httpx.AsyncClient) -> None:
    """SDK <= 0.2.0 read the input request from ``activeInputRequest``."""
    request_id = await new_task(
        http, outcome="input-required", duration=0, inputWait=60, legacyInputField=True
    )
    body = (await read(http, request_id)).json()
    assert "hitlInputMetadata" not in body
    assert body["activeInputRequest"]["inputId"].startswith("hitl_")

    async with simulator(legacy_input_field=True) as sim:
        request_id = await new_task(sim.http_client(), outcome="success", duration=0)
        body = (await read(sim.http_client(), request_id)).json()
        assert "hitlInputMetadata" not in body
        assert body["activeInputRequest"] is None


@pytest.mark.anyio
async def test_a_task_can_end_waiting_for_input(http: httpx.AsyncClient) -> None:
    """``endsWaiting``: the last input request is where the task stops for good, with
    ``completedAt`` set, usage and a response; the official SDK stops polling there."""
    request_id = await new_task(
        http, duration=0.2, inputWait=0.05, inputRequests=2, endsWaiting=True
    )
    seen: list[tuple[str, str | None, bool]] = []
    with anyio.fail_after(5):
        while not seen or not seen[-1][2]:
            body = (await read(http, request_id)).json()
            hitl = body["hitlInputMetadata"]
            step = (
                body["status"],
                hitl["inputId"] if hitl else None,
                body["completedAt"] is not None,
            )
            if not seen or seen[-1] != step:
                seen.append(step)
            await anyio.sleep(0.01)
    await anyio.sleep(0.3)
    later = (await read(http, request_id)).json()

    assert [status for status, _, _ in seen] == [
        "pending",
        "input-required",
        "pending",
        "input-required",
    ]
    assert seen[1][1] != seen[3][1]
    assert later == body
    assert later["status"] == "input-required"
    assert ISO.fullmatch(later["completedAt"])
    assert later["usage"]["actions"] >= 1
    assert later["response"]["output"]["type"] == "text"


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
        response = await submit(http, {"prompt": "x", **CLOUD})
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
