"""The wire format: JSON bodies in, models out (and submit bodies the other way).

Parsing is strict about what the contract requires (`status`) and as tolerant as the
official SDK about everything else: unknown fields are ignored, optional fields of the
wrong type are dropped rather than fatal (`createdAt` too: the SDK never reads it), and
timestamps are accepted in the common ISO-8601 variants. The input request of a task
waiting for a person is read from ``hitlInputMetadata``, or from ``activeInputRequest``,
its name in SDK versions up to 0.2.0.
Anything that cannot become a `TaskStatus` raises `InvalidResponseError`, never another
exception: callers can rely on exactly those two outcomes for arbitrary bytes.

Two promises about those errors: nesting deeper than `MAX_JSON_DEPTH` is refused here
(the C parser accepts ~1,000 levels, and the next `json.dumps` or recursive walk of such
a value raises `RecursionError` far from here), and no error keeps the body: nothing is
chained (a `JSONDecodeError` holds the whole document in `.doc`), and every value quoted
in a message goes through the caller's `redact` first, before it is cut.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ._errors import InvalidResponseError
from ._models import InputKind, InputRequest, InputVariable, Status, TaskStatus, Usage

__all__ = [
    "LEGACY_INPUT_FIELD",
    "MAX_JSON_DEPTH",
    "JSONTooDeepError",
    "Redactor",
    "excerpt",
    "loads_bounded",
    "parse_input_request",
    "parse_status_body",
    "parse_status_payload",
    "parse_timestamp",
]

#: Deepest nesting of arrays and objects accepted in a body or a webhook payload. The
#: documented payloads are 3 levels deep; structured outputs and HITL metadata get room.
MAX_JSON_DEPTH = 64

#: Removes secrets from text taken from a response, before it is placed in a message.
Redactor = Callable[[str], str]

_EXCERPT_LIMIT = 200


class JSONTooDeepError(ValueError):
    """A JSON document nests arrays/objects deeper than we accept."""


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_DOCUMENTED_LENGTH = len("2024-12-19T00:00:00.000000+00:00")
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def excerpt(body: bytes | str, limit: int = _EXCERPT_LIMIT) -> str:
    """A short single-line excerpt of a body, safe to put in an error message or a log.

    HTML tags are dropped (a proxy's error page reduces to its text), control characters
    and runs of whitespace collapse to one space, and the result is cut at `limit`.
    """
    text = body if isinstance(body, str) else body[: limit * 8].decode("utf-8", "replace")
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp into an aware datetime.

    Accepts the documented form (`2024-12-19T00:00:00.000000+00:00`) and the variants a
    service or proxy may produce: `Z`, fractions of 1 to 9 digits, `+0000`, `+00`, and no
    offset at all (taken as UTC, the only sensible reading for a service clock).
    Raises ValueError otherwise. Written by hand because `datetime.fromisoformat` only
    learned most of these in Python 3.11.
    """
    if len(value) == _DOCUMENTED_LENGTH and value[10] == "T" and value[26] in "+-":
        # The documented shape, `2024-12-19T00:00:00.000000+00:00`, is exactly what
        # `datetime.isoformat()` writes, so the C parser takes it on every Python: a
        # dozen times faster than the regular expression below, on every status read.
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an ISO-8601 timestamp: {excerpt(value, 40)!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"bad UTC offset in timestamp: {offset!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros, tz
    )


def loads_bounded(body: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """`json.loads`, refusing nesting deeper than `max_depth`.

    Raises `ValueError` (a bad document, bad UTF-8, or too deep) and nothing else; the
    error never holds the document (unlike `JSONDecodeError.doc`). The depth check costs
    nothing for ordinary bodies: a document with fewer brackets than `max_depth` cannot
    be that deep, and only others are walked.
    """
    problem: ValueError | None = None
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        problem = ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})")
    except UnicodeDecodeError as exc:
        problem = ValueError(f"not valid UTF-8 ({exc.reason} at position {exc.start})")
    except ValueError:
        problem = ValueError("not valid JSON")
    except RecursionError:
        problem = _too_deep(max_depth)
    if problem is not None:  # raised outside the `except`: nothing is chained
        raise problem
    if _brackets(body) > max_depth and _deeper_than(data, max_depth):
        raise _too_deep(max_depth)
    return data


def _too_deep(max_depth: int) -> JSONTooDeepError:
    return JSONTooDeepError(f"nested deeper than {max_depth} levels")


def _brackets(body: bytes | str) -> int:
    """How many arrays/objects `body` could open: an upper bound on its depth."""
    if isinstance(body, bytes):
        return body.count(b"[") + body.count(b"{")
    return body.count("[") + body.count("{")


def _deeper_than(data: object, max_depth: int) -> bool:
    """Whether `data` nests arrays/objects more than `max_depth` deep (no recursion)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_status_body(
    request_id: str, body: bytes, *, status_code: int = 200, redact: Redactor | None = None
) -> TaskStatus:
    """Parse the body of a status response; `InvalidResponseError` if it is not one.

    `redact` is applied to every value quoted in an error message, before it is cut.
    """
    clean = redact or _unchanged
    try:
        data = loads_bounded(body)
    except ValueError as exc:
        problem = str(exc)
    else:
        try:
            return parse_status_payload(request_id, data, redact=clean)
        except InvalidResponseError as exc:
            exc.status_code = status_code
            exc.body_excerpt = excerpt(clean(_head(body)))
            raise
    looks_html = body.lstrip()[:1] == b"<"
    what = "an HTML page" if looks_html else problem
    raise InvalidResponseError(
        f"status of {request_id!r}: the service answered HTTP {status_code} with {what} "
        "(a proxy or the service is misbehaving; usually transient)",
        status_code=status_code,
        body_excerpt=excerpt(clean(_head(body))),
    )


def parse_status_payload(
    request_id: str, data: object, *, redact: Redactor | None = None
) -> TaskStatus:
    """Build a `TaskStatus` from decoded JSON (a status response or a webhook payload).

    `redact` is applied to every value quoted in an error message, before it is cut.
    """
    clean = redact or _unchanged
    # `type(...) is dict` first: what `json.loads` makes, and the abstract `Mapping`
    # check costs a Python-level call each time (several per status read).
    if type(data) is not dict and not isinstance(data, Mapping):
        raise _invalid(request_id, f"expected a JSON object, got {type(data).__name__}")
    raw_status = data.get("status")
    if not isinstance(raw_status, str) or not raw_status:
        raise _invalid(request_id, "field 'status' is missing or not a non-empty string")
    response = data.get("response")
    if response is not None and type(response) is not dict and not isinstance(response, Mapping):
        raise _invalid(request_id, f"field 'response' is a {type(response).__name__}")
    metadata = _optional_mapping(data.get("hitlInputMetadata"))
    if metadata is None:
        metadata = _optional_mapping(data.get(LEGACY_INPUT_FIELD))
    return TaskStatus(
        request_id=request_id,
        status=Status.from_wire(raw_status),
        raw_status=raw_status,
        created_at=_timestamp(request_id, data, "createdAt", redact=clean),
        completed_at=_timestamp(request_id, data, "completedAt", redact=clean),
        text=_text_of(response),
        response=response,
        structured_output=_structured_output_of(response),
        usage=_usage_of(data.get("usage")),
        browser_window_id=_optional_str(data.get("browserWindowId")),
        hitl_input_metadata=metadata,
        input_request=parse_input_request(metadata) if metadata is not None else None,
    )


#: What SDK versions up to 0.2.0 called ``hitlInputMetadata``; still read, second.
LEGACY_INPUT_FIELD = "activeInputRequest"


def parse_input_request(metadata: Mapping[str, Any]) -> InputRequest:
    """The typed view of an input request mapping; never raises.

    Shaped like ``{"inputId": ..., "action": {"name": ..., "prompt_message": ...,
    "variables": [...], ...}}``; a field of the wrong type is left out, and an unknown
    action name gives `InputKind.UNKNOWN` (the mapping stays on `InputRequest.raw`).
    """
    action = _optional_mapping(metadata.get("action")) or {}
    variables = action.get("variables")
    return InputRequest(
        input_id=_optional_str(metadata.get("inputId")) or None,
        kind=InputKind.from_wire(action.get("name")),
        prompt=_optional_str(action.get("prompt_message")),
        variables=tuple(_variables_of(variables)) if isinstance(variables, list) else (),
        variable_name=_optional_str(action.get("variable_name")),
        approve_label=_optional_str(action.get("approve_label")),
        reject_label=_optional_str(action.get("reject_label")),
        step_id=_optional_str(action.get("step_id")),
        raw=metadata,
    )


def _variables_of(items: list[Any]) -> Iterator[InputVariable]:
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            continue
        enum_values = item.get("enum_values")
        yield InputVariable(
            name=item["name"],
            type=_optional_str(item.get("type")),
            required=item.get("required") is True,
            enum_values=(
                tuple(v for v in enum_values if isinstance(v, str))
                if isinstance(enum_values, list)
                else None
            ),
        )


def _unchanged(text: str) -> str:
    return text


def _head(body: bytes) -> str:
    """The start of a body, decoded, long enough for any excerpt of it."""
    return body[: _EXCERPT_LIMIT * 8].decode("utf-8", "replace")


def _invalid(request_id: str, problem: str) -> InvalidResponseError:
    return InvalidResponseError(
        f"status of {request_id!r} is not as documented: {problem}", status_code=None
    )


def _timestamp(
    request_id: str, data: Mapping[str, Any], key: str, *, redact: Redactor
) -> datetime | None:
    """An optional timestamp: None when absent; a value that is not one is refused (a
    body that garbles its timestamps is not to be trusted with its status either)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(request_id, f"field {key!r} is not a string")
    try:
        return parse_timestamp(value)
    except ValueError:  # also out-of-range dates from datetime()
        pass
    # Quoted from the redacted value, and raised outside the `except`: the `ValueError`
    # (which quotes the raw value) is not kept as context.
    raise _invalid(
        request_id, f"field {key!r} is not an ISO-8601 timestamp: {excerpt(redact(value), 40)!r}"
    )


def _text_of(response: Mapping[str, Any] | None) -> str | None:
    """``response.text``, else the content of a text ``response.output``."""
    if response is None:
        return None
    text = _optional_str(response.get("text"))
    if text is None:
        output = response.get("output")
        if isinstance(output, Mapping) and output.get("type") == "text":
            text = _optional_str(output.get("content"))
    return text


def _structured_output_of(response: Mapping[str, Any] | None) -> Any:
    output = response.get("output") if response is not None else None
    if isinstance(output, Mapping) and output.get("type") == "structured":
        return output.get("content")
    return None


def _usage_of(value: object) -> Usage | None:
    if value is None or (type(value) is not dict and not isinstance(value, Mapping)):
        return None
    actions = value.get("actions")
    return Usage(
        actions=actions if isinstance(actions, int) and not isinstance(actions, bool) else None,
        credits=_optional_float(value.get("credits")),
    )


def _optional_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _optional_mapping(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    return value if type(value) is dict or isinstance(value, Mapping) else None
