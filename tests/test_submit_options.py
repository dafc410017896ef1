"""One list of submit fields: `SubmitOptions` names them with their wire spelling, every
entry point takes them spelled the same (as `options`, as keywords, or both), and the
secret-bearing ones never show in a repr."""

from __future__ import annotations

import json
import typing
from types import MappingProxyType
from typing import Any

import attrs
import pytest

from _foundation_helpers import reply as answer
from _foundation_helpers import service
from async_dispatch import Poller, SubmitOptions, UsageError
from async_dispatch._options import SubmitFields
from async_dispatch.webhooks import DispatchRuntime

pytestmark = pytest.mark.anyio

ACCEPTED = answer(202, {"requestId": "req_1"})
#: Where the submits below run, named so that no client default adds to their bodies.
CLOUD: dict[str, Any] = {"executionMode": "cloud"}

#: Every field with a value, and the body the service must receive for it, written out by
#: hand from the contract (so a wrong wire name in the declarations is caught here).
EVERY_FIELD: dict[str, Any] = {
    "browser_window_id": "win-1",
    "execution_mode": "cloud",
    "clear_chat": False,
    "previous_request_id": "req_0",
    "save_screenshots": True,
    "response_format": {"type": "jsonSchema", "jsonSchema": {"type": "object"}},
    "time_zone": "America/Los_Angeles",
    "callback_url": "https://example.com/hook",
    "callback_secret": "whsec-1",
    "callback_headers": {"Authorization": "Bearer cb-token", "X-Retries": 3},
    "secret_variables": {"password": "hunter2"},
    "user_resource_credentials": {"jira": {"token": "jira-token"}},
    "mcp_servers": [{"url": "https://mcp.test", "authentication": {"bearerToken": "mcp-t"}}],
    "vector_stores": [{"id": "vs-1", "isExternal": False}],
    "input_variables": {"city": "Lisbon", "count": 3},
    "attachment": {"key": "uploads/a.pdf"},
    "chat_history": [{"role": "user", "content": "hi"}],
    "additional_context": {"team": "ops"},
    "reasoning_mode": "high",
    "cloud_browser_session_id": "cbs-1",
    "execution_trace_context": {"traceId": "t-1"},
    "critic_context": {"prompt": "be strict"},
}
EVERY_WIRE: dict[str, Any] = {
    "browserWindowId": "win-1",
    "executionMode": "cloud",
    "clearChat": False,
    "previousRequestId": "req_0",
    "saveScreenshots": True,
    "responseFormat": {"type": "jsonSchema", "jsonSchema": {"type": "object"}},
    "timeZone": "America/Los_Angeles",
    "callbackUrl": "https://example.com/hook",
    "callbackSecret": "whsec-1",
    "callbackHeaders": {"Authorization": "Bearer cb-token", "X-Retries": 3},
    "secretVariables": {"password": "hunter2"},
    "userResourceCredentials": {"jira": {"token": "jira-token"}},
    "mcpServers": [{"url": "https://mcp.test", "authentication": {"bearerToken": "mcp-t"}}],
    "vectorStores": [{"id": "vs-1", "isExternal": False}],
    "inputVariables": {"city": "Lisbon", "count": 3},
    "attachment": {"key": "uploads/a.pdf"},
    "chatHistory": [{"role": "user", "content": "hi"}],
    "additionalContext": {"team": "ops"},
    "reasoningMode": "high",
    "cloudBrowserSessionId": "cbs-1",
    "executionTraceContext": {"traceId": "t-1"},
    "criticContext": {"prompt": "be strict"},
}
SECRET_VALUES = ["whsec-1", "cb-token", "hunter2", "jira-token", "mcp-t", "vs-1", "xtra-secret"]


def test_submit_fields_lists_exactly_the_options_fields_with_the_same_types() -> None:
    options = typing.get_type_hints(SubmitOptions)
    fields = typing.get_type_hints(SubmitFields)
    assert list(fields) == [field.name for field in attrs.fields(SubmitOptions)]
    assert fields == options
    assert SubmitFields.__total__ is False


def test_every_named_field_has_its_wire_name() -> None:
    assert set(EVERY_FIELD) | {"extra"} == {field.name for field in attrs.fields(SubmitOptions)}
    assert SubmitOptions(**EVERY_FIELD).body("p") == {"prompt": "p", **EVERY_WIRE}


async def test_every_field_reaches_the_wire_in_camel_case() -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        await client.submit("/Operator go", **EVERY_FIELD)
        await client.submit("/Operator go", SubmitOptions(**EVERY_FIELD))
    assert fake.json_bodies() == [{"prompt": "/Operator go", **EVERY_WIRE}] * 2


def test_secret_fields_show_as_stars_in_the_repr() -> None:
    options = SubmitOptions(**EVERY_FIELD, extra={"somethingNew": "xtra-secret"})
    shown = repr(options)
    assert [value for value in SECRET_VALUES if value in shown] == []
    assert "secret_variables='***'" in shown
    assert "extra='***'" in shown
    assert "time_zone='America/Los_Angeles'" in shown  # what is not secret stays useful
    assert "user_resource_credentials=None" in repr(SubmitOptions())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("secret_variables", "hunter2"),
        ("mcp_servers", "mcp-t"),
        ("callback_secret", {"hunter2": 1}),
        ("clear_chat", "hunter2"),
        ("extra", ["hunter2"]),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_without_being_shown(field: str, value: Any) -> None:
    with pytest.raises(UsageError, match=field) as caught:
        SubmitOptions(**{field: value})
    assert "hunter2" not in str(caught.value)
    assert "mcp-t" not in str(caught.value)


@pytest.mark.parametrize("mode", ["none", "low", "medium", "high"])
def test_the_four_reasoning_modes_are_accepted(mode: Any) -> None:
    assert SubmitOptions(reasoning_mode=mode).body("p")["reasoningMode"] == mode


@pytest.mark.parametrize("mode", ["max", "HIGH", "", 2, ["high"]])
def test_other_reasoning_modes_are_refused(mode: Any) -> None:
    with pytest.raises(UsageError, match="reasoning_mode must be one of high, low, medium, none"):
        SubmitOptions(reasoning_mode=mode)


async def test_keywords_win_over_the_same_fields_of_options() -> None:
    fake = service(ACCEPTED)
    options = SubmitOptions(
        time_zone="UTC", clear_chat=False, browser_window_id="win-1", execution_mode="cloud"
    )
    async with fake.client() as client:
        await client.submit("p", options, time_zone="Europe/Lisbon", browser_window_id=None)
    assert fake.json_bodies() == [
        {"prompt": "p", **CLOUD, "timeZone": "Europe/Lisbon", "clearChat": False}
    ]


async def test_an_unknown_option_is_refused_before_anything_is_sent() -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(UsageError, match="unexpected submit option 'timezone'"):
            await client.submit("p", timezone="UTC")  # type: ignore[call-arg]
        with pytest.raises(UsageError, match="options must be a SubmitOptions"):
            await client.submit("p", {"time_zone": "UTC"})  # type: ignore[arg-type]
    assert fake.requests == []


async def test_mappings_and_sequences_of_any_kind_are_sent_as_json() -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        await client.submit(
            "p",
            execution_mode="cloud",
            callback_headers=MappingProxyType({"X-N": 1, "X-On": True}),
            chat_history=({"role": "user", "content": "hi"},),
            input_variables={"nested": MappingProxyType({"list": (1, 2)})},
        )
    assert fake.json_bodies() == [
        {
            "prompt": "p",
            **CLOUD,
            "callbackHeaders": {"X-N": 1, "X-On": True},
            "chatHistory": [{"role": "user", "content": "hi"}],
            "inputVariables": {"nested": {"list": [1, 2]}},
        }
    ]


async def test_an_unserialisable_secret_is_refused_without_being_shown() -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(UsageError, match="not JSON-serialisable") as caught:
            await client.submit("p", secret_variables={"password": {"hunter2"}})  # type: ignore[dict-item]
    assert "hunter2" not in str(caught.value)
    assert fake.requests == []


def test_with_callback_fills_in_only_what_was_left_out() -> None:
    options = SubmitOptions(callback_headers={"X-Mine": 1})
    merged = options.with_callback("https://example.com/hook", "s", {"X-Theirs": "t"})
    assert merged.callback_url == "https://example.com/hook"
    assert merged.callback_secret == "s"
    assert merged.callback_headers == {"X-Theirs": "t", "X-Mine": 1}


class TestTheSameSpellingEverywhere:
    """`Poller.submit()` and `DispatchRuntime.submit()` take the client's fields."""

    async def test_the_poller_takes_options_and_keywords(self) -> None:
        fake = service(ACCEPTED)
        async with fake.client() as client, Poller(client) as poller:
            await poller.submit(
                "p", execution_mode="cloud", time_zone="UTC", reasoning_mode="low", deadline=60
            )
            await poller.submit("p", SubmitOptions(execution_mode="cloud"), clear_chat=True)
        assert fake.json_bodies() == [
            {"prompt": "p", **CLOUD, "timeZone": "UTC", "reasoningMode": "low"},
            {"prompt": "p", **CLOUD, "clearChat": True},
        ]

    async def test_the_poller_refuses_an_unknown_option_before_submitting(self) -> None:
        fake = service(ACCEPTED)
        async with fake.client() as client, Poller(client) as poller:
            with pytest.raises(UsageError, match="unexpected submit option"):
                await poller.submit("p", timezone="UTC")  # type: ignore[call-arg]
        assert fake.requests == []

    async def test_the_runtime_takes_options_and_keywords(self) -> None:
        fake = service(ACCEPTED)
        runtime = DispatchRuntime(fake.client(), callback_url="https://example.com/hook")
        async with runtime:
            await runtime.submit(
                "p", SubmitOptions(clear_chat=False), execution_mode="cloud", time_zone="UTC"
            )
        [body] = fake.json_bodies()
        assert body["callbackUrl"] == "https://example.com/hook"  # hybrid mode fills it in
        assert {key: body[key] for key in ("prompt", "clearChat", "timeZone")} == {
            "prompt": "p",
            "clearChat": False,
            "timeZone": "UTC",
        }


def test_the_body_is_plain_json() -> None:
    body = SubmitOptions(**EVERY_FIELD, extra={"somethingNew": [1]}).body("p")
    assert json.loads(json.dumps(body))["somethingNew"] == [1]
