"""Readings, errors and outcomes as the SQLite file keeps them: JSON text.

What comes back out is what went in, with the same types: a status parses the way a
webhook's payload does (`parse_status_payload`), and an error is rebuilt as its own class
(`_error_codec`), so ``isinstance(outcome.error, NotFoundError)`` holds after a restart.
"""

from __future__ import annotations

import json
from typing import Any

from .._error_codec import error_from_data, error_to_data
from .._models import TaskStatus
from .._outcome import VIAS, Outcome, OutcomeKind, Via
from .._wire import parse_status_payload

__all__ = [
    "decode_error",
    "decode_outcome",
    "decode_status",
    "encode_error",
    "encode_outcome",
    "encode_status",
]


def _payload(status: TaskStatus) -> dict[str, Any]:
    """The wire payload `status` was parsed from (what `parse_status_payload` reads).

    The same shape as `async_dispatch.redis`'s ``status_payload``, which cannot be
    imported here without the ``redis`` extra.
    """
    payload: dict[str, Any] = {"requestId": status.request_id, "status": status.raw_status}
    if status.created_at is not None:
        payload["createdAt"] = status.created_at.isoformat()
    if status.completed_at is not None:
        payload["completedAt"] = status.completed_at.isoformat()
    if status.response is not None:
        payload["response"] = dict(status.response)
    if status.usage is not None:
        payload["usage"] = {"actions": status.usage.actions, "credits": status.usage.credits}
    if status.browser_window_id is not None:
        payload["browserWindowId"] = status.browser_window_id
    if status.hitl_input_metadata is not None:
        payload["hitlInputMetadata"] = dict(status.hitl_input_metadata)
    return payload


def encode_status(status: TaskStatus | None) -> str | None:
    return None if status is None else json.dumps(_payload(status), default=repr)


def decode_status(request_id: str, text: str | None) -> TaskStatus | None:
    return None if text is None else parse_status_payload(request_id, json.loads(text))


def encode_error(error: BaseException | None) -> str | None:
    return None if error is None else json.dumps(error_to_data(error), default=repr)


def decode_error(text: str | None) -> Exception | None:
    return None if text is None else error_from_data(json.loads(text))


def encode_outcome(outcome: Outcome) -> str:
    """An outcome as one JSON text. A context that JSON cannot hold is kept as its repr
    (the task was tracked with it; the outcome must still be delivered)."""
    status = outcome.status
    return json.dumps(
        {
            "request_id": outcome.request_id,
            "kind": outcome.kind.value,
            "status": _payload(status) if status is not None else None,
            "error": error_to_data(outcome.error) if outcome.error is not None else None,
            "context": outcome.context,
            "polls": outcome.polls,
            "elapsed": outcome.elapsed,
            "final": outcome.final,
            "via": outcome.via,
        },
        default=repr,
    )


def _via(value: object) -> Via:
    for via in VIAS:
        if via == value:
            return via
    return "other"


def decode_outcome(text: str, deliveries: int) -> Outcome:
    data = json.loads(text)
    request_id = str(data["request_id"])
    status = data.get("status")
    return Outcome(
        request_id=request_id,
        kind=OutcomeKind(data["kind"]),
        status=parse_status_payload(request_id, status) if status is not None else None,
        error=error_from_data(data.get("error")),
        context=data.get("context"),
        polls=int(data.get("polls", 0)),
        elapsed=float(data.get("elapsed", 0.0)),
        final=bool(data.get("final", True)),
        deliveries=deliveries,
        via=_via(data.get("via")),
    )
