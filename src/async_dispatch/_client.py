"""`DispatchClient`: the endpoints of the Remote Dispatch API, with retries done right.

The one asymmetry that shapes this module: reading a status is idempotent and may be
retried freely, but submitting a task is not. A submit is retried only when the service
provably did not accept it (a 429, or a connection that was never established); anything
that may have reached the service raises `SubmitUncertainError` instead of risking a
duplicate run.

Submit, status and upload requests carry the credentials (`_Secret`); the storage request
of an upload never does. Nothing here logs a request body: it holds the submit's secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

import anyio
import attrs
import httpx

from ._clock import loop_clock
from ._config import (
    API_KEY_ENV,
    BROWSER_WINDOW_ID_ENV,
    DEFAULT_BASE_URL,
    EXECUTION_MODE_ENV,
    configured_allow_insecure,
    configured_api_key,
    configured_base_url,
    configured_text,
)
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceeded,
    DispatchError,
    EndpointError,
    InvalidRequestIdError,
    InvalidResponseError,
    LifecycleError,
    NotFoundError,
    NotOpenError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UploadError,
    UsageError,
    drop_tracebacks,
)
from ._limiter import Limiter
from ._log import debug_enabled, logger
from ._models import Status, TaskStatus
from ._options import SubmitOptions, merge_options
from ._retry import RetryPolicy, parse_retry_after
from ._service import State
from ._transport import (
    ACCEPT_ENCODING,
    DEADLINE,
    DirectExchange,
    PreparedHeaders,
    direct_exchange,
    own_client,
    read_body,
)
from ._uploads import PresignedPost, Uploadable, read_upload
from ._validation import check_base_url, check_int, check_request_id, check_seconds
from ._version import __version__ as _version
from ._wire import excerpt, parse_status_body
from .instrumentation import (
    SPAN_CHECK,
    SPAN_SUBMIT,
    CheckDone,
    CheckResult,
    Hook,
    Instrumentation,
    RateLimitPaused,
    RateLimitSource,
    SubmitDone,
    SubmitResult,
    TokenWaited,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import SubmitFields

__all__ = ["DEFAULT_BASE_URL", "DispatchClient"]

DEFAULT_MAX_BODY_SIZE: Final = 10 * 1024 * 1024
#: Connections per owned `AsyncClient`. httpx's pool bookkeeping grows with connections x
#: waiting requests, so a handful of busy connections beats a hundred idle ones.
DEFAULT_MAX_CONNECTIONS: Final = 16
#: No single HTTP request of this API has a reason to take longer than this.
MAX_TIMEOUT: Final = 3600.0
#: A submit may take long: the service may set the task up before it answers (the
#: official SDK lets it use its whole run budget), so it gets a bound of its own.
DEFAULT_SUBMIT_TIMEOUT: Final = 120.0

_USER_AGENT: Final = f"async-remote-dispatch/{_version} httpx/{httpx.__version__}"

#: Failures where the request provably never left: safe to retry even a submit.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Failures that a status read may retry.
_TRANSIENT = (RateLimitedError, ServerError, TransportError, InvalidResponseError)
#: Answers that ask us to slow down (`RateLimitedError`); any other answer ends a streak.
_SLOW_DOWN: Final = frozenset({408, 425, 429})
#: A pause that ends less than this much later than the one in force is the same pause,
#: as far as reporting it goes: concurrent 429s must not each report (and log) one.
_SAME_PAUSE: Final = 1.0

_T = TypeVar("_T")

#: Answers to a submit that mean nothing serves that path: the base URL is wrong.
_NO_ENDPOINT: Final = frozenset({404, 405})
#: A header name as HTTP defines it (RFC 9110 "token"); anything else httpx would refuse.
#: What `quote()` leaves as it is (RFC 3986's unreserved characters): an id made only of
#: these is its own path segment, and skips the quoting.
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]+")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers the client sets itself: an "auth" header of these names would corrupt requests.
_OWN_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "connection",
        "content-length",
        "content-type",
        "host",
        "transfer-encoding",
        "user-agent",
    }
)


_FINGERPRINT_LABEL: Final = b"async_dispatch api key fingerprint v1"


class _Secret:
    """Holds the credentials so that no repr, traceback-with-locals or `vars()` shows them.

    `headers` are the authentication headers of every API request (``x-api-key`` unless
    the caller chose others); `redact_text`/`redact_bytes` remove each of their values,
    and the credential after a scheme (``Bearer <token>``) on its own, from what the
    service says back.
    """

    __slots__ = ("_bytes", "_headers", "_texts")

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)
        texts = set(headers.values())
        texts.update(value.split(" ", 1)[1].strip() for value in headers.values() if " " in value)
        self._texts = tuple(sorted((t for t in texts if t), key=len, reverse=True))
        self._bytes = tuple(text.encode() for text in self._texts)

    def reveal(self) -> dict[str, str]:
        return self._headers

    def redact_text(self, text: str) -> str:
        for secret in self._texts:
            text = text.replace(secret, "***")
        return text

    def redact_bytes(self, body: bytes) -> bytes:
        for secret in self._bytes:
            body = body.replace(secret, b"***")
        return body

    def __repr__(self) -> str:
        return "_Secret('***')"


class _Shortcut:
    """How an open client that built its own HTTP client skips it: derived once, when it
    opens, from the transport under it (see `_transport.own_client`), and dropped when it
    closes. Configuration of that one connection, not lifecycle state."""

    __slots__ = ("bounded", "clock", "read_headers", "reads", "transport")

    def __init__(self, transport: httpx.AsyncBaseTransport, read_headers: PreparedHeaders) -> None:
        #: Requests go straight to it: nothing between our client and it is needed.
        self.transport = transport
        #: It bounds a whole exchange itself (see `_transport.DEADLINE`).
        self.bounded = getattr(transport, "honours_deadline", False) is True
        #: It does a status read whole itself (`DirectExchange`), with these headers.
        self.reads: DirectExchange | None = direct_exchange(transport)
        self.read_headers = read_headers
        #: The event loop's clock, for deadlines: `anyio.current_time()` costs a backend
        #: lookup on every reading.
        self.clock = loop_clock()

    def __repr__(self) -> str:
        return f"_Shortcut({self.transport!r})"


class _Opaque:
    """A request body, shown by its size only: a traceback rendered with its frames'
    locals (``capture_locals=True``, rich) must not print a submit's secrets."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<body of {len(self.value)} bytes>"


class _Bound:
    """One request's bound (`timeout` or `submit_timeout`), in each form it is needed."""

    __slots__ = ("extension", "httpx", "name", "seconds")

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self.httpx = httpx.Timeout(seconds)
        self.extension = self.httpx.as_dict()

    def __str__(self) -> str:
        return f"{self.name}={self.seconds:g}s"


class DispatchClient:
    """An async client for the Remote Dispatch API. Use it as an async context manager.

    Args:
        api_key: The service key, sent as ``x-api-key``; defaults to ``$DISPATCH_API_KEY``,
            then ``$NARADA_API_KEY`` (the official SDK's). Required unless `auth_headers`
            is given.
        base_url: Defaults to ``$DISPATCH_BASE_URL``, then ``$NARADA_API_BASE_URL``, then
            the public service.
        auth_headers: The escape hatch for other authentication, e.g.
            ``{"authorization": "Bearer ..."}``, sent with every API request (never to
            a storage URL of `upload()`) and redacted exactly like the key. Given, they
            replace the key from the environment, as in the official SDK, so a key
            exported for another purpose is never sent along; an `api_key` passed
            explicitly is sent besides them. Names must be valid header names (not
            one the client sets itself), values must not hold line breaks.
        http_client: Your own `httpx.AsyncClient` (custom transport, proxy, tests). It is
            used as is and never closed by this client.
        timeout: Seconds one HTTP request may take in total, from asking for a connection
            to the last byte of the body (each phase is bounded by it too). A request
            that runs out raises `RequestTimeoutError`. One call may make several
            requests: see `RetryPolicy.max_wait` for the bound on a whole call.
        submit_timeout: The same bound for a submit's request, which may take longer
            (the service may prepare the task before it answers). Defaults to 120 s, or
            `timeout` when that is longer. A submit that runs out of it is uncertain
            (`SubmitUncertainError`): the service may have created the task.
        retry: How `get_status()` and `submit()` retry transient failures, how long a
            429 pauses the key, and how long one call may wait in total.
        bucket: A `Limiter` (e.g. `TokenBucket`) this client's own requests take tokens
            from, and pause on a 429. Share it with your pollers to keep the whole key
            within its limit. The client enters it while it is open.
        allow_insecure: Allow plain ``http://`` to non-loopback hosts; defaults to
            ``$DISPATCH_ALLOW_INSECURE`` (``1`` allows), then False.
        max_body_size: Larger bodies are rejected without being read whole; the limit
            counts decoded bytes, so a small compressed body cannot inflate past it.
        hooks: Instrumentation hooks (`async_dispatch.instrumentation`): Prometheus,
            OpenTelemetry, your own. None means the logging hook only; ``[]`` means none.
        execution_mode: Sent with every submit that names neither an execution mode nor
            a browser window; defaults to ``$DISPATCH_EXECUTION_MODE``. The service's
            default mode, ``client``, runs in a browser window and refuses a submit that
            names none, so this client refuses it first (`UsageError`, nothing sent):
            set ``"cloud"`` or a `browser_window_id`.
        browser_window_id: Sent with those submits too; defaults to
            ``$DISPATCH_BROWSER_WINDOW_ID``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        auth_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        submit_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        bucket: Limiter | None = None,
        allow_insecure: bool | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        hooks: Iterable[Hook] | None = None,
        execution_mode: str | None = None,
        browser_window_id: str | None = None,
    ) -> None:
        for name, value in (
            ("execution_mode", execution_mode),
            ("browser_window_id", browser_window_id),
        ):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{name} must be a str, got {type(value).__name__}")
        #: Where submits that name neither run (see the arguments of the same names).
        self.execution_mode = configured_text(execution_mode, EXECUTION_MODE_ENV)
        self.browser_window_id = configured_text(browser_window_id, BROWSER_WINDOW_ID_ENV)
        self._key = _Secret(_credentials(api_key, auth_headers))
        #: Whether the caller chose its own authentication headers (for error messages).
        self._custom_auth = auth_headers is not None
        timeout = check_seconds("timeout", timeout, maximum=MAX_TIMEOUT)
        submit_timeout = (
            max(DEFAULT_SUBMIT_TIMEOUT, timeout)
            if submit_timeout is None
            else check_seconds("submit_timeout", submit_timeout, maximum=MAX_TIMEOUT)
        )
        max_body_size = check_int("max_body_size", max_body_size, minimum=1)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise UsageError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self._allow_insecure = configured_allow_insecure(allow_insecure)
        self.base_url = check_base_url(
            configured_base_url(base_url), allow_insecure=self._allow_insecure
        )
        self.retry = retry or RetryPolicy()
        self.bucket = bucket
        #: Where this client and every poller built on it report what they do.
        self.instrumentation = (
            Instrumentation.default() if hooks is None else Instrumentation(hooks)
        )
        self.max_body_size = max_body_size
        #: Seconds one request may take in total (and each of its phases).
        self.timeout = timeout
        #: The same for a submit's request.
        self.submit_timeout = submit_timeout
        self._bound = _Bound("timeout", timeout)
        self._submit_bound = _Bound("submit_timeout", submit_timeout)
        self._timeout = self._bound.httpx
        self._submit_url = f"{self.base_url}/remote-dispatch"
        self._status_url = f"{self.base_url}/remote-dispatch/responses/"
        self._upload_url = f"{self.base_url}/remote-dispatch/generate-file-upload-presigned-post"
        #: The httpx client requests go through: the caller's, or (inside ``async with``)
        #: the one this client built.
        self._http = http_client
        #: Configuration, not state: whether this client builds (and closes) its own.
        self._owns_http = http_client is None
        #: How requests skip our own httpx client while it is open (None: they do not).
        self._shortcut: _Shortcut | None = None
        #: The one lifecycle state (`_service.State`): the bucket is entered, and our own
        #: HTTP client exists, exactly while it is OPEN.
        self._state = State.UNOPENED
        self._rng = random.Random()
        #: 429s in a row met by this client's calls; any other answer resets it.
        self._consecutive_429 = 0
        #: When the latest pause this client announced ends (`anyio.current_time()`).
        self._paused_until = -math.inf

    def __repr__(self) -> str:
        return f"DispatchClient(base_url={self.base_url!r})"

    @property
    def key_fingerprint(self) -> str:
        """Tells API keys apart without revealing one: the first 16 hex digits of
        HMAC-SHA256 keyed by the API key over a fixed label. Fleet mode binds a fleet name
        to it, so two keys cannot share a fleet's tasks."""
        headers = self._key.reveal()
        # The credentials as sent (``x-api-key``, or the caller's auth headers), in one
        # canonical order: the same credentials give the same fingerprint.
        credential = "\n".join(f"{name}:{headers[name]}" for name in sorted(headers))
        digest = hmac.new(credential.encode(), _FINGERPRINT_LABEL, hashlib.sha256)
        return digest.hexdigest()[:16]

    @property
    def is_open(self) -> bool:
        """True when requests can be made: inside ``async with``, or with your own
        `http_client` (which this client never closes)."""
        return self._http is not None

    async def __aenter__(self) -> DispatchClient:
        if self._state is not State.UNOPENED:
            raise LifecycleError(
                f"DispatchClient is {self._state.value}; enter it only once (make a new one)"
            )
        if self._owns_http:
            # The direct transport: see `own_client` for why requests may skip the client.
            http, direct = own_client(
                max_connections=DEFAULT_MAX_CONNECTIONS, timeout=self._timeout
            )
            self._http = http
            if direct is not None:
                self._shortcut = _Shortcut(
                    direct,
                    # The headers `_request` gives a GET; not in a local (the key is in them).
                    PreparedHeaders(
                        self._request(
                            "GET", self._status_url, None, http, self._bound, "", True, direct
                        ).headers.multi_items()
                    ),
                )
        if self.bucket is not None:
            try:
                await self.bucket.__aenter__()
            except BaseException:
                if self._owns_http and self._http is not None:
                    http, self._http, self._shortcut = self._http, None, None
                    with anyio.CancelScope(shield=True):
                        await http.aclose()
                raise
        self._state = State.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it; a caller's is left open."""
        if self._state is not State.OPEN:
            return  # never opened (a caller's client, left open), or closed already
        self._state = State.CLOSED
        try:
            if self.bucket is not None:
                # Not in a shielded scope of its own: a limiter that owns a task group
                # must be left from the scope that entered it.
                await self.bucket.__aexit__(None, None, None)
        finally:
            if self._owns_http and self._http is not None:
                http, self._http, self._shortcut = self._http, None, None
                with anyio.CancelScope(shield=True):
                    await http.aclose()

    # -- submit -------------------------------------------------------------------------

    async def submit(
        self, prompt: str, options: SubmitOptions | None = None, **fields: Unpack[SubmitFields]
    ) -> str:
        """Submit a task and return its request id.

        The optional fields are `SubmitOptions`' (see there), given as one `options`
        value, as keywords, or both: a keyword wins over the same field of `options`
        (even None, which leaves the field out). Fields left as None are not sent, so the
        service's defaults apply. `extra` is merged into the JSON body untouched (for
        fields this client does not know yet); it may not override the named fields.
        Nothing of the body is logged, and what the service says back about it has the
        secret-bearing fields redacted.

        Raises:
            SubmitUncertainError: the request may have reached the service (a 5xx, a
                connection lost after sending, or a 2xx without a usable request id). Do
                not resubmit blindly.
            EndpointError: what answered is not the Remote Dispatch API (a 404 or 405, or
                a web page): check `base_url`. No task was created.
            BadRequestError, AuthenticationError, PermissionDeniedError: fix and retry.
            RateLimitedError, TransportError: still failing after the allowed retries
                (or the next wait would pass `RetryPolicy.max_wait`), and the service
                never accepted the task. `RateLimitedError.retry_after` says how long the
                key is paused.
        """
        merged = merge_options(options, fields)
        del fields  # this frame outlives the request: its locals must not hold secrets
        return await self._submit_with(self.bucket, prompt, merged)

    def _with_target(self, options: SubmitOptions) -> SubmitOptions:
        """`options` with the client's execution mode and window when they name neither;
        `UsageError` when the submit would run in client mode without a window."""
        extra = options.extra or {}
        mode = options.execution_mode
        mode = extra.get("executionMode") if mode is None else mode
        window = options.browser_window_id
        window = extra.get("browserWindowId") if window is None else window
        if mode is None and window is None:
            mode, window = self.execution_mode, self.browser_window_id
            options = attrs.evolve(options, execution_mode=mode, browser_window_id=window)
        if mode in (None, "client") and not window:
            raise UsageError(
                "this submit names no browser window, and the default execution mode "
                "('client') runs in one: pass execution_mode='cloud', a browser_window_id, "
                f"or set {EXECUTION_MODE_ENV}/{BROWSER_WINDOW_ID_ENV}"
            )
        return options

    async def _submit_with(
        self, bucket: Limiter | None, prompt: str, options: SubmitOptions
    ) -> str:
        """`submit()` taking tokens from `bucket`, for pollers that bring their own.

        The one place a submit is reported (`SPAN_SUBMIT`, `SubmitDone`), whoever calls.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise UsageError("prompt must be a non-empty string")
        options = self._with_target(options)
        content = _Opaque(_json_body(options.body(prompt)))
        instrumentation = self.instrumentation
        if not instrumentation.enabled:
            return await self._with_retries(
                lambda: self._submit_once(content, options),
                (RateLimitedError, TransportError),
                request_id=None,
                bucket=bucket,
                source="submit",
            )
        waits = _Waits()
        started = anyio.current_time()
        result: SubmitResult = "failed"
        request_id: str | None = None
        try:
            with instrumentation.span(SPAN_SUBMIT):
                request_id = await self._with_retries(
                    lambda: self._submit_once(content, options),
                    (RateLimitedError, TransportError),
                    request_id=None,
                    bucket=bucket,
                    source="submit",
                    waits=waits,
                )
            result = "accepted"
            return request_id
        except DispatchError as exc:
            result = submit_result(exc)
            raise
        finally:
            latency = anyio.current_time() - started - waits.seconds
            instrumentation.emit(SubmitDone(result=result, latency=latency, request_id=request_id))

    async def _submit_once(self, content: _Opaque, options: SubmitOptions) -> str:
        """One submit request of `content` (`options`' body). The strings of the
        secret-bearing options are redacted from every excerpt of what the service
        answers."""
        url = self._submit_url
        try:
            status_code, headers, body = await self._send(
                "POST", url, content=content, bound=self._submit_bound
            )
        except InvalidResponseError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                raise
            raise SubmitUncertainError(
                f"submit was answered but the answer could not be read ({exc}); the task may "
                "have been created. Check before resubmitting: a resubmit can run the task twice"
            ) from exc
        except TransportError as exc:
            if isinstance(exc.__cause__, _NOT_SENT):
                raise
            raise SubmitUncertainError(
                f"submit failed after the request was sent ({exc}); "
                "the task may have been created. Check before resubmitting: a resubmit can "
                "run the task twice"
            ) from exc
        if not 200 <= status_code < 300:
            secrets = options.secrets()
            if status_code >= 500:
                raise SubmitUncertainError(
                    f"submit answered HTTP {status_code}; the task may have been created. "
                    f"Check before resubmitting: a resubmit can run the task twice. Service "
                    f"said: {self._excerpt(body, secrets)!r}"
                )
            if status_code in _NO_ENDPOINT:
                said = self._excerpt(body, secrets)
                # The one 404 a right URL might give: an unknown conversation to continue.
                unless = (
                    ""
                    if options.previous_request_id is None
                    else " (unless the service does not know previous_request_id "
                    f"{options.previous_request_id!r})"
                )
                raise EndpointError(
                    f"HTTP {status_code} from POST {url}: nothing serves the Remote Dispatch "
                    f"API there{unless}, so no task was created; check base_url (the public "
                    f"service is {DEFAULT_BASE_URL}). Answer: {said!r}",
                    url=url,
                    status_code=status_code,
                    body_excerpt=said,
                )
            self._raise_for_status(status_code, headers, body, request_id=None, secrets=secrets)
        # No log line here: `SubmitDone` is the submit's (`LoggingHook` logs it at debug).
        return self._request_id_from(status_code, headers, body, options)

    def _request_id_from(
        self, status_code: int, headers: Mapping[str, str], body: bytes, options: SubmitOptions
    ) -> str:
        """The id in a submit's 2xx answer.

        A web page is `EndpointError`: the API answers JSON only, so an HTML page comes
        from a website or a proxy's catch-all at the wrong address, which creates no task.
        Any other body without a usable id stays `SubmitUncertainError`: something that
        speaks JSON at the submit path may be the service, and may have made the task.

        The id is read *after* redaction: an id the service built from a credential is
        refused, and no error (nor its context) shows any of it. Beyond that any
        non-empty string is an id (`check_request_id` refuses only what no path can
        carry); ids have no documented format.
        """
        if _looks_like_html(headers, body):
            said = self._excerpt(body, options.secrets())
            raise EndpointError(
                f"submit to POST {self._submit_url} answered HTTP {status_code} with a web "
                f"page: this looks like a web page, not the API: check base_url (the public "
                f"service is {DEFAULT_BASE_URL}). A website creates no task. Page: {said!r}",
                url=self._submit_url,
                status_code=status_code,
                body_excerpt=said,
            )
        try:
            data = json.loads(self._redacted(body))
        except (ValueError, RecursionError):
            data = None
        request_id = data.get("requestId") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise SubmitUncertainError(
                f"submit answered HTTP {status_code} without a requestId: the endpoint is "
                "broken or is not the Remote Dispatch API (check base_url). If it is the "
                "service, the task was probably created but cannot be tracked. Body: "
                f"{self._excerpt(body, options.secrets())!r}"
            )
        request_id = self._redact(request_id)  # an escaped key survives bytes redaction
        if "***" in request_id:  # where the key was: never send it back in a URL
            problem = "it holds the API key"
        else:
            try:
                return check_request_id(request_id)
            except InvalidRequestIdError as exc:
                problem = str(exc)
        # Raised outside the `except`: the checker's error is not kept as `__context__`.
        raise SubmitUncertainError(
            f"submit answered HTTP {status_code} with an unusable requestId: {problem}"
        )

    # -- status -------------------------------------------------------------------------

    async def get_status(self, request_id: str) -> TaskStatus:
        """Read a task's status once, retrying transient failures.

        5xx, transport errors and bodies that are not the documented JSON are retried
        under `retry` with capped exponential backoff and full jitter (at least any
        `Retry-After` the service sent). A 429 pauses the key (and `bucket`) for
        `RetryPolicy.rate_limit_pause` before the next try. When attempts run out, or
        the next wait would take the call past `RetryPolicy.max_wait`, the last error is
        raised: a call returns within about ``attempts * timeout + max_wait`` seconds.
        """
        return await self._read_status(check_request_id(request_id), 1)

    async def _read_status(self, request_id: str, attempt: int) -> TaskStatus:
        """`get_status()` of a valid id, reported as one check (`SPAN_CHECK`, `CheckDone`)."""
        instrumentation = self.instrumentation
        if not instrumentation.enabled:
            return await self._with_retries(
                lambda: self._fetch_valid_status(request_id),
                _TRANSIENT,
                request_id=request_id,
                bucket=self.bucket,
                source="client",
            )
        waits = _Waits()
        started = anyio.current_time()
        reading: TaskStatus | DispatchError | None = None  # None: cancelled
        try:
            with instrumentation.span(SPAN_CHECK, request_id=request_id, attempt=attempt):
                reading = await self._with_retries(
                    lambda: self._fetch_valid_status(request_id),
                    _TRANSIENT,
                    request_id=request_id,
                    bucket=self.bucket,
                    source="client",
                    waits=waits,
                )
            return reading
        except DispatchError as exc:
            reading = exc
            raise
        finally:
            instrumentation.emit(
                CheckDone(
                    request_id=request_id,
                    result=check_result(reading),
                    latency=anyio.current_time() - started - waits.seconds,
                    attempt=attempt,
                )
            )

    async def fetch_status(self, request_id: str) -> TaskStatus:
        """Read a task's status with exactly one HTTP request: no retry, no token taken.

        The building block for schedulers (the `Poller`) that decide themselves when to
        retry and spend rate-limit tokens centrally. Most callers want `get_status()`.
        `request_id` must already be valid (see `get_status()`). It travels as one path
        segment, percent-encoded (``/`` and ``+`` included): ids have no documented
        format, and an id is never a path.
        """
        return await self._fetch_valid_status(check_request_id(request_id))

    async def _fetch_valid_status(self, request_id: str) -> TaskStatus:
        """`fetch_status()` of an id already checked (`check_request_id`): what the
        poller and `get_status()` call, which check every id once, when it arrives."""
        segment = request_id if _UNRESERVED.fullmatch(request_id) else quote(request_id, safe="")
        status_code, headers, body = await self._send("GET", self._status_url + segment)
        self._raise_for_status(status_code, headers, body, request_id=request_id)
        if debug_enabled():
            logger.debug("status_read", request_id=request_id, status_code=status_code)
        # Redacted before parsing, so that no value taken from it (a timestamp, a text
        # quoted in an error) can carry the key; `redact` catches a JSON-escaped key.
        return parse_status_body(
            request_id, self._redacted(body), status_code=status_code, redact=self._redact
        )

    async def wait(
        self,
        request_id: str,
        *,
        timeout: float,
        interval: float = 2.0,
        max_interval: float = 10.0,
    ) -> TaskStatus:
        """Poll one task until it is `success`, `error` or `input-required`.

        The interval starts at `interval` and grows by half each check up to
        `max_interval`. To track many tasks, use a `Poller` instead: it shares one rate
        budget among all of them.

        A `RateLimitedError` that `get_status()` gives up on does not end the wait: it
        sleeps for the pause the error carries (within `timeout`) and checks again.

        Raises:
            DeadlineExceeded: after `timeout` seconds.
            NotFoundError: the service does not know the id.
        """
        request_id = check_request_id(request_id)
        timeout = check_seconds("timeout", timeout)
        interval = check_seconds("interval", interval)
        max_interval = max(check_seconds("max_interval", max_interval), interval)
        with anyio.move_on_after(timeout):
            delay = interval
            attempt = 0
            while True:
                attempt += 1
                try:
                    status = await self._read_status(request_id, attempt)
                except RateLimitedError as exc:
                    await anyio.sleep(max(exc.retry_after or 0.0, delay))
                    continue
                if status.is_terminal or status.status is Status.INPUT_REQUIRED:
                    return status
                await anyio.sleep(delay)
                delay = min(max_interval, delay * 1.5)
        raise DeadlineExceeded(request_id, timeout)

    # -- uploads ------------------------------------------------------------------------

    async def upload(self, file_or_path: Uploadable, *, filename: str | None = None) -> str:
        """Upload a file for a task; return its storage key.

        Refer to it in a submit as ``attachment={"key": key}``, or in `input_variables`
        with `file_variable(key, filename)`.

        `file_or_path` is a path (read with `anyio.Path`), the bytes themselves (then
        `filename` is required), or a file opened in binary mode (read in a worker
        thread, from its current position). The service stores the file under its base
        name: `filename`, else the path's or the file object's name. The content is read
        whole before anything is sent.

        Two requests: the service hands out a presigned POST (with the API key, retried
        like a status read, taking a token from `bucket`), then the file goes as a
        multipart form (the presigned fields, then ``file``) to the storage URL it names,
        with none of this client's credentials, retried on 5xx and transport failures
        (posting the same form twice stores the same file under the same key). Each
        request is bounded by `timeout`.

        Raises:
            UploadError: the storage refused the file (4xx): not a problem of the API
                key; the presigned form may have expired. Call `upload()` again.
            EndpointError: the service has no upload endpoint at `base_url`.
            AuthenticationError, PermissionDeniedError, BadRequestError: the service
                refused to hand out an upload.
            InvalidResponseError: the service's answer was not a presigned POST, or
                named a storage URL this client may not send a file to.
            ServerError, RateLimitedError, TransportError: still failing after retries.
            UsageError: the file cannot be read, or has no name.
        """
        name, content = await read_upload(file_or_path, filename)
        request = _Opaque(_json_body({"filename": name}))
        post = await self._with_retries(
            lambda: self._presign_once(request),
            _TRANSIENT,
            request_id=None,
            bucket=self.bucket,
            source="client",
        )
        url = str(post.check_url(allow_insecure=self._allow_insecure))
        form, content_type = post.form(name, content)
        sealed = _Opaque(form)
        del content, form  # a traceback with locals shows the form's size, not the file
        await self._with_retries(
            lambda: self._store_once(post, url, sealed, content_type),
            (ServerError, TransportError),
            request_id=None,
            bucket=None,  # the storage is not the service: its rate limit is not the key's
            source="client",
        )
        return post.key

    async def _presign_once(self, content: _Opaque) -> PresignedPost:
        url = self._upload_url
        status_code, headers, body = await self._send("POST", url, content=content)
        if status_code in _NO_ENDPOINT:
            said = self._excerpt(body)
            raise EndpointError(
                f"HTTP {status_code} from POST {url}: no upload endpoint of the Remote "
                f"Dispatch API there; check base_url (the public service is "
                f"{DEFAULT_BASE_URL}). Answer: {said!r}",
                url=url,
                status_code=status_code,
                body_excerpt=said,
            )
        self._raise_for_status(status_code, headers, body, request_id=None)
        return PresignedPost.parse(self._redacted(body), status_code=status_code)

    async def _store_once(
        self, post: PresignedPost, url: str, form: _Opaque, content_type: str
    ) -> None:
        status_code, _, body = await self._send(
            "POST", url, content=form, content_type=content_type, authenticated=False
        )
        if 200 <= status_code < 300:
            return
        # The presigned fields (a policy, its signature) are redacted like secrets.
        hidden = tuple(value for name, value in post.fields.items() if name != "key" and value)
        said = self._excerpt(body, hidden)
        where = post.where()
        if status_code >= 500:
            raise ServerError(
                f"HTTP {status_code} from the storage at {where}: it is in trouble; retry "
                f"the upload later. Storage said: {said!r}",
                status_code=status_code,
                body_excerpt=said,
            )
        raise UploadError(
            f"HTTP {status_code} from the storage at {where}: it refused the file. Not a "
            "problem of the API key (the storage never sees it): the presigned upload may "
            "have expired, or the file broke its rules (size, type); call upload() again. "
            f"Storage said: {said!r}",
            status_code=status_code,
            body_excerpt=said,
        )

    # -- plumbing -----------------------------------------------------------------------

    async def _with_retries(
        self,
        once: Callable[[], Awaitable[_T]],
        retryable: tuple[type[DispatchError], ...],
        *,
        request_id: str | None,
        bucket: Limiter | None,
        source: RateLimitSource,
        waits: _Waits | None = None,
    ) -> _T:
        """Run `once` until it succeeds, a non-retryable error, `attempts` tries, or the
        wait budget (`RetryPolicy.max_wait`) is spent, taking a token before each try.

        `source` says whose 429 it is (`RateLimitPaused`); `waits` adds up the seconds
        spent waiting for tokens, which a reported latency leaves out.
        """
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            token_wait = await self._take_token(bucket, self.retry.max_wait - waited, request_id)
            waited += token_wait
            if waits is not None:
                waits.seconds += token_wait
            try:
                return await once()
            except retryable as exc:
                failure: DispatchError = exc
            delay = self._delay_after(failure, attempt)
            retrying = attempt < self.retry.attempts and waited + delay <= self.retry.max_wait
            if isinstance(failure, RateLimitedError) and (retrying or bucket is not None):
                # The key slows down even when this call gives up: others share it.
                self._announce_pause(delay, bucket, source)
                if bucket is not None:
                    await bucket.pause(delay)
            if attempt >= self.retry.attempts:
                raise failure
            if not retrying:
                raise self._out_of_budget(failure, delay)
            if debug_enabled():
                logger.debug(
                    "retrying",
                    request_id=request_id,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=type(failure).__name__,
                )
            await anyio.sleep(delay)
            waited += delay

    async def _take_token(
        self, bucket: Limiter | None, budget: float, request_id: str | None
    ) -> float:
        """Wait for `bucket`; return the seconds waited. A key paused for longer than the
        call may still wait is not waited for: `RateLimitedError` at once, nothing sent."""
        if bucket is None:
            return 0.0
        paused = bucket.paused_for()
        if paused > budget:
            raise RateLimitedError(
                f"the API key is paused for {paused:.3g}s after a 429 (met by this client or "
                f"by a poller sharing its bucket), longer than this call may still wait "
                f"(retry.max_wait={self.retry.max_wait:g}s); nothing was sent",
                status_code=429,
                request_id=request_id,
                retry_after=paused,
            )
        start = anyio.current_time()
        await bucket.acquire()
        waited = anyio.current_time() - start
        if waited > 0 and self.instrumentation.enabled:
            self.instrumentation.emit(TokenWaited(seconds=waited))
        return waited

    def _delay_after(self, failure: DispatchError, attempt: int) -> float:
        """Seconds to wait before the next try: the backoff, or for a 429 the pause of
        the key (`RetryPolicy.rate_limit_pause`, counting 429s in a row)."""
        if not isinstance(failure, RateLimitedError):
            delay = self.retry.backoff(attempt, self._rng)
            retry_after = getattr(failure, "retry_after", None)
            return delay if retry_after is None else max(delay, retry_after)
        self._consecutive_429 += 1
        return self.retry.rate_limit_pause(failure.retry_after, self._consecutive_429)

    def _announce_pause(
        self, pause: float, bucket: Limiter | None, source: RateLimitSource
    ) -> bool:
        """One `RateLimitPaused` per pause that extends the one in force, not one per 429
        (`LoggingHook` turns it into the ``rate_limited`` warning). True if it did."""
        now = anyio.current_time()
        current = self._paused_until
        if bucket is not None:
            current = max(current, now + bucket.paused_for())
        until = now + pause
        self._paused_until = max(self._paused_until, until)
        announced = until > current + _SAME_PAUSE or current <= now
        if announced and self.instrumentation.enabled:
            self.instrumentation.emit(RateLimitPaused(seconds=pause, source=source))
        return announced

    async def _pause_key(
        self, error: RateLimitedError, bucket: Limiter, source: RateLimitSource
    ) -> bool:
        """A 429 met by a caller that schedules its own retries (a poller's check): the
        one streak, the one pause rule and the one announcement of this client, applied to
        `bucket`. True if the pause was a new one (announced)."""
        self._consecutive_429 += 1
        seconds = self.retry.rate_limit_pause(error.retry_after, self._consecutive_429)
        announced = self._announce_pause(seconds, bucket, source)
        await bucket.pause(seconds)
        return announced

    def _out_of_budget(self, failure: DispatchError, delay: float) -> DispatchError:
        """The error to raise instead of a wait that would pass `RetryPolicy.max_wait`."""
        if not isinstance(failure, RateLimitedError):
            return failure
        return RateLimitedError(
            f"{failure} The key is paused for {delay:.3g}s, longer than this call may "
            f"still wait (retry.max_wait={self.retry.max_wait:g}s); try again later",
            status_code=failure.status_code,
            request_id=failure.request_id,
            body_excerpt=failure.body_excerpt,
            retry_after=delay,
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        content: _Opaque | None = None,
        bound: _Bound | None = None,
        content_type: str = "application/json",
        authenticated: bool = True,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange, bounded in total by `bound` (`timeout` unless told); the
        body is read up to `max_body_size` (decoded) and no further. A request that is
        not `authenticated` (to a storage URL) carries none of our credentials.

        Failures leave as this library's errors with the frames under them forgotten
        (`drop_tracebacks`): the HTTP stack's locals hold the request headers, so the
        key. Errors are raised outside any ``except`` block, so no unredacted exception
        rides along as `__context__`.
        """
        http = self._http
        if http is None:
            raise NotOpenError(
                "DispatchClient is not open: use it as `async with DispatchClient(...) as c:`"
            )
        bound = bound or self._bound
        failure: DispatchError | None = None
        answer: tuple[int, Mapping[str, str], bytes] | None = None
        shortcut = self._shortcut
        try:
            reads = shortcut.reads if shortcut is not None else None
            if reads is not None and method == "GET" and content is None and authenticated:
                # A status read, most of all requests: no httpx objects at all, the headers
                # built once (see `_transport.DirectExchange`); bounded by its own timer.
                assert shortcut is not None
                answer = await reads.exchange(
                    method,
                    url,
                    shortcut.read_headers,
                    deadline=shortcut.clock() + bound.seconds,
                    limit=self.max_body_size,
                )
                return self._answered(answer)
            direct = shortcut.transport if shortcut is not None else None
            request = self._request(
                method, url, content, http, bound, content_type, authenticated, direct
            )
            if shortcut is not None and shortcut.bounded:
                # The transport's own timer bounds the whole exchange.
                answer = await self._exchange(http, request, bound, authenticated)
            else:
                with anyio.move_on_after(bound.seconds):
                    answer = await self._exchange(http, request, bound, authenticated)
        except httpx.TransportError as exc:
            failure = self._transport_error(method, url, exc, bound)
        except httpx.DecodingError as exc:  # decoded by a caller's own transport
            failure = InvalidResponseError(
                f"{method} {_path_of(url)}: the body could not be decoded ({exc})",
                status_code=None,
            )
            failure.__cause__ = drop_tracebacks(exc)
        except BaseException as exc:  # cancellation, and anything unforeseen
            drop_tracebacks(exc)
            raise
        if answer is not None:
            return self._answered(answer)
        if failure is None:  # the time ran out
            failure = RequestTimeoutError(
                f"{method} {_path_of(url)}: no complete answer within {bound} (the bound "
                "on one whole request, body included)"
            )
        raise failure

    def _answered(
        self, answer: tuple[int, Mapping[str, str], bytes]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """An answer came: any but a slow-down ends the streak of 429s."""
        if answer[0] not in _SLOW_DOWN:
            self._consecutive_429 = 0
        return answer

    async def _exchange(
        self, http: httpx.AsyncClient, request: httpx.Request, bound: _Bound, authenticated: bool
    ) -> tuple[int, Mapping[str, str], bytes]:
        shortcut = self._shortcut
        if shortcut is not None:
            if shortcut.bounded:
                request.extensions[DEADLINE] = shortcut.clock() + bound.seconds
            response = await shortcut.transport.handle_async_request(request)
        else:
            # A request to storage gets none of the caller's client-level auth either.
            auth = httpx.USE_CLIENT_DEFAULT if authenticated else None
            response = await http.send(request, stream=True, auth=auth)
        try:
            body = await read_body(response, self.max_body_size)
        finally:
            await response.aclose()
        return response.status_code, response.headers, body

    def _request(
        self,
        method: str,
        url: str,
        content: _Opaque | None,
        http: httpx.AsyncClient,
        bound: _Bound,
        content_type: str,
        authenticated: bool,
        direct: httpx.AsyncBaseTransport | None,
    ) -> httpx.Request:
        """The request, with the credentials revealed at the last moment.

        They are plain `str`s only in this frame, which returns before any I/O and so
        never appears in a traceback; an `httpx.Request`'s repr does not show headers.

        A request that is not `authenticated` is built without the caller's
        `http_client` (whose default headers or auth could hold credentials) and is
        sent without its auth: a storage bucket sees none of our secrets.
        """
        headers = {
            "accept": "application/json",
            "accept-encoding": ACCEPT_ENCODING,
            "user-agent": _USER_AGENT,
        }
        if authenticated:
            headers.update(self._key.reveal())
        body = None if content is None else content.value
        if body is not None:
            headers["content-type"] = content_type
        if direct is not None or not authenticated:
            return httpx.Request(
                method,
                url,
                headers=headers,
                content=body,
                extensions={"timeout": bound.extension},
            )
        return http.build_request(method, url, headers=headers, content=body, timeout=bound.httpx)

    def _transport_error(
        self, method: str, url: str, exc: httpx.TransportError, bound: _Bound
    ) -> DispatchError:
        """Our error for an httpx failure, its cause kept without the cause's frames."""
        error: DispatchError
        detail = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
        if isinstance(exc, httpx.TimeoutException):
            error = RequestTimeoutError(f"{method} {_path_of(url)} timed out ({detail}; {bound})")
        else:
            error = TransportError(f"{method} {_path_of(url)} failed: {detail}")
        error.__cause__ = drop_tracebacks(exc)
        return error

    def _raise_for_status(
        self,
        status_code: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request_id: str | None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        if 200 <= status_code < 300:
            return
        said = self._excerpt(body, secrets)
        where = f" for {request_id!r}" if request_id else ""
        kwargs: dict[str, Any] = {
            "status_code": status_code,
            "request_id": request_id,
            "body_excerpt": said,
            "retry_after": parse_retry_after(headers.get("retry-after")),
        }
        detail = f" Service said: {said!r}" if said else ""
        if status_code in (400, 422):
            raise BadRequestError(
                f"HTTP {status_code}{where}: the service rejected the request as malformed; "
                f"fix it before retrying.{detail}",
                **kwargs,
            )
        if status_code == 401:
            check = "the auth_headers" if self._custom_auth else API_KEY_ENV
            raise AuthenticationError(
                f"HTTP 401{where}: the API key is missing or wrong; check {check} "
                "(the same key that created a task must read it)",
                **kwargs,
            )
        if status_code == 403:
            raise PermissionDeniedError(
                f"HTTP 403{where}: the API key is valid but not allowed to do this",
                **kwargs,
            )
        if status_code in (404, 410):
            raise NotFoundError(
                f"HTTP {status_code}{where}: the service does not know this request id (wrong "
                "id, created with another key, or expired)",
                **kwargs,
            )
        if status_code in (408, 425, 429):
            wait = kwargs["retry_after"]
            hint = f"retry after {wait:g}s" if wait is not None else "back off and retry"
            raise RateLimitedError(
                f"HTTP {status_code}{where}: the service asked us to slow down; {hint}",
                **kwargs,
            )
        if status_code >= 500:
            raise ServerError(
                f"HTTP {status_code}{where}: the service is in trouble; retry later with "
                f"backoff.{detail}",
                **kwargs,
            )
        raise APIStatusError(f"HTTP {status_code}{where}: unexpected answer.{detail}", **kwargs)

    def _excerpt(self, body: bytes, secrets: tuple[str, ...] = ()) -> str:
        """A safe excerpt of a body: the credentials and `secrets` (of a submit's options)
        are removed *before* cutting, so no fragment of them can survive at the cut."""
        body = self._redacted(body)
        for secret in secrets:
            for form in _spellings(secret):
                body = body.replace(form, b"***")
        return excerpt(body)

    def _redacted(self, body: bytes) -> bytes:
        """`body` with every literal occurrence of a credential replaced by ``***``."""
        return self._key.redact_bytes(body)

    def _redact(self, text: str) -> str:
        """Remove the credentials from text the service echoed back, before it reaches a
        message."""
        return self._key.redact_text(text)


def _credentials(api_key: object, auth_headers: object) -> dict[str, str]:
    """The authentication headers of every API request, checked (see `DispatchClient`).

    Messages never show a value: a refused credential is still a credential.
    """
    if api_key is not None and not isinstance(api_key, str):
        raise UsageError(f"api_key must be a str, got {type(api_key).__name__}")
    headers: dict[str, str] = {}
    if auth_headers is not None:
        if not isinstance(auth_headers, Mapping):
            raise UsageError(
                f"auth_headers must be a mapping of header names to values, got "
                f"{type(auth_headers).__name__}"
            )
        for name, value in auth_headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise UsageError(f"auth_headers: {name!r} is not a valid HTTP header name")
            if name.lower() in _OWN_HEADERS:
                raise UsageError(f"auth_headers: {name!r} is set by the client, not for auth")
            if name.lower() in headers:
                raise UsageError(f"auth_headers: {name!r} is given twice")
            headers[name.lower()] = _header_value(f"the {name!r} auth header", value)
    key = api_key if auth_headers is not None else configured_api_key(api_key)
    if key is not None and key.strip():
        if "x-api-key" in headers:
            raise UsageError("pass the key either as api_key or in auth_headers, not both")
        headers["x-api-key"] = _header_value("the API key", key)
    if not headers:
        raise UsageError(
            f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable "
            "(or pass auth_headers=... for another kind of credentials)"
        )
    return headers


def _header_value(what: str, value: object) -> str:
    """`value` stripped, if it can travel in a header as it is: a non-empty printable
    ASCII str (httpx encodes header values as ASCII; a line break would end the header)."""
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a str, got {type(value).__name__}")
    if any(ch in value for ch in "\r\n\0"):
        raise UsageError(f"{what} contains a line break or NUL character")
    value = value.strip()
    if not value or not value.isascii() or not value.isprintable():
        raise UsageError(f"{what} must be non-empty printable ASCII")
    return value


def _json_body(body: Mapping[str, Any]) -> bytes:
    """`body` as compact JSON; mappings and sequences of any kind become objects and
    arrays. The error names the problem, never a value (the body holds secrets)."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False, default=_jsonable).encode()
    except RecursionError:
        problem = "it is nested too deeply"
    except (TypeError, ValueError) as exc:  # json's messages name types, never values
        problem = str(exc)
    raise UsageError(f"submit body is not JSON-serialisable: {problem}")


def _jsonable(value: object) -> object:
    """What `json` cannot write itself: mappings and sequences that are not dict or list."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _spellings(secret: str) -> set[bytes]:
    """How `secret` may appear in a body echoed back: as is, or JSON-escaped (with or
    without non-ASCII characters escaped too)."""
    return {
        secret.encode(),
        json.dumps(secret)[1:-1].encode(),
        json.dumps(secret, ensure_ascii=False)[1:-1].encode(),
    }


def _looks_like_html(headers: Mapping[str, str], body: bytes) -> bool:
    """Whether an answer is a web page: said so by its type, or starting like one."""
    if "html" in headers.get("content-type", "").lower():
        return True
    start = body[:64].lstrip().lower()
    return start.startswith((b"<!doctype", b"<html", b"<head", b"<body"))


def _path_of(url: str) -> str:
    """The URL without scheme and host, for messages (the host is in `base_url`)."""
    return "/" + url.split("://", 1)[-1].partition("/")[2]


class _Waits:
    """Seconds one reported call spent waiting for rate-limit tokens."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


_STATUS_RESULTS: Final[dict[Status, CheckResult]] = {
    Status.PENDING: "pending",
    Status.SUCCESS: "success",
    Status.ERROR: "error",
    Status.INPUT_REQUIRED: "input-required",
    Status.UNKNOWN: "unknown-status",
}


def check_result(reading: TaskStatus | DispatchError | None) -> CheckResult:
    """The bounded word a status check is counted under (`CheckDone.result`).

    The same words as `classify()`'s verdicts: a refused key, an unknown task, a refused
    id, a 429; anything else that failed is transient. None is a check that never ended
    (cancelled: its deadline struck, or its caller gave up).
    """
    if isinstance(reading, TaskStatus):
        return _STATUS_RESULTS[reading.status]
    if reading is None:
        return "abandoned"
    if isinstance(reading, (AuthenticationError, PermissionDeniedError)):
        return "refused"
    if isinstance(reading, NotFoundError):
        return "not-found"
    if isinstance(reading, BadRequestError):
        return "rejected"
    if isinstance(reading, RateLimitedError):
        return "rate-limited"
    return "transient"


def submit_result(error: DispatchError) -> SubmitResult:
    """The bounded word a failed submit is counted under (`SubmitDone.result`)."""
    if isinstance(error, SubmitUncertainError):
        return "uncertain"
    if isinstance(error, RateLimitedError):
        return "rate-limited"
    if isinstance(error, (BadRequestError, AuthenticationError, PermissionDeniedError)):
        return "rejected"
    return "failed"
