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

__all__ = ["InputKind", "InputRequest", "InputVariable", "Status", "TaskStatus", "Usage"]


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
        # A dict, not ``cls(raw)``: the enum's own lookup is several Python calls, and
        # this runs once per status read.
        return _BY_WIRE.get(raw, Status.UNKNOWN) if isinstance(raw, str) else Status.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """True for `SUCCESS` and `ERROR`: the task will not change again."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.SUCCESS, Status.ERROR})
#: Every member but `UNKNOWN`, by its wire value (`UNKNOWN` is what is not in it).
_BY_WIRE: dict[str, Status] = {m.value: m for m in Status if m is not Status.UNKNOWN}


@attrs.frozen(kw_only=True)
class Usage:
    """What a task cost, when the service reports it."""

    actions: int | None = None
    credits: float | None = None


class InputKind(enum.Enum):
    """What a person is asked for (`InputRequest.kind`). `UNKNOWN` stands for any kind the
    service adds later; the raw name stays on `InputRequest.raw`."""

    PROMPT_FOR_USER_INPUT = "prompt_for_user_input"
    PROMPT_FOR_USER_FILE = "prompt_for_user_file"
    USER_APPROVAL = "user_approval"
    UNKNOWN = "unknown"

    @classmethod
    def from_wire(cls, raw: object) -> InputKind:
        """Map a wire value to a member; anything unrecognised becomes `UNKNOWN`."""
        for member in cls:
            if member.value == raw and member is not cls.UNKNOWN:
                return member
        return cls.UNKNOWN


@attrs.frozen(kw_only=True)
class InputVariable:
    """One value a `PROMPT_FOR_USER_INPUT` request asks for."""

    name: str
    #: ``string``, ``number``, ``boolean``, ``enum``, ``dataTable``, ``object``, ``array``.
    type: str | None = None
    required: bool = False
    enum_values: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class InputRequest:
    """A task waiting for a person: what it asks, read from ``hitlInputMetadata`` (or the
    ``activeInputRequest`` of SDK versions up to 0.2.0).

    `input_id` identifies the request: the poller reports each distinct one once. Fields
    the service did not send are None; `raw` is the mapping exactly as received.
    """

    input_id: str | None
    kind: InputKind
    #: The question or instruction shown to the person (``action.prompt_message``).
    prompt: str | None = None
    #: For `PROMPT_FOR_USER_INPUT`: the values asked for.
    variables: tuple[InputVariable, ...] = ()
    #: For `PROMPT_FOR_USER_FILE`: the variable the file goes into.
    variable_name: str | None = None
    #: For `USER_APPROVAL`: the two buttons.
    approve_label: str | None = None
    reject_label: str | None = None
    step_id: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class TaskStatus:
    """One reading of a task's status, as returned by the status endpoint or a webhook."""

    request_id: str
    status: Status
    #: The status string exactly as the service sent it (useful when `status` is UNKNOWN).
    raw_status: str
    #: When the service created the task; None when the body did not say (the official SDK
    #: never reads it, so the service need not send it).
    created_at: datetime | None = None
    #: Set once the task has finished, whatever its status: a task may end while it waits
    #: for input (see `is_final`).
    completed_at: datetime | None = None
    #: `response.text`, the agent's answer or error message (else the content of a text
    #: `response.output`), when present.
    text: str | None = None
    #: The whole `response` object as received, unknown keys included.
    response: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    #: `response.output.content` when the task asked for structured output.
    structured_output: Any = attrs.field(default=None, repr=False)
    usage: Usage | None = None
    browser_window_id: str | None = None
    hitl_input_metadata: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    #: The input request, typed, while the task waits for a person (else None).
    input_request: InputRequest | None = None

    @property
    def is_terminal(self) -> bool:
        """True for `SUCCESS` and `ERROR`: statuses that never change again."""
        return self.status.is_terminal

    @property
    def is_final(self) -> bool:
        """True once the task has finished: a terminal status, or `completed_at` set.

        The second half is the service's own rule (its SDK stops polling as soon as
        ``completedAt`` is set, whatever the status): a task may *end* in
        ``input-required``, and then nothing will change any more either.
        """
        return self.completed_at is not None or self.status.is_terminal

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
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "usage": usage,
            "browser_window_id": self.browser_window_id,
            "structured_output": self.structured_output,
            "response": _plain(self.response),
            "hitl_input_metadata": _plain(self.hitl_input_metadata),
        }


def _plain(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else dict(mapping)
