"""`DispatchClient`: the two endpoints of the Remote Dispatch API, with retries done right.

The one asymmetry that shapes this module: reading a status is idempotent and may be
retried freely, but submitting a task is not. A submit is retried only when the service
provably did not accept it (a 429, or a connection that was never established); anything
that may have reached the service raises `SubmitUncertainError` instead of risking a
duplicate run.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import quote

import anyio
import httpx

from ._config import (
    API_KEY_ENV,
    DEFAULT_BASE_URL,
    configured_allow_insecure,
    configured_api_key,
    configured_base_url,
)
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceeded,
    DispatchError,
    InvalidRequestIdError,
    InvalidResponseError,
    NotFoundError,
    NotOpenError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UsageError,
    drop_tracebacks,
)
from ._limiter import Limiter
from ._log import debug_enabled, logger
from ._models import Status, TaskStatus
from ._retry import RetryPolicy, parse_retry_after
from ._transport import (
    ACCEPT_ENCODING,
    DEADLINE,
    DirectExchange,
    PreparedHeaders,
    direct_exchange,
    own_client,
    read_body,
)
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

__all__ = ["DEFAULT_BASE_URL", "DispatchClient"]

DEFAULT_MAX_BODY_SIZE: Final = 10 * 1024 * 1024
#: Connections per owned `AsyncClient`. httpx's pool bookkeeping grows with connections x
#: waiting requests, so a handful of busy connections beats a hundred idle ones.
DEFAULT_MAX_CONNECTIONS: Final = 16
#: No single HTTP request of this API has a reason to take longer than this.
MAX_TIMEOUT: Final = 3600.0

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

_SUBMIT_FIELDS: Final = {
    "browser_window_id": "browserWindowId",
    "execution_mode": "executionMode",
    "clear_chat": "clearChat",
    "previous_request_id": "previousRequestId",
    "save_screenshots": "saveScreenshots",
    "response_format": "responseFormat",
    "time_zone": "timeZone",
    "callback_url": "callbackUrl",
    "callback_secret": "callbackSecret",
    "callback_headers": "callbackHeaders",
}


class _Secret:
    """Holds the API key so that no repr, traceback-with-locals or `vars()` can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"


class DispatchClient:
    """An async client for the Remote Dispatch API. Use it as an async context manager.

    Args:
        api_key: The service key; defaults to ``$DISPATCH_API_KEY``. Required.
        base_url: Defaults to ``$DISPATCH_BASE_URL``, then the public service.
        http_client: Your own `httpx.AsyncClient` (custom transport, proxy, tests). It is
            used as is and never closed by this client.
        timeout: Seconds one HTTP request may take in total, from asking for a connection
            to the last byte of the body (each phase is bounded by it too). A request
            that runs out raises `RequestTimeoutError`. One call may make several
            requests: see `RetryPolicy.max_wait` for the bound on a whole call.
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
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        bucket: Limiter | None = None,
        allow_insecure: bool | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        hooks: Iterable[Hook] | None = None,
    ) -> None:
        if api_key is not None and not isinstance(api_key, str):
            raise UsageError(f"api_key must be a str, got {type(api_key).__name__}")
        key = configured_api_key(api_key)
        if key is None:
            raise UsageError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
        if any(ch in key for ch in "\r\n\0"):
            raise UsageError("the API key contains a line break or NUL character")
        timeout = check_seconds("timeout", timeout, maximum=MAX_TIMEOUT)
        max_body_size = check_int("max_body_size", max_body_size, minimum=1)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise UsageError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self._key = _Secret(key.strip())
        self.base_url = check_base_url(
            configured_base_url(base_url),
            allow_insecure=configured_allow_insecure(allow_insecure),
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
        self._timeout = httpx.Timeout(timeout)
        self._submit_url = f"{self.base_url}/remote-dispatch"
        self._status_url = f"{self.base_url}/remote-dispatch/responses/"
        self._http = http_client
        self._owns_http = http_client is None
        #: The transport under our own client, when requests may go straight to it.
        self._direct: httpx.AsyncBaseTransport | None = None
        #: Whether `_direct` bounds a whole exchange itself (see `_transport.DEADLINE`).
        self._direct_bounded = False
        #: `_direct` when it does a status read whole itself (`DirectExchange`), and the
        #: headers of every status read, built once.
        self._direct_reads: DirectExchange | None = None
        self._read_headers = PreparedHeaders(())
        self._timeout_extension = self._timeout.as_dict()
        self._entered = False
        self._bucket_entered = False
        self._rng = random.Random()
        #: 429s in a row met by this client's calls; any other answer resets it.
        self._consecutive_429 = 0
        #: When the latest pause this client announced ends (`anyio.current_time()`).
        self._paused_until = -math.inf

    def __repr__(self) -> str:
        return f"DispatchClient(base_url={self.base_url!r})"

    @property
    def is_open(self) -> bool:
        """True when requests can be made: inside ``async with``, or with your own
        `http_client` (which this client never closes)."""
        return self._http is not None

    async def __aenter__(self) -> DispatchClient:
        if self._entered:
            raise RuntimeError("DispatchClient is already open; enter it only once")
        if self._owns_http:
            # `_direct`: see `own_client` for why requests may skip the client.
            self._http, self._direct = own_client(
                max_connections=DEFAULT_MAX_CONNECTIONS, timeout=self._timeout
            )
            self._direct_bounded = getattr(self._direct, "honours_deadline", False) is True
            self._direct_reads = direct_exchange(self._direct)
            if self._direct_reads is not None:
                # The headers `_request` gives a GET; not in a local (the key is in them).
                self._read_headers = PreparedHeaders(
                    self._request("GET", self._status_url, None, None).headers.multi_items()
                )
        if self.bucket is not None:
            await self.bucket.__aenter__()
            self._bucket_entered = True
        self._entered = True
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
        if self._bucket_entered and self.bucket is not None:
            # Not in a shielded scope of its own: a limiter that owns a task group must
            # be left from the scope that entered it.
            self._bucket_entered = False
            await self.bucket.__aexit__(None, None, None)
        if self._owns_http and self._http is not None:
            http, self._http, self._direct = self._http, None, None
            self._direct_bounded = False
            self._direct_reads, self._read_headers = None, PreparedHeaders(())
            with anyio.CancelScope(shield=True):
                await http.aclose()

    # -- submit -------------------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        *,
        browser_window_id: str | None = None,
        execution_mode: str | None = None,
        clear_chat: bool | None = None,
        previous_request_id: str | None = None,
        save_screenshots: bool | None = None,
        response_format: Mapping[str, Any] | None = None,
        time_zone: str | None = None,
        callback_url: str | None = None,
        callback_secret: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Submit a task and return its request id.

        Options left as None are not sent, so the service's defaults apply. `extra` is
        merged into the JSON body untouched (for fields this client does not know yet);
        it may not override the named options.

        Raises:
            SubmitUncertainError: the request may have reached the service (a 5xx, or a
                connection lost after sending). Do not resubmit blindly.
            BadRequestError, AuthenticationError, PermissionDeniedError: fix and retry.
            RateLimitedError, TransportError: still failing after the allowed retries
                (or the next wait would pass `RetryPolicy.max_wait`), and the service
                never accepted the task. `RateLimitedError.retry_after` says how long the
                key is paused.
        """
        return await self._submit_with(
            self.bucket,
            prompt,
            {
                "browser_window_id": browser_window_id,
                "execution_mode": execution_mode,
                "clear_chat": clear_chat,
                "previous_request_id": previous_request_id,
                "save_screenshots": save_screenshots,
                "response_format": response_format,
                "time_zone": time_zone,
                "callback_url": callback_url,
                "callback_secret": callback_secret,
                "callback_headers": callback_headers,
                "extra": extra,
            },
        )

    async def _submit_with(
        self, bucket: Limiter | None, prompt: str, options: Mapping[str, Any]
    ) -> str:
        """`submit()` taking tokens from `bucket`, for pollers that bring their own.

        The one place a submit is reported (`SPAN_SUBMIT`, `SubmitDone`), whoever calls.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise UsageError("prompt must be a non-empty string")
        body = _submit_body(prompt, options)
        try:
            content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise UsageError(f"submit body is not JSON-serialisable: {exc}") from exc
        instrumentation = self.instrumentation
        if not instrumentation.enabled:
            return await self._with_retries(
                lambda: self._submit_once(content),
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
                    lambda: self._submit_once(content),
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

    async def _submit_once(self, content: bytes) -> str:
        try:
            status_code, headers, body = await self._send("POST", self._submit_url, content=content)
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
                f"submit failed after the request was sent ({type(exc.__cause__).__name__}); "
                "the task may have been created. Check before resubmitting: a resubmit can "
                "run the task twice"
            ) from exc
        if status_code >= 500:
            raise SubmitUncertainError(
                f"submit answered HTTP {status_code}; the task may have been created. Check "
                f"before resubmitting: a resubmit can run the task twice. Service said: "
                f"{self._excerpt(body)!r}"
            )
        self._raise_for_status(status_code, headers, body, request_id=None)
        # No log line here: `SubmitDone` is the submit's (`LoggingHook` logs it at debug).
        return self._request_id_from(status_code, body)

    def _request_id_from(self, status_code: int, body: bytes) -> str:
        """The id in a submit's answer, checked *after* redaction: an id the service
        built from our key is refused, and no error (nor its context) shows any of it."""
        try:
            data = json.loads(self._redacted(body))
        except (ValueError, RecursionError):
            data = None
        request_id = data.get("requestId") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise SubmitUncertainError(
                f"submit answered HTTP {status_code} without a requestId; the task was "
                f"probably created but cannot be tracked. Body: {self._excerpt(body)!r}"
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
                lambda: self.fetch_status(request_id),
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
                    lambda: self.fetch_status(request_id),
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
        `request_id` must already be valid (see `get_status()`).
        """
        request_id = check_request_id(request_id)
        # One path segment whatever the id holds: `AbC/def+gh==` must not climb the path.
        url = self._status_url + quote(request_id, safe="")
        status_code, headers, body = await self._send("GET", url)
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
    ) -> None:
        """One `RateLimitPaused` per pause that extends the one in force, not one per 429
        (`LoggingHook` turns it into the ``rate_limited`` warning)."""
        now = anyio.current_time()
        current = self._paused_until
        if bucket is not None:
            current = max(current, now + bucket.paused_for())
        until = now + pause
        self._paused_until = max(self._paused_until, until)
        if (until > current + _SAME_PAUSE or current <= now) and self.instrumentation.enabled:
            self.instrumentation.emit(RateLimitPaused(seconds=pause, source=source))

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
        self, method: str, url: str, *, content: bytes | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange, bounded in total by `timeout`; the body is read up to
        `max_body_size` (decoded) and no further.

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
        failure: DispatchError | None = None
        answer: tuple[int, Mapping[str, str], bytes] | None = None
        try:
            if self._direct_bounded:  # the transport's own timer bounds the whole exchange
                answer = await self._exchange(http, method, url, content)
            else:
                with anyio.move_on_after(self.timeout):
                    answer = await self._exchange(http, method, url, content)
        except httpx.TransportError as exc:
            failure = self._transport_error(method, url, exc)
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
            if answer[0] not in _SLOW_DOWN:
                self._consecutive_429 = 0
            return answer
        if failure is None:  # the time ran out
            failure = RequestTimeoutError(
                f"{method} {_path_of(url)}: no complete answer within timeout="
                f"{self.timeout:g}s (the bound on one whole request, body included)"
            )
        raise failure

    async def _exchange(
        self, http: httpx.AsyncClient, method: str, url: str, content: bytes | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        if self._direct_reads is not None and method == "GET" and content is None:
            # A status read, most of all requests: no httpx objects at all (see `_transport`).
            return await self._direct_reads.exchange(
                method,
                url,
                self._read_headers,
                deadline=anyio.current_time() + self.timeout,
                limit=self.max_body_size,
            )
        if self._direct is not None:
            request = self._request(method, url, content, None)
            if self._direct_bounded:
                request.extensions[DEADLINE] = anyio.current_time() + self.timeout
            response = await self._direct.handle_async_request(request)
        else:
            response = await http.send(self._request(method, url, content, http), stream=True)
        try:
            body = await read_body(response, self.max_body_size)
        finally:
            await response.aclose()
        return response.status_code, response.headers, body

    def _request(
        self, method: str, url: str, content: bytes | None, http: httpx.AsyncClient | None
    ) -> httpx.Request:
        """The request, with the key revealed at the last moment.

        The key is a plain `str` only in this frame, which returns before any I/O and so
        never appears in a traceback; an `httpx.Request`'s repr does not show headers.
        """
        headers = {
            "x-api-key": self._key.reveal(),
            "accept": "application/json",
            "accept-encoding": ACCEPT_ENCODING,
            "user-agent": _USER_AGENT,
        }
        if content is not None:
            headers["content-type"] = "application/json"
        if http is None:
            return httpx.Request(
                method,
                url,
                headers=headers,
                content=content,
                extensions={"timeout": self._timeout_extension},
            )
        return http.build_request(
            method, url, headers=headers, content=content, timeout=self._timeout
        )

    def _transport_error(self, method: str, url: str, exc: httpx.TransportError) -> DispatchError:
        """Our error for an httpx failure, its cause kept without the cause's frames."""
        error: DispatchError
        detail = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
        if isinstance(exc, httpx.TimeoutException):
            error = RequestTimeoutError(
                f"{method} {_path_of(url)} timed out ({detail}; timeout={self.timeout:g}s)"
            )
        else:
            error = TransportError(f"{method} {_path_of(url)} failed: {detail}")
        error.__cause__ = drop_tracebacks(exc)
        return error

    def _raise_for_status(
        self, status_code: int, headers: Mapping[str, str], body: bytes, *, request_id: str | None
    ) -> None:
        if 200 <= status_code < 300:
            return
        said = self._excerpt(body)
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
            raise AuthenticationError(
                f"HTTP 401{where}: the API key is missing or wrong; check DISPATCH_API_KEY "
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

    def _excerpt(self, body: bytes) -> str:
        """A safe excerpt of a body: the key is removed *before* cutting, so no fragment
        of it can survive at the cut."""
        return excerpt(self._redacted(body))

    def _redacted(self, body: bytes) -> bytes:
        """`body` with every literal occurrence of the key replaced by ``***``."""
        return body.replace(self._key.reveal().encode(), b"***")

    def _redact(self, text: str) -> str:
        """Remove the key from text the service echoed back, before it reaches a message."""
        return text.replace(self._key.reveal(), "***")


def _submit_body(prompt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: named options in their wire spelling, then `extra` untouched."""
    body: dict[str, Any] = {"prompt": prompt}
    extra: Mapping[str, Any] = {}
    for name, value in options.items():
        if name == "extra":
            extra = value or {}
        elif name not in _SUBMIT_FIELDS:
            raise UsageError(f"submit() got an unexpected option {name!r}")
        elif value is not None:
            body[_SUBMIT_FIELDS[name]] = dict(value) if isinstance(value, Mapping) else value
    for key, value in extra.items():
        if key in body:
            raise UsageError(
                f"extra field {key!r} collides with a named submit() option; use the option"
            )
        body[key] = value
    return body


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
