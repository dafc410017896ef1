"""What a `Poller` yields: one `Outcome` per event worth a caller's attention."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, get_args

import attrs

from ._models import InputRequest, TaskStatus

__all__ = ["SCHEMA_OUTPUT", "VIAS", "Outcome", "OutcomeKind", "TimeoutCause", "Via"]

#: `Outcome.output_type` of a task whose `response_format` was a JSON Schema mapping: its
#: output is the checked mapping itself (there is no class to import).
SCHEMA_OUTPUT = "json-schema"

#: How an outcome was learnt: a status check, a webhook, the deadline, or something else
#: (an id that cannot be sent, a submit intent a dead replica left behind).
Via: TypeAlias = Literal["poll", "webhook", "deadline", "other"]
#: Every `Via`.
VIAS: tuple[Via, ...] = get_args(Via)


class OutcomeKind(enum.Enum):
    """Why an outcome was yielded.

    `SUCCESS`, `ERROR`, `TIMED_OUT` and `FAILED` (and, in fleet mode, `SUBMIT_UNCERTAIN`)
    are final: each tracked task ends in exactly one of them. `INPUT_REQUIRED` is a
    notification (once per distinct input request, `Outcome.final` False) and tracking
    goes on; it is final (`Outcome.final` True) when the task *ended* waiting for input
    (the service set ``completedAt``), or when the poller was built with
    ``stop_on_input_required=True``.
    """

    SUCCESS = "success"
    ERROR = "error"
    INPUT_REQUIRED = "input-required"
    #: The task's deadline passed before it was seen finished. `Outcome.timeout_cause` says
    #: why: the service still said "not finished", no check got an answer, or no check
    #: was made at all. `Outcome.error` holds the last transient failure, if any.
    TIMED_OUT = "timed-out"
    #: The task cannot be tracked: the service does not know it (404), the id is invalid,
    #: or the service reports it finished in a status this version cannot interpret.
    FAILED = "failed"
    #: Durable stores only (a fleet's `RedisStore`, `SQLiteStore`): a process died while
    #: submitting, so the task may exist at the service without anybody tracking it;
    #: check before resubmitting. `request_id` is empty: no task id is known, and none is
    #: made up. In a fleet it is reported only for a submit that went on the wire, with
    #: its `context`, and `error` says when it was sent, by which process, and the
    #: prompt's SHA-256; `SQLiteStore` knows when the submit began (`context` None, unless
    #: the submit ran in a `SQLiteStore.submitting` block). Final, like the four above.
    SUBMIT_UNCERTAIN = "submit-uncertain"


class TimeoutCause(enum.Enum):
    """Why a task was reported `TIMED_OUT`: three different facts, three different fixes."""

    #: The last reading said the task was not finished (pending, or waiting for input),
    #: and no check failed after it: the task took longer than its deadline.
    STILL_RUNNING = "still-running"
    #: Checks were made but the last ones returned no reading (5xx, timeouts, 429s,
    #: garbled bodies: `Outcome.error` holds the last failure). The task may well have
    #: finished.
    UNREADABLE = "unreadable"
    #: No check was made before the deadline: the budget (the limiter's rate, or the
    #: service's 429s) was too short for the tracked load. The task may well have
    #: finished; check it, with a longer deadline or a larger budget.
    NEVER_CHECKED = "never-checked"


def _only_attempt(outcome: Outcome) -> tuple[str, ...]:
    """One attempt, this outcome's; none when no task id is known (SUBMIT_UNCERTAIN)."""
    if outcome.kind is OutcomeKind.SUBMIT_UNCERTAIN or not outcome.request_id:
        return ()
    return (outcome.request_id,)


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
    #: How the outcome was learnt (`Via`). It travels with the outcome, so in fleet mode
    #: the replica that hands it to the application says what the resolving one saw.
    via: Via = "other"
    #: Every attempt's request id, oldest first; the last is `request_id`. More than one
    #: when the poller's `ResubmitPolicy` resubmitted the task after failed attempts.
    attempts: tuple[str, ...] = attrs.field(default=attrs.Factory(_only_attempt, takes_self=True))
    #: A typed `response_format` (a pydantic model, attrs class or dataclass): the output
    #: as that type; a JSON Schema mapping: the checked mapping. None otherwise, and for
    #: every kind but SUCCESS. An output that does not fit makes the outcome ERROR with an
    #: `OutputValidationError` (the raw mapping stays in `structured`).
    output: Any = attrs.field(default=None, repr=False)
    #: Which type `output` is: the import path stored with the task (``module:qualname``),
    #: `SCHEMA_OUTPUT` for a JSON Schema, None without typed output. It travels with the
    #: outcome, so the replica that hands it over rebuilds `output` from it.
    output_type: str | None = None
    #: The task's trace context, as W3C Trace Context headers (``traceparent``,
    #: ``tracestate``), when a tracing hook traced its tracking (`OpenTelemetryHook`);
    #: None otherwise. It travels with the task through every store, so whoever consumes
    #: the outcome can link its own work to the task's trace
    #: (`async_dispatch.instrumentation.otel.link_to`).
    trace_context: Mapping[str, str] | None = attrs.field(default=None, repr=False)

    @property
    def structured(self) -> Any:
        """The raw structured output of the reading (``response.output.content``), or None."""
        return self.status.structured_output if self.status is not None else None

    @property
    def input_request(self) -> InputRequest | None:
        """What the task asks of a person, for an `INPUT_REQUIRED` outcome (else None)."""
        return self.status.input_request if self.status is not None else None

    @property
    def timeout_cause(self) -> TimeoutCause | None:
        """For a `TIMED_OUT` outcome, why (see `TimeoutCause`); None for other kinds."""
        if self.kind is not OutcomeKind.TIMED_OUT:
            return None
        if self.error is not None:  # the checks were failing when the deadline struck
            return TimeoutCause.UNREADABLE
        if self.status is not None:
            return TimeoutCause.STILL_RUNNING
        return TimeoutCause.NEVER_CHECKED if self.polls == 0 else TimeoutCause.UNREADABLE

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
            "via": self.via,
            "attempts": list(self.attempts),
            "timeout_cause": self.timeout_cause.value if self.timeout_cause else None,
        }
