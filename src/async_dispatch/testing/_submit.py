"""Checking a submit body the way the service does: strict on known fields, open to others.

The wire contract lets clients pass extra fields through untouched, so unknown keys are
accepted; a known key with the wrong type is a 422, shaped like a FastAPI validation error
(``{"detail": [{"type", "loc", "msg"}]}``) because that is what such services send. A
``null`` known field counts as absent. Like the service, a submit in the default ``client``
execution mode must name its ``browserWindowId``. Files a submit refers to (``attachment``,
file input variables) are collected so the app can check they were uploaded. One extra
field is read: ``simulate``, which lets a test pick how its task ends.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

import attrs

from ._config import INPUT_KINDS, InputKind, OutcomeName

__all__ = [
    "Callback",
    "Simulate",
    "Submission",
    "ValidationIssue",
    "issue",
    "parse_submission",
]

ValidationIssue = dict[str, Any]

_EXECUTION_MODES = ("client", "cloud", "cloud_browser")
_OUTCOMES: tuple[str, ...] = get_args(OutcomeName)
_FINAL_OUTCOMES = ("success", "error")


@attrs.frozen
class Callback:
    """Where and how to deliver this task's webhook."""

    url: str
    secret: str | None
    headers: tuple[tuple[str, str], ...]


@attrs.frozen
class Simulate:
    """A submit's ``simulate`` field: overrides of the run's random draw for one task."""

    outcome: OutcomeName | None = None
    duration: float | None = None
    input_wait: float | None = None
    input_requests: int | None = None
    final_outcome: Literal["success", "error"] | None = None
    input_kind: InputKind | None = None
    input_response: Literal["text", "null"] | None = None
    legacy_input_field: bool | None = None
    ends_waiting: bool = False
    """The task *ends* at its last input request: ``completedAt`` set, status
    ``input-required``, and it never moves on."""


@attrs.frozen
class Submission:
    """The parts of a valid submit body the simulator acts on."""

    prompt: str
    browser_window_id: str | None = None
    response_format: dict[str, Any] | None = None
    callback: Callback | None = None
    simulate: Simulate | None = None
    uploads: tuple[tuple[tuple[str | int, ...], str], ...] = ()
    """The upload keys this submit refers to, each with where it sits in the body."""


def issue(loc: tuple[str | int, ...], msg: str, kind: str) -> ValidationIssue:
    """One entry of a 422's ``detail`` list, FastAPI style."""
    return {"type": kind, "loc": ["body", *loc], "msg": msg}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_submission(
    raw: bytes, *, require_browser_window: bool = True
) -> Submission | list[ValidationIssue]:
    """The submission in ``raw``, or the list of everything wrong with it."""
    try:
        body = json.loads(raw)
    except ValueError:
        return [issue((), "the body is not valid JSON", "json_invalid")]
    if not isinstance(body, dict):
        return [issue((), "the body must be a JSON object", "model_attributes_type")]

    issues: list[ValidationIssue] = []
    prompt = body.get("prompt")
    if prompt is None:
        issues.append(issue(("prompt",), "Field required", "missing"))
    elif not isinstance(prompt, str) or not prompt.strip():
        issues.append(issue(("prompt",), "must be a non-empty string", "string_type"))

    for name in ("browserWindowId", "previousRequestId", "timeZone", "callbackSecret"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            issues.append(issue((name,), "must be a string", "string_type"))
    for name in ("clearChat", "saveScreenshots"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            issues.append(issue((name,), "must be a boolean", "bool_type"))

    mode = body.get("executionMode")
    if mode is not None and mode not in _EXECUTION_MODES:
        issues.append(issue(("executionMode",), f"must be one of {_EXECUTION_MODES}", "enum"))

    response_format = body.get("responseFormat")
    if response_format is not None and not isinstance(response_format, dict):
        issues.append(issue(("responseFormat",), "must be an object", "dict_type"))

    url = body.get("callbackUrl")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        issues.append(issue(("callbackUrl",), "must be an http(s) URL", "url_type"))

    headers = body.get("callbackHeaders")
    if headers is not None and not isinstance(headers, dict):
        # Values need not be strings (the SDK allows any): they are sent as their JSON text.
        issues.append(issue(("callbackHeaders",), "must be an object", "dict_type"))

    window_id = body.get("browserWindowId")
    if require_browser_window and mode in (None, "client") and not window_id:
        issues.append(
            issue(
                ("browserWindowId",),
                "browserWindowId is required when executionMode is 'client' (the default); "
                "send a browserWindowId or executionMode 'cloud'",
                "missing",
            )
        )

    uploads = _upload_references(body, issues)
    simulate = _parse_simulate(body.get("simulate"), issues)
    if issues:
        return issues

    assert isinstance(prompt, str)
    callback = None
    if isinstance(url, str):
        callback = Callback(
            url=url,
            secret=body.get("callbackSecret"),
            headers=tuple(
                (name, value if isinstance(value, str) else json.dumps(value))
                for name, value in (headers or {}).items()
            ),
        )
    return Submission(
        prompt=prompt,
        browser_window_id=body.get("browserWindowId"),
        response_format=response_format,
        callback=callback,
        simulate=simulate,
        uploads=uploads,
    )


def _upload_references(
    body: dict[str, Any], issues: list[ValidationIssue]
) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    """Every upload key in ``attachment`` and in file input variables, with its place."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    attachment = body.get("attachment")
    if attachment is not None:
        key = attachment.get("key") if isinstance(attachment, dict) else None
        if isinstance(key, str) and key:
            found.append((("attachment", "key"), key))
        else:
            issues.append(
                issue(("attachment",), "must be an object with a string 'key'", "dict_type")
            )

    def walk(value: object, loc: tuple[str | int, ...]) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*loc, index))
        elif isinstance(value, dict):
            if value.get("source") == "remoteDispatchUpload":
                key = value.get("id")
                if isinstance(key, str) and key:
                    found.append(((*loc, "id"), key))
                else:
                    issues.append(issue(loc, "a file reference needs a string 'id'", "missing"))
                return
            for name, item in value.items():
                walk(item, (*loc, str(name)))

    walk(body.get("inputVariables"), ("inputVariables",))
    return tuple(found)


def _parse_simulate(value: object, issues: list[ValidationIssue]) -> Simulate | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        issues.append(issue(("simulate",), "must be an object", "dict_type"))
        return None
    before = len(issues)
    outcome = value.get("outcome")
    if outcome is not None and outcome not in _OUTCOMES:
        issues.append(issue(("simulate", "outcome"), f"must be one of {_OUTCOMES}", "enum"))
    final = value.get("finalOutcome")
    if final is not None and final not in _FINAL_OUTCOMES:
        issues.append(
            issue(("simulate", "finalOutcome"), f"must be one of {_FINAL_OUTCOMES}", "enum")
        )
    for name in ("duration", "inputWait"):
        seconds = value.get(name)
        if seconds is not None and not (_is_number(seconds) and seconds >= 0):
            issues.append(issue(("simulate", name), "must be a number >= 0", "float_type"))
    kind = value.get("inputKind")
    if kind is not None and kind not in INPUT_KINDS:
        issues.append(issue(("simulate", "inputKind"), f"must be one of {INPUT_KINDS}", "enum"))
    shape = value.get("inputResponse")
    if shape is not None and shape not in ("text", "null"):
        issues.append(issue(("simulate", "inputResponse"), "must be 'text' or 'null'", "enum"))
    for name in ("legacyInputField", "endsWaiting"):
        flag = value.get(name)
        if flag is not None and not isinstance(flag, bool):
            issues.append(issue(("simulate", name), "must be a boolean", "bool_type"))
    if value.get("endsWaiting") is True and outcome not in (None, "input-required"):
        issues.append(
            issue(
                ("simulate", "endsWaiting"),
                "only a task that asks for input can end waiting for it",
                "value_error",
            )
        )
    count = value.get("inputRequests")
    if count is not None and not (
        isinstance(count, int) and not isinstance(count, bool) and count >= 1
    ):
        issues.append(issue(("simulate", "inputRequests"), "must be an integer >= 1", "int_type"))
    if len(issues) > before:
        return None
    return Simulate(
        outcome=outcome,
        duration=None if value.get("duration") is None else float(value["duration"]),
        input_wait=None if value.get("inputWait") is None else float(value["inputWait"]),
        input_requests=count,
        final_outcome=final,
        input_kind=kind,
        input_response=shape,
        legacy_input_field=value.get("legacyInputField"),
        ends_waiting=value.get("endsWaiting") is True,
    )
