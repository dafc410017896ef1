"""Outcomes as JSON text, for task stores that keep them outside this process.

A fleet's Redis stream and a SQLite file hold outcomes as text; what comes back out must
be what went in, with the same types, whichever store carried it. The reading goes out as
the wire payload it was parsed from (`status_payload`) and comes back through the same
parser as a webhook's; the error through `_error_codec`, as its own class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from ._error_codec import error_from_data, error_to_data
from ._models import TaskStatus
from ._outcome import VIAS, Outcome, OutcomeKind, Via
from ._wire import parse_status_payload

__all__ = [
    "decode_outcome",
    "encode_outcome",
    "status_payload",
    "trace_of",
    "trace_text",
    "via_of",
]

#: The longest trace context kept, as text: W3C's ``traceparent`` is 55 characters and
#: its ``tracestate`` at most 32 members of about 256. A longer one is not a trace context.
TRACE_MAX: Final = 9_000


def status_payload(status: TaskStatus) -> dict[str, Any]:
    """The wire payload `status` was parsed from (what `parse_status_payload` reads)."""
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


def encode_outcome(outcome: Outcome) -> str:
    """An outcome as one JSON text (`Outcome.output` as its type's name only). A context
    that JSON cannot hold is kept as its repr (the task was tracked with it; the outcome
    must still be delivered)."""
    status = outcome.status
    return json.dumps(
        {
            "request_id": outcome.request_id,
            "kind": outcome.kind.value,
            "status": status_payload(status) if status is not None else None,
            "error": error_to_data(outcome.error) if outcome.error is not None else None,
            "context": outcome.context,
            "polls": outcome.polls,
            "elapsed": outcome.elapsed,
            "final": outcome.final,
            "via": outcome.via,
            "attempts": list(outcome.attempts),
            # The type's name, not the object: the replica that hands the outcome over
            # rebuilds `output` from the reading (`Poller` does, on arrival).
            "output_type": outcome.output_type,
            # As text, the way the stores keep it with the task (see `trace_text`).
            "trace": trace_text(outcome.trace_context) or None,
        },
        default=repr,
    )


def decode_outcome(text: str, deliveries: int) -> Outcome:
    """The outcome `encode_outcome` wrote, handed over for the `deliveries`-th time.

    Raises ValueError, KeyError or TypeError (or `DispatchError` for a garbled reading)
    for a text it cannot read: a newer version's kind, say.
    """
    data = json.loads(text)
    request_id = str(data["request_id"])
    status = data.get("status")
    extra: dict[str, Any] = {}
    attempts = data.get("attempts")
    if isinstance(attempts, list) and attempts:  # older writers (and the Lua) may omit it
        extra["attempts"] = tuple(str(rid) for rid in attempts)
    output_type = data.get("output_type")
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
        via=via_of(data.get("via")),
        output_type=output_type if isinstance(output_type, str) else None,
        trace_context=trace_of(data.get("trace")),
        **extra,
    )


def trace_text(trace: Mapping[str, str] | None) -> str:
    """A task's trace context as the stores keep it: one JSON object, '' for none.

    One string, so a store keeps it in one field and a script can copy it into an
    outcome as a JSON string without reading it."""
    return json.dumps(dict(trace), separators=(",", ":")) if trace else ""


def trace_of(value: object) -> dict[str, str] | None:
    """The trace context `trace_text` wrote; None for none, and for anything that is not
    a small mapping of strings (a store is not trusted to hold only what we wrote)."""
    if not isinstance(value, str) or not value or len(value) > TRACE_MAX:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        return None
    return data or None


def via_of(value: object) -> Via:
    """A stored `Via`; anything else (a newer version's word) is ``"other"``."""
    for via in VIAS:
        if via == value:
            return via
    return "other"
