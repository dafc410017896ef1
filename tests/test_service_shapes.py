"""The poller on the shapes the real service sends, as its official SDK (narada 0.2.18)
reads them: completion by ``completedAt``, typed input requests under either field name,
no ``createdAt``, ids of any shape, text and structured output, usage.

A scripted server answers each id from a list of bodies, one per status request (the last
repeats), so each case says exactly what the service said and in which order. Every case
runs on asyncio and trio, with the memory store, with a fleet's `RedisStore`, and with
the third store of `tests/_third_store.py` (written from public names only).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import pytest

from _third_store import ListStore
from async_dispatch import (
    DispatchClient,
    InputKind,
    Outcome,
    OutcomeKind,
    Poller,
    RetryPolicy,
    TaskStore,
    TimeoutCause,
)
from redis_support import unavailable_reason

BASE_URL = "http://127.0.0.1:9/fast/v2"
KEY = "sk-shapes-0123456789"
_MARKER = "/remote-dispatch/responses/"
DONE_AT = "2026-01-01T00:01:10Z"


def text_success(text: str) -> dict[str, Any]:
    return {
        "status": "success",
        "response": {"text": text, "output": {"type": "text", "content": text}},
        "usage": {"actions": 7, "credits": 1.5},
        "completedAt": DONE_AT,
    }


def waiting(
    input_id: str, *, field: str = "hitlInputMetadata", done: bool = False
) -> dict[str, Any]:
    return {
        "status": "input-required",
        "response": None,
        "completedAt": DONE_AT if done else None,
        field: {
            "inputId": input_id,
            "action": {
                "name": "user_approval",
                "step_id": f"step-{input_id}",
                "prompt_message": f"approve {input_id}?",
                "approve_label": "Yes",
                "reject_label": "No",
            },
        },
    }


PENDING: dict[str, Any] = {"status": "pending", "response": None, "completedAt": None}

SCRIPTS: dict[str, list[dict[str, Any]]] = {
    # No createdAt anywhere; an id with / + = that must stay one path segment.
    "AbC/def+gh==": [PENDING, text_success("forty-two")],
    "0b9c6a4e-7f42-4d1e-9a57-3f1c2e8d6b10": [
        PENDING,
        {
            "status": "success",
            "response": {"text": "{}", "output": {"type": "structured", "content": {"n": 1}}},
            "usage": {"actions": 2, "credits": 0.5},
            "createdAt": "2026-01-01T00:00:00Z",
            "completedAt": DONE_AT,
        },
    ],
    # Two distinct input requests, the first read twice: two notifications, then success.
    "x" * 300: [waiting("in-1"), waiting("in-1"), waiting("in-2"), PENDING, text_success("ok")],
    # The same under the field name of SDK versions up to 0.2.0, ending in an error.
    "legacy-1": [
        waiting("in-a", field="activeInputRequest"),
        waiting("in-a", field="activeInputRequest"),
        waiting("in-b", field="activeInputRequest"),
        {
            "status": "error",
            "response": {"text": "boom", "output": {"type": "text", "content": "boom"}},
            "usage": {"actions": 1, "credits": 0.25},
            "completedAt": DONE_AT,
        },
    ],
    # A task that *ended* waiting for input: final at once, no further check.
    "req-1": [waiting("in-9", done=True)],
    # A finished task in a status this version does not know: FAILED, with the reading.
    "req-2": [{"status": "archived", "completedAt": DONE_AT}],
}


class ScriptedService:
    """Answers status requests from `SCRIPTS`, recording every id it was asked about."""

    def __init__(self, scripts: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.scripts = scripts
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode("ascii")
        segment = raw_path.split(_MARKER, 1)[1]
        assert "/" not in segment, raw_path  # one segment, whatever the id holds
        request_id = unquote(segment)
        script = self.scripts.get(request_id)
        if script is None:
            return httpx.Response(404, json={"detail": "Request not found"})
        index = min(self.asked.count(request_id), len(script) - 1)
        self.asked.append(request_id)
        return httpx.Response(200, json=script[index])


@pytest.fixture(params=["memory", "redis", "third"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def poller_over(
    service: ScriptedService, store_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[Poller]:
    store: TaskStore | None = ListStore() if store_kind == "third" else None
    if store_kind == "redis":
        reason = unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        from async_dispatch.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        name = request.getfixturevalue("redis_name")
        store = RedisStore(url, name=name, lease=5.0)
    http = httpx.AsyncClient(transport=httpx.MockTransport(service))
    client = DispatchClient(
        api_key=KEY, base_url=BASE_URL, http_client=http, retry=RetryPolicy(attempts=1)
    )
    async with (
        http,
        client,
        Poller(
            client,
            rate=1000,
            burst=100,
            deadline=20,
            initial_interval=0.02,
            max_interval=0.05,
            jitter=0.0,
            store=store,
        ) as poller,
    ):
        yield poller


async def outcomes_of(poller: Poller, request_ids: Sequence[str]) -> list[Outcome]:
    got: list[Outcome] = []
    with anyio.fail_after(15):
        await poller.track_many(request_ids)
        async for outcome in poller:
            got.append(outcome)
    return got


@pytest.mark.anyio
async def test_the_service_shapes_give_the_right_outcomes(
    store_kind: str, request: pytest.FixtureRequest
) -> None:
    service = ScriptedService(SCRIPTS)
    async with poller_over(service, store_kind, request) as poller:
        got = await outcomes_of(poller, list(SCRIPTS))
    by_id: dict[str, list[Outcome]] = {}
    for outcome in got:
        by_id.setdefault(outcome.request_id, []).append(outcome)
    assert set(by_id) == set(SCRIPTS)

    (plain,) = by_id["AbC/def+gh=="]
    assert plain.kind is OutcomeKind.SUCCESS
    assert plain.status is not None
    assert plain.status.text == "forty-two"
    assert plain.status.created_at is None
    assert plain.status.usage is not None
    assert (plain.status.usage.actions, plain.status.usage.credits) == (7, 1.5)

    (structured,) = by_id["0b9c6a4e-7f42-4d1e-9a57-3f1c2e8d6b10"]
    assert structured.kind is OutcomeKind.SUCCESS
    assert structured.status is not None
    assert structured.status.structured_output == {"n": 1}

    for request_id, ids, final in (
        ("x" * 300, ["in-1", "in-2"], OutcomeKind.SUCCESS),
        ("legacy-1", ["in-a", "in-b"], OutcomeKind.ERROR),
    ):
        outcomes = by_id[request_id]
        assert [o.kind for o in outcomes] == [OutcomeKind.INPUT_REQUIRED] * 2 + [final]
        assert [o.final for o in outcomes] == [False, False, True]
        notices = [o.input_request for o in outcomes[:2]]
        assert [n.input_id if n else None for n in notices] == ids
        assert all(n is not None and n.kind is InputKind.USER_APPROVAL for n in notices)

    (ended,) = by_id["req-1"]
    assert ended.kind is OutcomeKind.INPUT_REQUIRED
    assert ended.final
    assert ended.input_request is not None
    assert ended.input_request.input_id == "in-9"
    assert ended.input_request.prompt == "approve in-9?"
    assert service.asked.count("req-1") == 1  # completed: not checked again

    (odd,) = by_id["req-2"]
    assert odd.kind is OutcomeKind.FAILED
    assert odd.status is not None
    assert odd.status.raw_status == "archived"
    assert service.asked.count("req-2") == 1


@pytest.mark.anyio
async def test_a_timed_out_task_says_why(store_kind: str, request: pytest.FixtureRequest) -> None:
    """Three different facts: the service said "not finished", no check got an answer,
    no check was made at all."""
    scripts: dict[str, list[dict[str, Any]]] = {"slow": [PENDING]}
    service = ScriptedService(scripts)
    async with poller_over(service, store_kind, request) as poller:
        with anyio.fail_after(15):
            await poller.track("slow", deadline=3.0)
            await poller.track("unknown-to-the-script-but-never-checked", deadline=0.0)
            got = {o.request_id: o async for o in poller}
    assert got["slow"].kind is OutcomeKind.TIMED_OUT
    assert got["slow"].timeout_cause is TimeoutCause.STILL_RUNNING
    never = got["unknown-to-the-script-but-never-checked"]
    assert never.kind is OutcomeKind.TIMED_OUT
    assert never.polls == 0
    assert never.timeout_cause is TimeoutCause.NEVER_CHECKED
    assert never.as_dict()["timeout_cause"] == "never-checked"


@pytest.mark.anyio
async def test_a_webhook_of_a_task_that_ended_waiting_is_final(
    store_kind: str, request: pytest.FixtureRequest
) -> None:
    service = ScriptedService({"hooked": [PENDING]})
    async with poller_over(service, store_kind, request) as poller:
        with anyio.fail_after(15):
            await poller.track("hooked")
            await poller.deliver({"requestId": "hooked", **waiting("in-1")})
            await poller.deliver({"requestId": "hooked", **waiting("in-1")})  # the same input
            await poller.deliver({"requestId": "hooked", **waiting("in-2", done=True)})
            got = [o async for o in poller]
    assert [(o.kind, o.final) for o in got] == [
        (OutcomeKind.INPUT_REQUIRED, False),
        (OutcomeKind.INPUT_REQUIRED, True),
    ]
    assert [o.input_request.input_id for o in got if o.input_request] == ["in-1", "in-2"]
