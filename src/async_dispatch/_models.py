"""Values the service hands back, as frozen attrs classes.

These are plain data: parsing the wire format into them lives in `_wire.py`, so a model
never needs to know about bytes, JSON or HTTP.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = ["Status", "TaskStatus", "Usage"]


class Status(enum.Enum):
    """A task's status. `UNKNOWN` stands for any value the service adds in the future.

    The raw string is always kept on `TaskStatus.raw_status`, so a new status from the
    service never crashes a caller and is never silently lost.
    """

    PENDING = "pending"
    SUCCESS = "success"
    ERROR = "error"
    INPUT_REQUIRED = "input-required"
    UNKNOWN = "unknown"

    @classmethod
    def from_wire(cls, raw: str) -> Status:
        """Map a wire value to a member; unrecognised values become `UNKNOWN`."""
        try:
            member = cls(raw)
        except ValueError:
            return cls.UNKNOWN
        return cls.UNKNOWN if member is cls.UNKNOWN else member

    @property
    def is_terminal(self) -> bool:
        """True for `SUCCESS` and `ERROR`: the task will not change again."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.SUCCESS, Status.ERROR})


@attrs.frozen(kw_only=True)
class Usage:
    """What a task cost, when the service reports it."""

    actions: int | None = None
    credits: float | None = None


@attrs.frozen(kw_only=True)
class TaskStatus:
    """One reading of a task's status, as returned by the status endpoint or a webhook."""

    request_id: str
    status: Status
    #: The status string exactly as the service sent it (useful when `status` is UNKNOWN).
    raw_status: str
    created_at: datetime
    completed_at: datetime | None = None
    #: `response.text`, the agent's answer or error message, when present.
    text: str | None = None
    #: The whole `response` object as received, unknown keys included.
    response: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    #: `response.output.content` when the task asked for structured output.
    structured_output: Any = attrs.field(default=None, repr=False)
    usage: Usage | None = None
    browser_window_id: str | None = None
    hitl_input_metadata: Mapping[str, Any] | None = attrs.field(default=None, repr=False)

    @property
    def is_terminal(self) -> bool:
        """True once the task has finished (`SUCCESS` or `ERROR`) and will not change."""
        return self.status.is_terminal

    @property
    def needs_input(self) -> bool:
        """True while the task waits for a person (`INPUT_REQUIRED`)."""
        return self.status is Status.INPUT_REQUIRED

    def as_dict(self) -> dict[str, Any]:
        """This reading as JSON-ready data: snake_case keys, ISO 8601 timestamps.

        ``status`` is the string the service sent (`raw_status`), so a status this
        version does not know survives a round trip through JSON. Everything else is
        what was received, unchanged: the service's own JSON stays JSON.
        """
        usage = None
        if self.usage is not None:
            usage = {"actions": self.usage.actions, "credits": self.usage.credits}
        return {
            "request_id": self.request_id,
            "status": self.raw_status,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "usage": usage,
            "browser_window_id": self.browser_window_id,
            "structured_output": self.structured_output,
            "response": _plain(self.response),
            "hitl_input_metadata": _plain(self.hitl_input_metadata),
        }


def _plain(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else dict(mapping)
