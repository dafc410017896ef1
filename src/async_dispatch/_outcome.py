"""What a `Poller` yields: one `Outcome` per event worth a caller's attention."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._models import TaskStatus

__all__ = ["Outcome", "OutcomeKind"]


class OutcomeKind(enum.Enum):
    """Why an outcome was yielded.

    `SUCCESS`, `ERROR`, `TIMED_OUT` and `FAILED` (and, in fleet mode, `SUBMIT_UNCERTAIN`)
    are final: each tracked task ends in
    exactly one of them. `INPUT_REQUIRED` is a notification (once per distinct input
    request) and tracking goes on, unless the poller was built with
    ``stop_on_input_required=True``, in which case it is final too.
    """

    SUCCESS = "success"
    ERROR = "error"
    INPUT_REQUIRED = "input-required"
    #: The task's deadline passed before it finished. `Outcome.error` holds the last
    #: transient failure, if checks were failing.
    TIMED_OUT = "timed-out"
    #: The task cannot be tracked: the service does not know it (404) or the id is invalid.
    FAILED = "failed"
    #: Fleet mode only (`async_dispatch.redis.RedisStore`): a replica died while
    #: submitting, so the task may exist at the service without anybody tracking it;
    #: check before resubmitting. `request_id` is the id of the submit intent, not of a
    #: task, and `context` is None. Final, like the four above.
    SUBMIT_UNCERTAIN = "submit-uncertain"


@attrs.frozen(kw_only=True)
class Outcome:
    """One result from the poller, with everything needed to act on it."""

    request_id: str
    kind: OutcomeKind
    #: The status reading that produced this outcome; None for TIMED_OUT and FAILED
    #: unless a reading had been seen before.
    status: TaskStatus | None
    #: The error behind a FAILED outcome, or the last transient error of a TIMED_OUT one.
    error: Exception | None
    #: Whatever the caller attached to the task in `submit()` or `track()`.
    context: Any = attrs.field(repr=False)
    #: Status requests spent on this task so far.
    polls: int
    #: Seconds from the start of tracking to this outcome.
    elapsed: float
    #: False only for an INPUT_REQUIRED notification after which tracking goes on.
    final: bool = True
    #: How many times this outcome was handed to an application: more than 1 only in fleet
    #: mode, when a replica died after taking the outcome and before asking for the next,
    #: and another replica took it over. The request id is the idempotency key: a handler
    #: whose side effects are not idempotent checks it when `deliveries` > 1.
    deliveries: int = 1

    def as_dict(self) -> dict[str, Any]:
        """This outcome as JSON-ready data (the status through `TaskStatus.as_dict`).

        `context` is left out: it is whatever the caller attached, which JSON may not
        be able to hold, and the caller has it already. `error` becomes its message.
        """
        return {
            "request_id": self.request_id,
            "kind": self.kind.value,
            "final": self.final,
            "status": self.status.as_dict() if self.status is not None else None,
            "error": str(self.error) if self.error is not None else None,
            "polls": self.polls,
            "elapsed": round(self.elapsed, 3),
        }
