"""The events the core reports: plain, frozen values that say what happened.

Hooks receive these and nothing else. Keeping them dumb (no methods, no references to
clients, pollers or responses) is what lets an integration live in its own module, and
what keeps secrets out of it: an event cannot leak an API key or a response body it was
never given.

Every string field with a closed set of values has that set spelled out here, both as a
`Literal` for type checkers and as a tuple for integrations that need to enumerate it
(Prometheus pre-creates one series per value). The core builds events on its hot path,
so they carry no validators: integrations that turn a field into a metric label map any
value outside its set to ``"other"`` themselves, so a bug in the core can never blow up a
metric's cardinality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, TypeAlias, get_args

import attrs

from .._outcome import VIAS, OutcomeKind, Via

__all__ = [
    "CHECK_RESULTS",
    "OTHER",
    "RATE_LIMIT_SOURCES",
    "RESOLVED_VIA",
    "SUBMIT_RESULTS",
    "WEBHOOK_REASONS",
    "CheckDone",
    "CheckResult",
    "Event",
    "RateLimitPaused",
    "RateLimitSource",
    "ResolvedVia",
    "SubmitDone",
    "SubmitResult",
    "TaskForgotten",
    "TaskResolved",
    "TaskRetrying",
    "TaskTracked",
    "TokenWaited",
    "WebhookAnswered",
    "WebhookReason",
]

#: What a label becomes when an event carries a value outside its documented set.
OTHER: Final = "other"

#: What a status check learned (`CheckDone.result`).
CheckResult: TypeAlias = Literal[
    "pending",
    "success",
    "error",
    "input-required",
    "unknown-status",
    "not-found",
    "rejected",
    "rate-limited",
    "transient",
    "refused",
    "abandoned",
]
#: Every `CheckResult`, in the order above.
CHECK_RESULTS: Final[tuple[CheckResult, ...]] = get_args(CheckResult)

#: How a submit ended (`SubmitDone.result`).
SubmitResult: TypeAlias = Literal["accepted", "uncertain", "rejected", "rate-limited", "failed"]
#: Every `SubmitResult`.
SUBMIT_RESULTS: Final[tuple[SubmitResult, ...]] = get_args(SubmitResult)

#: How an outcome was learnt: the outcome's own `Via`.
ResolvedVia: TypeAlias = Via
#: Every `ResolvedVia`.
RESOLVED_VIA: Final[tuple[ResolvedVia, ...]] = VIAS

#: Whose request drew a 429 (`RateLimitPaused.source`).
RateLimitSource: TypeAlias = Literal["check", "submit", "client"]
#: Every `RateLimitSource`.
RATE_LIMIT_SOURCES: Final[tuple[RateLimitSource, ...]] = get_args(RateLimitSource)

#: Why the webhook receiver answered as it did (`WebhookAnswered.reason`).
WebhookReason: TypeAlias = Literal[
    "accepted",
    "duplicate",
    "too_large",
    "bad_json",
    "too_deep",
    "bad_payload",
    "bad_secret",
    "bad_token",
    "unknown_request",
    "unavailable",
    "internal_error",
    "too_slow",
    "disconnected",
]
#: The reasons `WebhookReceiver` gives today (`WebhookResult.reason`). `WebhookAnswered`
#: accepts any string so a new reason cannot break a hook; metrics count it as "other"
#: until it is added here.
WEBHOOK_REASONS: Final[tuple[WebhookReason, ...]] = get_args(WebhookReason)


@attrs.frozen(kw_only=True)
class CheckDone:
    """One status check of one task finished, whatever its answer.

    A check is one status read as its caller sees it: one request of a poller, or one
    `DispatchClient.get_status` call (each check of `DispatchClient.wait`), whose own
    retries of transient failures happen inside it, so `latency` covers them and their
    backoff (not the waits for a rate-limit token).
    """

    request_id: str
    #: What the check learned:
    #:
    #: - ``pending``, ``success``, ``error``, ``input-required``: the status read;
    #: - ``unknown-status``: a status value this library does not know (polling goes on);
    #: - ``not-found``: 404, the service does not know the task;
    #: - ``rejected``: 400/422, the service refused the request (a malformed id, say);
    #: - ``rate-limited``: 429 (or 408/425) after the client's retries;
    #: - ``transient``: 5xx, a transport failure or a garbled body;
    #: - ``refused``: 401/403, the key was refused;
    #: - ``abandoned``: the task's deadline struck while the check was in flight.
    result: CheckResult
    #: Seconds from sending the check to classifying its answer.
    latency: float
    #: 1 for the first check of this task, 2 for the second, and so on (as counted by the
    #: poller tracking it, or by one `DispatchClient.wait`; a bare `get_status` says 1).
    attempt: int


@attrs.frozen(kw_only=True)
class TaskTracked:
    """A task started being tracked: submitted, `track()`-ed or restored.

    The core promises that each `TaskTracked` is matched by exactly one final
    `TaskResolved` or one `TaskForgotten`, so hooks can keep a gauge of tracked tasks.
    """

    request_id: str


@attrs.frozen(kw_only=True)
class TaskResolved:
    """A task produced an `Outcome`: the event behind every outcome a poller yields."""

    request_id: str
    kind: OutcomeKind
    #: Status checks spent on the task.
    polls: int
    #: Seconds from the start of tracking to this outcome (`Outcome.elapsed`).
    age: float
    #: Seconds from the service's ``completedAt`` to our noticing the result: the price of
    #: polling, or of a slow webhook. None when the service did not say when it finished
    #: (timeouts, failures, some input requests).
    detection_delay: float | None
    #: How the result reached us: a status check (``poll``), a delivered payload
    #: (``webhook``), the task's deadline (``deadline``), or anything else (``other``).
    via: ResolvedVia
    #: False only for an INPUT_REQUIRED notification after which tracking goes on; the
    #: task then stays tracked and will resolve again.
    final: bool = True
    #: The task's trace context (W3C Trace Context headers, `Outcome.trace_context`),
    #: for a tracer to end the task's trace with; None when it was tracked untraced.
    trace_context: Mapping[str, str] | None = None
    #: Submits the task took: 1, or more when a `ResubmitPolicy` sent it again
    #: (`Outcome.attempts`).
    attempts: int = 1


@attrs.frozen(kw_only=True)
class TaskRetrying:
    """An attempt of a task failed, and the poller's `ResubmitPolicy` will resubmit it.

    Not an outcome (the iterator yields only the task's final one, with every attempt's
    id in `Outcome.attempts`): this is how the intermediate attempts show. The task stays
    tracked, so no `TaskResolved` is sent for the failed attempt.
    """

    #: The failed attempt's request id.
    request_id: str
    #: Which attempt failed: 1 for the first submit.
    attempt: int
    #: How it ended (`OutcomeKind.ERROR`, or FAILED when the policy names it).
    kind: OutcomeKind
    #: Seconds until the resubmission is due (it then waits its turn in the budget).
    wait: float


@attrs.frozen(kw_only=True)
class TaskForgotten:
    """A task stopped being tracked without an outcome (`Poller.forget`, say)."""

    request_id: str


@attrs.frozen(kw_only=True)
class RateLimitPaused:
    """A rate-limited answer paused the key: every check and submit sharing its limiter
    waits. Sent once per pause, not per 429: a 429 met while a pause at least as long is
    in force changes nothing and says nothing."""

    #: How long the limiter was told to pause.
    seconds: float
    #: Whose request drew the 429: a poller's status ``check``, a ``submit`` (a poller's or
    #: `DispatchClient.submit`), or the ``client``'s own status reads (`get_status`,
    #: `wait`).
    source: RateLimitSource


@attrs.frozen(kw_only=True)
class WebhookAnswered:
    """The webhook receiver answered one delivery."""

    #: `WebhookResult.reason`: one of `WEBHOOK_REASONS` today.
    reason: str
    #: The HTTP status sent back: 2xx when accepted or a duplicate, 4xx/5xx when refused.
    status_code: int


@attrs.frozen(kw_only=True)
class SubmitDone:
    """One submit finished.

    - ``accepted``: the service answered with a request id;
    - ``uncertain``: the request may have reached the service (`SubmitUncertainError`);
    - ``rejected``: the service refused it (4xx other than 429);
    - ``rate-limited``: 429;
    - ``failed``: it never left, or failed in a way that certainly created nothing.
    """

    result: SubmitResult
    #: Seconds from sending the submit to its answer, the client's retries and their
    #: backoff included, waiting for a rate-limit token not included.
    latency: float
    #: The id the service gave the task, when ``accepted``: for logs and traces, never a
    #: metric label.
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class TokenWaited:
    """One acquirer waited for a rate-limit token.

    Only sent when it did wait: an immediate token is the common case and costs nothing.
    """

    seconds: float


#: Everything a hook can receive. Hooks should ignore event types they do not know:
#: new ones may be added in a minor release.
Event: TypeAlias = (
    CheckDone
    | TaskTracked
    | TaskResolved
    | TaskRetrying
    | TaskForgotten
    | RateLimitPaused
    | WebhookAnswered
    | SubmitDone
    | TokenWaited
)
