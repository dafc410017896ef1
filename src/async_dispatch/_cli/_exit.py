"""Exit codes: one per class of failure, so scripts can branch on what went wrong.

Expected failures (a bad or missing key, an unreachable host, an unknown id) end in one
line on stderr and one of these codes, never a traceback: `expected_failure` tells them
from bugs, which keep their traceback.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

from .._errors import (
    AuthenticationError,
    BadRequestError,
    DispatchError,
    EndpointError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UsageError,
)
from .._outcome import Outcome, OutcomeKind

__all__ = [
    "CommandError",
    "ExitCode",
    "exit_code_for",
    "exit_code_of",
    "expected_failure",
]


class ExitCode(enum.IntEnum):
    """The process exit status: one value per class of failure, so scripts can branch."""

    OK = 0
    #: The command worked, but a task ended in error, timed out or could not be tracked.
    TASK_FAILED = 1
    #: Bad arguments or configuration (missing key, insecure URL, malformed id).
    USAGE = 2
    #: The service refused the key (401 or 403).
    AUTH = 3
    #: The service does not know the request id.
    NOT_FOUND = 4
    #: The service could not be reached (refused, reset, timed out).
    UNREACHABLE = 5
    #: Still rate limited after the allowed retries.
    RATE_LIMITED = 6
    #: The service answered with something that is not the documented JSON.
    INVALID_RESPONSE = 7
    #: The service kept answering 5xx.
    SERVER_ERROR = 8
    #: The service rejected the request as malformed (400/422).
    BAD_REQUEST = 9
    #: A submit failed after it was sent: the task may exist. Do not blindly resubmit.
    SUBMIT_UNCERTAIN = 10
    #: Any other error the service answered with.
    API_ERROR = 11
    #: `fleet`: nothing exists in Redis under the fleet name given (a typo?).
    NO_SUCH_FLEET = 12
    #: The base URL does not lead to the Remote Dispatch API (a submit met 404/405, or a
    #: web page): check --base-url / DISPATCH_BASE_URL. No task was created.
    WRONG_ENDPOINT = 13
    #: Ctrl-C (SIGINT); `wait` and `submit --wait` list the tasks still open on stderr.
    INTERRUPTED = 130


#: Most specific first: the first matching class decides the exit code.
_EXIT_CODES: Final[tuple[tuple[type[Exception], ExitCode], ...]] = (
    (UsageError, ExitCode.USAGE),
    (EndpointError, ExitCode.WRONG_ENDPOINT),
    (AuthenticationError, ExitCode.AUTH),
    (PermissionDeniedError, ExitCode.AUTH),
    (NotFoundError, ExitCode.NOT_FOUND),
    (TransportError, ExitCode.UNREACHABLE),
    (RateLimitedError, ExitCode.RATE_LIMITED),
    (InvalidResponseError, ExitCode.INVALID_RESPONSE),
    (ServerError, ExitCode.SERVER_ERROR),
    (BadRequestError, ExitCode.BAD_REQUEST),
    (SubmitUncertainError, ExitCode.SUBMIT_UNCERTAIN),
    (DispatchError, ExitCode.API_ERROR),
)


def exit_code_for(exc: Exception) -> ExitCode:
    """The exit code for an error the library raised on purpose."""
    for cls, code in _EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return ExitCode.API_ERROR


class CommandError(Exception):
    """A failure the command itself detected, with its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


def expected_failure(exc: BaseException) -> CommandError | DispatchError | None:
    """The failure to report in one line, or None for a bug (which keeps its traceback).

    A task group (the poller's, for one) may wrap the error in an exception group; a
    group made only of expected failures is reported as its first one.
    """
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        found = [expected_failure(member) for member in inner]
        if all(found):
            return found[0]
        return None
    if isinstance(exc, (CommandError, DispatchError)):
        return exc
    return None


def exit_code_of(finals: Sequence[Outcome], *, expected: int) -> ExitCode:
    """0 when all `expected` tasks succeeded; else what `status` would say about the first
    task that could not be tracked (4 unknown id, 2 malformed id); else 1."""
    if len(finals) == expected and all(o.kind is OutcomeKind.SUCCESS for o in finals):
        return ExitCode.OK
    for outcome in finals:
        if outcome.kind is OutcomeKind.FAILED and isinstance(outcome.error, DispatchError):
            return exit_code_for(outcome.error)
    return ExitCode.TASK_FAILED
