"""Readings, errors and outcomes as the SQLite file keeps them: JSON text.

What comes back out is what went in, with the same types: a status parses the way a
webhook's payload does (`parse_status_payload`), and an error is rebuilt as its own class
(`_error_codec`), so ``isinstance(outcome.error, NotFoundError)`` holds after a restart.
"""

from __future__ import annotations

import json

from .._error_codec import error_from_data, error_to_data
from .._models import TaskStatus
from .._outcome_codec import decode_outcome, encode_outcome, status_payload
from .._wire import parse_status_payload

__all__ = [
    "decode_error",
    "decode_outcome",
    "decode_status",
    "encode_error",
    "encode_outcome",
    "encode_status",
]


def encode_status(status: TaskStatus | None) -> str | None:
    return None if status is None else json.dumps(status_payload(status), default=repr)


def decode_status(request_id: str, text: str | None) -> TaskStatus | None:
    return None if text is None else parse_status_payload(request_id, json.loads(text))


def encode_error(error: BaseException | None) -> str | None:
    return None if error is None else json.dumps(error_to_data(error), default=repr)


def decode_error(text: str | None) -> Exception | None:
    return None if text is None else error_from_data(json.loads(text))
