"""The exception tree: every failure says what happened and what to do next.

Shaped like httpx's: one root (`DispatchError`), HTTP failures split by *meaning* rather
than by number, and transport failures wrapped so callers never need to import httpx to
catch them. No message ever contains the API key: messages are built from the status code,
the request id and a short, sanitised excerpt of the body, never from request headers.
"""

from __future__ import annotations

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "DeadlineExceeded",
    "DispatchError",
    "InvalidRequestIdError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "SubmitUncertainError",
    "TransportError",
    "UsageError",
]


class DispatchError(Exception):
    """Root of everything `async_dispatch` raises on purpose."""


class UsageError(DispatchError, ValueError):
    """The library was called wrongly: missing key, insecure URL, bad number or argument.

    Raised before anything is sent, so nothing needs cleaning up.
    """


class APIStatusError(DispatchError):
    """The service answered with an HTTP error status.

    `body_excerpt` is a short, single-line excerpt of what the service said, safe to log.
    """

    status_code: int
    request_id: str | None
    body_excerpt: str
    #: Seconds the service asked us to wait (`Retry-After`), or None when it did not say.
    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        body_excerpt: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400/422: the request was malformed. Retrying the same request cannot help."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong. Every request with this key will fail."""


class PermissionDeniedError(APIStatusError):
    """403: the API key is valid but may not do this."""


class NotFoundError(APIStatusError):
    """404: the request id is unknown to the service (wrong id, another key, or expired)."""


class RateLimitedError(APIStatusError):
    """408/425/429: the service asked us to slow down, for `retry_after` seconds if it said.

    A 429 concerns the whole API key: everything sharing the key should pause, which is
    what `TokenBucket.pause()` is for.
    """


class ServerError(APIStatusError):
    """5xx: the service (or a proxy in front of it) is in trouble. Usually transient."""


class InvalidResponseError(DispatchError):
    """The service answered, but not with the documented JSON (HTML page, truncated body...).

    `status_code` is the HTTP status of that answer; `body_excerpt` a short, safe excerpt.
    """

    status_code: int | None
    body_excerpt: str

    def __init__(self, message: str, *, status_code: int | None, body_excerpt: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body_excerpt = body_excerpt


class InvalidRequestIdError(UsageError):
    """A request id that cannot be valid (empty, too long, or with characters such as `/`).

    Checked before the id is put into a URL path, so a hostile id cannot reach another
    endpoint.
    """


class TransportError(DispatchError):
    """The request did not complete: connection refused or reset, timeout, protocol error.

    The httpx exception is kept as `__cause__`.
    """


class DeadlineExceeded(DispatchError, TimeoutError):
    """A task did not reach a final or input-required status before its deadline."""

    request_id: str
    timeout: float

    def __init__(self, request_id: str, timeout: float) -> None:
        super().__init__(
            f"task {request_id!r} did not finish within {timeout:g}s; it may still be running "
            "on the service: wait again with a longer timeout, or give up on it"
        )
        self.request_id = request_id
        self.timeout = timeout


class SubmitUncertainError(DispatchError):
    """A submit failed after its body was sent: the task may or may not exist.

    Submitting is not idempotent, so this is never retried automatically. Before
    resubmitting, decide whether a duplicate run is acceptable.
    """
