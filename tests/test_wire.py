"""The wire format: every example payload of the contract, the timestamp variants, and the
promise that arbitrary bytes or JSON become a `TaskStatus` or `InvalidResponseError`,
never any other exception."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _foundation_helpers import CREATED, ERROR, INPUT_REQUIRED, PENDING, SUCCESS
from async_dispatch import (
    InputKind,
    InputVariable,
    InvalidResponseError,
    Status,
    TaskStatus,
    Usage,
)
from async_dispatch._wire import excerpt, parse_status_body, parse_status_payload, parse_timestamp

UTC = timezone.utc
DEC_19 = datetime(2024, 12, 19, tzinfo=UTC)


def parse(payload: dict[str, Any]) -> TaskStatus:
    return parse_status_body("req_1", json.dumps(payload).encode())


# -- the contract's examples ----------------------------------------------------------------


def test_the_documented_pending_status() -> None:
    status = parse(PENDING)
    assert status.request_id == "req_1"
    assert status.status is Status.PENDING
    assert status.raw_status == "pending"
    assert status.response is None
    assert status.text is None
    assert status.created_at == DEC_19
    assert status.completed_at is None
    assert not status.is_terminal
    assert not status.needs_input


def test_the_documented_success_status() -> None:
    status = parse(SUCCESS)
    assert status.status is Status.SUCCESS
    assert status.text == "Found 42 software engineering jobs."
    assert status.response == {"text": "Found 42 software engineering jobs."}
    assert status.completed_at == DEC_19 + timedelta(minutes=1, seconds=10)
    assert status.is_terminal


def test_the_documented_error_status() -> None:
    status = parse(ERROR)
    assert status.status is Status.ERROR
    assert status.text == "Failed to complete the task due to network timeout."
    assert status.completed_at == DEC_19 + timedelta(minutes=2, seconds=30)
    assert status.is_terminal


def test_the_documented_input_required_status() -> None:
    status = parse(INPUT_REQUIRED)
    assert status.status is Status.INPUT_REQUIRED
    assert status.text == "The task requires authentication. Please log in to continue."
    assert status.completed_at is None
    assert not status.is_terminal
    assert status.needs_input


def test_every_optional_field_is_read() -> None:
    status = parse(
        {
            **SUCCESS,
            "usage": {"actions": 12, "credits": 3.5},
            "browserWindowId": "win-9",
            "hitlInputMetadata": {"kind": "login", "url": "https://example.com"},
        }
    )
    assert status.usage == Usage(actions=12, credits=3.5)
    assert status.browser_window_id == "win-9"
    assert status.hitl_input_metadata == {"kind": "login", "url": "https://example.com"}


def test_unknown_fields_are_ignored() -> None:
    status = parse({**SUCCESS, "queuePosition": 3, "newThing": {"nested": [1, 2]}})
    assert status == parse(SUCCESS)


def test_unknown_keys_in_response_are_kept_in_the_raw_response() -> None:
    status = parse({**SUCCESS, "response": {"text": "done", "gifUrl": "https://x/y.gif"}})
    assert status.text == "done"
    assert status.response == {"text": "done", "gifUrl": "https://x/y.gif"}


def test_a_new_status_becomes_unknown_and_keeps_the_raw_string() -> None:
    status = parse({**PENDING, "status": "cancelled"})
    assert status.status is Status.UNKNOWN
    assert status.raw_status == "cancelled"
    assert not status.is_terminal


def test_structured_output_is_extracted() -> None:
    content = {"jobs": [{"title": "Engineer", "remote": True}], "count": 1}
    status = parse(
        {
            **SUCCESS,
            "response": {"text": "{...}", "output": {"type": "structured", "content": content}},
        }
    )
    assert status.structured_output == content
    assert status.text == "{...}"


def test_text_output_is_not_structured_output() -> None:
    status = parse({**SUCCESS, "response": {"text": "hi", "output": {"type": "text"}}})
    assert status.structured_output is None


@pytest.mark.parametrize(
    ("field", "value", "attribute"),
    [
        ("usage", "lots", "usage"),
        ("browserWindowId", 17, "browser_window_id"),
        ("hitlInputMetadata", ["a"], "hitl_input_metadata"),
    ],
)
def test_optional_fields_of_the_wrong_type_are_dropped(
    field: str, value: object, attribute: str
) -> None:
    assert getattr(parse({**SUCCESS, field: value}), attribute) is None


def test_usage_numbers_of_the_wrong_type_are_dropped() -> None:
    status = parse({**SUCCESS, "usage": {"actions": True, "credits": "1.0"}})
    assert status.usage == Usage(actions=None, credits=None)
    status = parse({**SUCCESS, "usage": {"actions": 2, "credits": 10**400}})
    assert status.usage == Usage(actions=2, credits=None)


def test_a_response_text_of_the_wrong_type_is_dropped() -> None:
    assert parse({**SUCCESS, "response": {"text": ["a"]}}).text is None


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"createdAt": CREATED}, "status"),
        ({**PENDING, "status": ""}, "status"),
        ({**PENDING, "status": 1}, "status"),
        ({**PENDING, "createdAt": "yesterday"}, "createdAt"),
        ({**SUCCESS, "completedAt": 1734566400}, "completedAt"),
        ({**SUCCESS, "response": "done"}, "response"),
    ],
)
def test_a_payload_without_what_the_contract_requires_is_invalid(
    payload: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidResponseError, match=problem) as caught:
        parse(payload)
    assert caught.value.status_code == 200
    assert caught.value.body_excerpt


@pytest.mark.parametrize("body", [b"[]", b"null", b'"pending"', b"42"])
def test_a_body_that_is_not_an_object_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidResponseError, match="JSON object"):
        parse_status_body("req_1", body)


def test_a_webhook_payload_parses_like_a_status() -> None:
    payload = {**SUCCESS, "requestId": "req_1", "callbackSecret": None}
    assert parse_status_payload("req_1", payload) == parse(SUCCESS)


# -- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-19T00:00:00.000000+00:00", DEC_19),
        ("2024-12-19T10:20:30.123456+00:00", datetime(2024, 12, 19, 10, 20, 30, 123456, UTC)),
        ("2024-12-19T10:20:30Z", datetime(2024, 12, 19, 10, 20, 30, tzinfo=UTC)),
        ("2024-12-19T10:20:30.5Z", datetime(2024, 12, 19, 10, 20, 30, 500000, UTC)),
        ("2024-12-19T10:20:30.123+00:00", datetime(2024, 12, 19, 10, 20, 30, 123000, UTC)),
        ("2024-12-19T10:20:30.123456789Z", datetime(2024, 12, 19, 10, 20, 30, 123456, UTC)),
        ("2024-12-19T10:20:30+0000", datetime(2024, 12, 19, 10, 20, 30, tzinfo=UTC)),
        ("2024-12-19T10:20:30+00", datetime(2024, 12, 19, 10, 20, 30, tzinfo=UTC)),
        ("2024-12-19T10:20:30", datetime(2024, 12, 19, 10, 20, 30, tzinfo=UTC)),
        ("2024-12-19 10:20:30", datetime(2024, 12, 19, 10, 20, 30, tzinfo=UTC)),
        ("2024-12-19T10:20", datetime(2024, 12, 19, 10, 20, tzinfo=UTC)),
        ("2024-12-19T12:20:30+02:00", datetime(2024, 12, 19, 10, 20, 30, tzinfo=UTC)),
        ("2024-12-19T05:20:30-0500", datetime(2024, 12, 19, 10, 20, 30, tzinfo=UTC)),
    ],
)
def test_timestamps_in_every_common_form_become_aware_datetimes(
    text: str, expected: datetime
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_a_timestamp_without_offset_is_taken_as_utc() -> None:
    assert parse_timestamp("2024-12-19T10:20:30").utcoffset() == timedelta(0)


def test_the_offset_is_kept() -> None:
    assert parse_timestamp("2024-12-19T12:00:00+05:30").utcoffset() == timedelta(hours=5.5)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-12-19",
        "19/12/2024 10:20",
        "2024-12-19T10:20:30+25:00",
        "2024-12-19T10:20:30+00:60",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-12-19T24:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-12-19T10:20:30 UTC",
    ],
)
def test_garbage_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)
    with pytest.raises(InvalidResponseError, match="createdAt"):
        parse({**PENDING, "createdAt": text})


# -- excerpts -------------------------------------------------------------------------------


def test_an_excerpt_is_short_single_line_text() -> None:
    page = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"
    assert excerpt(page) == "502 Bad Gateway nginx"
    assert excerpt("a\x00b\tc") == "a?b c"
    long = excerpt("x" * 1000)
    assert len(long) == 200
    assert long.endswith("\u2026")


def test_an_excerpt_of_invalid_utf8_does_not_fail() -> None:
    assert excerpt(b"\xff\xfeok") == "\ufffd\ufffdok"


# -- parsing never fails any other way ------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

timestamps = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))])).map(
        datetime.isoformat
    ),
    st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?"),
    st.text(max_size=40),
)

#: Dicts with the contract's keys, each holding a plausible value or any JSON value at all.
status_like = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["pending", "success", "error", "input-required", "new"])
        | json_values,
        "createdAt": timestamps | json_values,
    },
    optional={
        "response": st.fixed_dictionaries(
            {},
            optional={
                "text": st.text() | json_values,
                "output": st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "structured"]) | json_values},
                    optional={"content": json_values},
                )
                | json_values,
            },
        )
        | json_values,
        "completedAt": timestamps | json_values,
        "usage": st.fixed_dictionaries(
            {}, optional={"actions": json_values, "credits": json_values}
        )
        | json_values,
        "browserWindowId": json_values,
        "hitlInputMetadata": json_values,
        "extra": json_values,
    },
)


def parses_or_is_invalid(body: bytes) -> None:
    outcome: TaskStatus | InvalidResponseError
    try:
        outcome = parse_status_body("req_1", body)
    except InvalidResponseError as exc:
        outcome = exc
    if isinstance(outcome, InvalidResponseError):
        assert outcome.status_code == 200
        assert len(outcome.body_excerpt) <= 200
    else:
        assert outcome.created_at is None or outcome.created_at.tzinfo is not None
        assert outcome.completed_at is None or outcome.completed_at.tzinfo is not None
        assert outcome.raw_status
        assert repr(outcome)


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_are_invalid(body: bytes) -> None:
    parses_or_is_invalid(body)


@settings(deadline=None, max_examples=150)
@given(json_values)
def test_arbitrary_json_parses_or_is_invalid(value: object) -> None:
    parses_or_is_invalid(json.dumps(value).encode())


@settings(deadline=None, max_examples=150)
@given(status_like)
def test_status_shaped_json_with_wrong_types_parses_or_is_invalid(value: object) -> None:
    parses_or_is_invalid(json.dumps(value).encode())


#: Required fields right, optional ones anything: the tolerant half of the contract.
tolerable = st.fixed_dictionaries(
    {
        "status": st.text(min_size=1, max_size=20),
        "createdAt": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
    },
    optional={
        "response": st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "completedAt": st.none() | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        "usage": json_values,
        "browserWindowId": json_values,
        "hitlInputMetadata": json_values,
        "somethingNew": json_values,
    },
)


@settings(deadline=None, max_examples=100)
@given(tolerable)
def test_optional_fields_of_any_type_never_make_a_status_invalid(value: dict[str, Any]) -> None:
    status = parse(value)
    assert status.raw_status == value["status"]
    assert status.created_at == datetime.fromisoformat(value["createdAt"])


@settings(deadline=None, max_examples=30)
@given(st.integers(min_value=1, max_value=100_000))
def test_deeply_nested_json_is_invalid_not_a_crash(depth: int) -> None:
    parses_or_is_invalid(b"[" * depth + b"]" * depth)


# -- the shapes the official SDK expects (narada 0.2.18, narada-core 0.1.13) -----------------

SDK_SUCCESS = {
    "status": "success",
    "response": {"text": "Found 42", "output": {"type": "text", "content": "Found 42"}},
    "usage": {"actions": 7, "credits": 1.5},
    "createdAt": "2026-01-01T00:00:00Z",
    "completedAt": "2026-01-01T00:01:10Z",
}


def test_a_status_without_created_at_is_valid() -> None:
    """The SDK never reads `createdAt`, so the service need not send it."""
    for payload in ({"status": "pending"}, {"status": "pending", "createdAt": None}):
        status = parse(payload)
        assert status.created_at is None
        assert status.as_dict()["created_at"] is None


def test_timestamps_with_z_and_no_fraction() -> None:
    status = parse(SDK_SUCCESS)
    assert status.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert status.completed_at == datetime(2026, 1, 1, 0, 1, 10, tzinfo=UTC)
    assert status.usage == Usage(actions=7, credits=1.5)


def test_a_text_output_gives_the_text_when_response_text_is_missing() -> None:
    payload = {**SDK_SUCCESS, "response": {"output": {"type": "text", "content": "only here"}}}
    assert parse(payload).text == "only here"
    assert parse(SDK_SUCCESS).text == "Found 42"


def test_an_error_carries_its_output_too() -> None:
    payload = {
        **SDK_SUCCESS,
        "status": "error",
        "response": {"text": "boom", "output": {"type": "text", "content": "boom"}},
    }
    status = parse(payload)
    assert status.status is Status.ERROR
    assert status.text == "boom"
    assert status.is_final


def test_is_final_follows_completed_at_whatever_the_status() -> None:
    """The SDK stops polling once `completedAt` is set: a task may end waiting for input."""
    ended_waiting = parse({"status": "input-required", "completedAt": "2026-01-01T00:00:05Z"})
    assert ended_waiting.is_final
    assert not ended_waiting.is_terminal
    assert not parse({"status": "input-required", "completedAt": None}).is_final
    assert parse({"status": "success"}).is_final


APPROVAL = {
    "inputId": "in-1",
    "action": {
        "name": "user_approval",
        "step_id": "s1",
        "prompt_message": "Pay 12 EUR?",
        "approve_label": "Pay",
        "reject_label": "Cancel",
    },
}
FORM = {
    "inputId": "in-2",
    "action": {
        "name": "prompt_for_user_input",
        "step_id": "s2",
        "prompt_message": "Log in",
        "variables": [
            {"name": "user", "type": "string", "required": True, "enum_values": None},
            {"name": "region", "type": "enum", "required": False, "enum_values": ["eu", "us"]},
            "not a variable",
        ],
    },
}


@pytest.mark.parametrize("field", ["hitlInputMetadata", "activeInputRequest"])
def test_an_input_request_is_typed_under_either_field_name(field: str) -> None:
    status = parse({"status": "input-required", "response": None, field: FORM})
    request = status.input_request
    assert request is not None
    assert request.input_id == "in-2"
    assert request.kind is InputKind.PROMPT_FOR_USER_INPUT
    assert request.prompt == "Log in"
    assert request.variables == (
        InputVariable(name="user", type="string", required=True),
        InputVariable(name="region", type="enum", required=False, enum_values=("eu", "us")),
    )
    assert request.raw == FORM
    assert status.hitl_input_metadata == FORM


def test_an_approval_and_a_file_request_are_typed() -> None:
    approval = parse({"status": "input-required", "hitlInputMetadata": APPROVAL}).input_request
    assert approval is not None
    assert approval.kind is InputKind.USER_APPROVAL
    assert (approval.approve_label, approval.reject_label, approval.step_id) == (
        "Pay",
        "Cancel",
        "s1",
    )
    file_request = {
        "inputId": "in-3",
        "action": {"name": "prompt_for_user_file", "variable_name": "cv", "step_id": "s3"},
    }
    typed = parse({"status": "input-required", "hitlInputMetadata": file_request}).input_request
    assert typed is not None
    assert (typed.kind, typed.variable_name) == (InputKind.PROMPT_FOR_USER_FILE, "cv")


def test_the_current_field_name_wins_over_the_legacy_one() -> None:
    status = parse(
        {"status": "input-required", "hitlInputMetadata": APPROVAL, "activeInputRequest": FORM}
    )
    assert status.input_request is not None
    assert status.input_request.input_id == "in-1"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "inputId": _JSON,
            "action": _JSON | st.fixed_dictionaries({"name": _JSON, "variables": _JSON}),
        },
    )
)
@settings(max_examples=100)
def test_an_input_request_of_any_shape_never_breaks_parsing(metadata: dict[str, Any]) -> None:
    status = parse_status_payload("r", {"status": "input-required", "hitlInputMetadata": metadata})
    assert status.input_request is not None
    assert status.input_request.kind in InputKind
