"""`classify()`: what one status reading, or one failed check, means for a task.

Pure and synchronous: it reads the task and the reading and returns a `Decision`, and
changes nothing. The poller carries the decision out (through the task store, which owns
every state change), so the rules of the wire contract live here and only here, and are
tested table-driven without an event loop.
"""

from __future__ import annotations

import enum
import json

import attrs

from ._errors import (
    AuthenticationError,
    BadRequestError,
    DispatchError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from ._models import Status, TaskStatus
from ._outcome import OutcomeKind
from ._store import TrackedTask

__all__ = ["Action", "Decision", "classify", "input_identity"]


class Action(enum.Enum):
    """What to do with the task after a reading."""

    #: Give the task its final outcome (`Decision.kind`).
    RESOLVE = "resolve"
    #: Keep tracking at the routine cadence.
    CONTINUE = "continue"
    #: Report a new input request (`Decision.kind` is INPUT_REQUIRED), then continue.
    NOTIFY = "notify"
    #: The check failed transiently: try again after the error backoff.
    RETRY = "retry"
    #: The key is over its limit (429): pause every caller, then check again first.
    RATE_LIMITED = "rate-limited"
    #: The key was refused (401/403): nothing can be checked any more.
    REFUSED = "refused"


@attrs.frozen(slots=True)
class Decision:
    """The verdict of `classify()`: an action and what it needs."""

    action: Action
    #: The outcome kind for RESOLVE and NOTIFY.
    kind: OutcomeKind | None = None
    #: The reading, when there was one.
    status: TaskStatus | None = None
    #: The error, when the check failed.
    error: DispatchError | None = None
    #: For NOTIFY: the identity of the input request, so each is reported once.
    input_identity: str | None = None


def classify(
    task: TrackedTask,
    reading: TaskStatus | DispatchError,
    *,
    stop_on_input_required: bool = False,
) -> Decision:
    """Decide what `reading` (a status, or the error a check raised) means for `task`."""
    if isinstance(reading, TaskStatus):
        return _classify_status(task, reading, stop_on_input_required)
    return _classify_error(reading)


def _classify_status(task: TrackedTask, status: TaskStatus, stop: bool) -> Decision:
    # Identity tests, not a dict: hashing an enum member is a Python-level call.
    current = status.status
    if current is Status.SUCCESS:
        return Decision(Action.RESOLVE, OutcomeKind.SUCCESS, status)
    if current is Status.ERROR:
        return Decision(Action.RESOLVE, OutcomeKind.ERROR, status)
    if status.completed_at is not None:
        # The service's rule for "finished" (its SDK stops polling here, whatever the
        # status): a task can *end* waiting for input, and then waiting longer is
        # pointless. A finished task in a status this version cannot read (pending, or
        # one the service added) cannot be reported as anything it is not: FAILED, with
        # the reading attached.
        if status.status is Status.INPUT_REQUIRED:
            return Decision(Action.RESOLVE, OutcomeKind.INPUT_REQUIRED, status)
        return Decision(
            Action.RESOLVE,
            OutcomeKind.FAILED,
            status,
            InvalidResponseError(
                f"task {status.request_id!r} finished (completedAt is set) with status "
                f"{status.raw_status[:40]!r}, which this version cannot interpret; its "
                "reading is on the outcome",
                status_code=None,
            ),
        )
    if current is Status.INPUT_REQUIRED:
        identity = input_identity(status)
        if identity != task.last_input:
            if stop:
                return Decision(Action.RESOLVE, OutcomeKind.INPUT_REQUIRED, status)
            return Decision(Action.NOTIFY, OutcomeKind.INPUT_REQUIRED, status, None, identity)
    # PENDING, an input request already reported, or a status this library does not know
    # yet (counted by the caller): keep checking.
    return Decision(Action.CONTINUE, None, status)


def _classify_error(error: DispatchError) -> Decision:
    if isinstance(error, (AuthenticationError, PermissionDeniedError)):
        return Decision(Action.REFUSED, error=error)
    if isinstance(error, (NotFoundError, BadRequestError)):
        # The service does not know the task, or refuses the id: it cannot be tracked.
        return Decision(Action.RESOLVE, OutcomeKind.FAILED, error=error)
    if isinstance(error, RateLimitedError):
        return Decision(Action.RATE_LIMITED, error=error)
    # 5xx, a transport failure, a garbled body, or any other library error: the check
    # failed, not the task.
    return Decision(Action.RETRY, error=error)


def input_identity(status: TaskStatus) -> str:
    """What makes one input request distinct from the next: its ``inputId`` (the official
    SDK's rule), else its whole metadata, else its text."""
    request = status.input_request
    if request is not None and request.input_id is not None:
        return "id:" + request.input_id
    metadata = status.hitl_input_metadata
    if metadata:
        try:
            return json.dumps(metadata, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError):
            return repr(metadata)[:1000]
    return status.text or ""
