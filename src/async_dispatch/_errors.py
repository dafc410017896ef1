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
    "CoordinationError",
    "DeadlineExceeded",
    "DispatchError",
    "EndpointError",
    "FleetIntegrityError",
    "InvalidRequestIdError",
    "InvalidResponseError",
    "LifecycleError",
    "NotFoundError",
    "NotOpenError",
    "OutputValidationError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "SubmitNotTrackedError",
    "SubmitUncertainError",
    "TransportError",
    "UploadError",
    "UsageError",
    "drop_tracebacks",
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
    what `TokenBucket.pause()` is for. From `fetch_status()`, `retry_after` is the service's
    hint as sent; from `get_status()`/`submit()`, which apply `RetryPolicy.rate_limit_pause`
    before giving up, it is the pause the key is under: wait at least that long.
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


class EndpointError(DispatchError):
    """What answered is not the Remote Dispatch API: `base_url` (or a proxy) is wrong.

    Raised by a submit answered 404 or 405 (the service answers those for a path it does
    not serve; an unknown *request id* can only be met when reading a status), or by a
    2xx whose body is a web page (the API never sends HTML). In both cases nothing
    suggests a task was created, unlike `SubmitUncertainError`. Not a `NotFoundError`:
    that one means "this task is unknown" and ends a tracked task as failed, while this
    one is a configuration mistake that every request will repeat until it is fixed.

    `url` is where the request went; `status_code` and `body_excerpt` what came back.
    """

    url: str
    status_code: int
    body_excerpt: str

    def __init__(self, message: str, *, url: str, status_code: int, body_excerpt: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code
        self.body_excerpt = body_excerpt


class UploadError(APIStatusError):
    """The storage bucket refused a file upload (`DispatchClient.upload()`), with a 4xx.

    The upload goes to the presigned URL the service handed out, without the API key, so
    this is never a problem of the key: the presigned form expired or was refused (file
    too large, fields altered). Asking for a new upload (calling `upload()` again) is the
    fix when it expired.
    """


class InvalidRequestIdError(UsageError):
    """A request id that cannot be valid (empty, too long, or with characters such as `/`).

    Checked before the id is put into a URL path, so a hostile id cannot reach another
    endpoint.
    """


class TransportError(DispatchError):
    """The request did not complete: connection refused or reset, timeout, protocol error.

    The httpx exception is kept as `__cause__`.
    """


class RequestTimeoutError(TransportError, TimeoutError):
    """One HTTP request took longer than the client's `timeout`, all phases together.

    A server that trickles a body a byte at a time keeps every single read short; this is
    the bound on the whole exchange. The request may have reached the service.
    """


class LifecycleError(DispatchError, RuntimeError):
    """An object was used in a state that does not allow it: entered a second time, used
    from another thread's event loop, or outside its ``async with`` (`NotOpenError`).

    Every object of this library that is opened with ``async with`` has one lifecycle
    (not opened, open, closed), and every misuse of it raises this or its subclass.
    """


class NotOpenError(LifecycleError):
    """An object was used outside its ``async with``: not open yet, or already closed.

    It is the one signal a `WebhookReceiver` answers with ``503`` (retry later): any other
    failure while handling a payload is the payload's problem or ours, never "closed".
    """


class CoordinationError(DispatchError):
    """A shared limiter or task store (Redis, for a fleet) failed to answer.

    Raised for a refused or reset connection, a timeout, a failed login or a command the
    store rejected. The message names where it tried (never a password) and what to check;
    the original error is chained as ``__cause__``. Nothing was decided for the caller: a
    limiter that raises this granted no token, a store that raises it changed nothing the
    caller can rely on. A poller rides out an outage (its workers wait and try again); a
    call you made yourself raises it. Calls that change nothing at the service
    (`Poller.track`, `Poller.forget`, reading outcomes) may simply be made again once Redis
    answers. A submit raises this class itself only when nothing was sent (a retry sends
    it once); once the service accepted the task it raises `SubmitNotTrackedError`
    instead, which carries the request id: do not submit that one again.
    """


class SubmitNotTrackedError(CoordinationError):
    """The service accepted a submit, but the fleet's store did not answer to track it.

    The task exists and runs: submitting it again would run it twice. `request_id` is its
    id. The poller keeps it and tracks it as soon as the store answers again (logged as
    ``submit_tracked_late``), so its outcome comes through ``async for`` as usual. If the
    process stops before that (``submit_not_tracked`` in the logs, with the id), track it
    with `Poller.track` from another process.
    """

    request_id: str

    def __init__(self, request_id: str, cause: BaseException) -> None:
        super().__init__(
            f"the service accepted task {request_id!r}, but the task store did not answer "
            f"to track it ({cause}); this poller tracks it once the store answers again. "
            "Do not submit it again: it would run twice"
        )
        self.request_id = request_id


class FleetIntegrityError(CoordinationError):
    """What a replica read from the fleet's Redis fails the fleet secret's check.

    Only with `RedisStore(secret=...)`: an outcome entry or a task record without a valid
    MAC was written by something that does not hold the secret (another program with
    write access to Redis, or a replica configured without it). Such an outcome is not
    delivered (it goes to the dead-letter stream, logged as ``outcome_integrity_failed``);
    a task whose record fails ends FAILED with this error and no context (its context
    cannot be trusted), logged as ``task_record_integrity_failed``. Find who writes to
    the fleet's keys: the README's fleet section says what Redis must keep out.
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


class OutputValidationError(DispatchError):
    """A task's structured output does not fit the type its submit asked for.

    Never raised out of the poller's iterator: it is the `Outcome.error` of an ERROR
    outcome (whose `status` keeps the raw reading, `Outcome.structured` the raw mapping),
    so a retry policy can resubmit on it like on any other failed attempt. The message
    says where the output differs (``$.items[2].price: expected a number, got 'n/a'``);
    it shows the offending value's type or a short excerpt, never the whole output.
    """


def drop_tracebacks(exc: BaseException) -> BaseException:
    """Forget the frames of `exc` and of every exception chained below it; return `exc`.

    A traceback keeps each frame's locals alive, and renderers that show locals
    (``capture_locals=True``, rich, structlog's dev renderer) print them. Inside an HTTP
    library those locals include the request headers, so the API key. The exception
    types and messages stay: they are what a person needs to read.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    pending: list[BaseException] = []
    while link is not None or pending:
        if link is None:
            link = pending.pop()
        if id(link) in seen:
            link = None
            continue
        seen.add(id(link))
        link.__traceback__ = None
        if link.__context__ is not None and link.__context__ is not link.__cause__:
            pending.append(link.__context__)
        link = link.__cause__
    return exc
