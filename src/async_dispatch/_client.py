"""`DispatchClient`: the two endpoints of the Remote Dispatch API, with retries done right.

The one asymmetry that shapes this module: reading a status is idempotent and may be
retried freely, but submitting a task is not. A submit is retried only when the service
provably did not accept it (a 429, or a connection that was never established); anything
that may have reached the service raises `SubmitUncertainError` instead of risking a
duplicate run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final

import anyio
import httpx

from ._config import API_KEY_ENV, DEFAULT_BASE_URL, configured_api_key, configured_base_url
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceeded,
    DispatchError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UsageError,
)
from ._limiter import Limiter
from ._log import logger
from ._models import Status, TaskStatus
from ._retry import RetryPolicy, parse_retry_after
from ._transport import own_client
from ._validation import check_base_url, check_request_id
from ._version import __version__ as _version
from ._wire import excerpt, parse_status_body
from .instrumentation import Hook, Instrumentation

__all__ = ["DEFAULT_BASE_URL", "DispatchClient"]

DEFAULT_MAX_BODY_SIZE: Final = 10 * 1024 * 1024
#: Connections per owned `AsyncClient`. httpx's pool bookkeeping grows with connections x
#: waiting requests, so a handful of busy connections beats a hundred idle ones.
DEFAULT_MAX_CONNECTIONS: Final = 16

_USER_AGENT: Final = f"async-remote-dispatch/{_version} httpx/{httpx.__version__}"

#: Failures where the request provably never left: safe to retry even a submit.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Failures that a status read may retry.
_TRANSIENT = (RateLimitedError, ServerError, TransportError, InvalidResponseError)

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
        timeout: Seconds for each HTTP request (connect, read, write and pool each).
        retry: How `get_status()` and `submit()` retry transient failures.
        bucket: A `Limiter` (e.g. `TokenBucket`) this client's own requests take tokens
            from, and pause on a 429. Share it with your pollers to keep the whole key
            within its limit. The client enters it while it is open.
        allow_insecure: Allow plain ``http://`` to non-loopback hosts.
        max_body_size: Larger status bodies are rejected without being read whole.
        trace: Emit a debug log event for every request and retry.
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
        allow_insecure: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        trace: bool = False,
        hooks: Iterable[Hook] | None = None,
    ) -> None:
        key = configured_api_key(api_key)
        if key is None:
            raise UsageError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
        if any(ch in key for ch in "\r\n\0"):
            raise UsageError("the API key contains a line break or NUL character")
        if not timeout > 0:
            raise UsageError(f"timeout must be > 0 seconds, got {timeout!r}")
        if max_body_size < 1:
            raise UsageError(f"max_body_size must be >= 1, got {max_body_size!r}")
        self._key = _Secret(key.strip())
        self.base_url = check_base_url(
            configured_base_url(base_url),
            allow_insecure=allow_insecure,
        )
        self.retry = retry or RetryPolicy()
        self.bucket = bucket
        #: Where this client and every poller built on it report what they do.
        self.instrumentation = (
            Instrumentation.default() if hooks is None else Instrumentation(hooks)
        )
        self.max_body_size = max_body_size
        self.trace = trace
        #: Seconds allowed for each phase of a request (connect, write, read, pool).
        self.timeout = float(timeout)
        self._timeout = httpx.Timeout(timeout)
        self._submit_url = f"{self.base_url}/remote-dispatch"
        self._status_url = f"{self.base_url}/remote-dispatch/responses/"
        self._http = http_client
        self._owns_http = http_client is None
        #: The transport under our own client, when requests may go straight to it.
        self._direct: httpx.AsyncBaseTransport | None = None
        self._timeout_extension = self._timeout.as_dict()
        self._entered = False
        self._bucket_entered = False
        self._rng = random.Random()

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
            RateLimitedError, TransportError: still failing after the allowed retries,
                and the service never accepted the task.
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
        """`submit()` taking tokens from `bucket`, for pollers that bring their own."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise UsageError("prompt must be a non-empty string")
        body = _submit_body(prompt, options)
        try:
            content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise UsageError(f"submit body is not JSON-serialisable: {exc}") from exc
        attempt = 0
        while True:
            attempt += 1
            try:
                if bucket is not None:
                    await bucket.acquire()
                return await self._submit_once(content)
            except (RateLimitedError, TransportError) as exc:
                if attempt >= self.retry.attempts:
                    raise
                await self._pause_before_retry(exc, attempt, request_id=None, bucket=bucket)

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
        return self._request_id_from(status_code, body)

    def _request_id_from(self, status_code: int, body: bytes) -> str:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        request_id = data.get("requestId") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise SubmitUncertainError(
                f"submit answered HTTP {status_code} without a requestId; the task was "
                f"probably created but cannot be tracked. Body: {self._excerpt(body)!r}"
            )
        try:
            return check_request_id(request_id)
        except DispatchError as exc:
            raise SubmitUncertainError(
                f"submit answered HTTP {status_code} with an unusable requestId: "
                f"{self._redact(str(exc))}"
            ) from None

    # -- status -------------------------------------------------------------------------

    async def get_status(self, request_id: str) -> TaskStatus:
        """Read a task's status once, retrying transient failures.

        429s, 5xx, transport errors and bodies that are not the documented JSON are retried
        under `retry` with capped exponential backoff and full jitter, waiting at least
        any `Retry-After` the service sent. When attempts run out, the last error is raised.
        """
        request_id = check_request_id(request_id)
        attempt = 0
        while True:
            attempt += 1
            if self.bucket is not None:
                await self.bucket.acquire()
            try:
                return await self.fetch_status(request_id)
            except _TRANSIENT as exc:
                if attempt >= self.retry.attempts:
                    raise
                await self._pause_before_retry(
                    exc, attempt, request_id=request_id, bucket=self.bucket
                )

    async def fetch_status(self, request_id: str) -> TaskStatus:
        """Read a task's status with exactly one HTTP request: no retry, no token taken.

        The building block for schedulers (the `Poller`) that decide themselves when to
        retry and spend rate-limit tokens centrally. Most callers want `get_status()`.
        `request_id` must already be valid (see `get_status()`).
        """
        request_id = check_request_id(request_id)
        status_code, headers, body = await self._send("GET", self._status_url + request_id)
        self._raise_for_status(status_code, headers, body, request_id=request_id)
        if self.trace:
            logger.debug("status_read", request_id=request_id, status_code=status_code)
        try:
            return parse_status_body(request_id, body, status_code=status_code)
        except InvalidResponseError as exc:
            exc.body_excerpt = self._excerpt(body)
            raise

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

        Raises:
            DeadlineExceeded: after `timeout` seconds.
            NotFoundError: the service does not know the id.
        """
        request_id = check_request_id(request_id)
        if not timeout > 0:
            raise UsageError(f"timeout must be > 0 seconds, got {timeout!r}")
        with anyio.move_on_after(timeout):
            delay = interval
            while True:
                status = await self.get_status(request_id)
                if status.is_terminal or status.status is Status.INPUT_REQUIRED:
                    return status
                await anyio.sleep(delay)
                delay = min(max_interval, delay * 1.5)
        raise DeadlineExceeded(request_id, timeout)

    # -- plumbing -----------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, *, content: bytes | None = None
    ) -> tuple[int, httpx.Headers, bytes]:
        """One HTTP exchange; the body is read up to `max_body_size` and no further."""
        http = self._http
        if http is None:
            raise RuntimeError(
                "DispatchClient is not open: use it as `async with DispatchClient(...) as c:`"
            )
        headers = self._request_headers(json_body=content is not None)
        try:
            if self._direct is not None:
                request = httpx.Request(
                    method,
                    url,
                    headers=headers,
                    content=content,
                    extensions={"timeout": self._timeout_extension},
                )
                response = await self._direct.handle_async_request(request)
            else:
                request = http.build_request(
                    method, url, headers=headers, content=content, timeout=self._timeout
                )
                response = await http.send(request, stream=True)
            try:
                body = await self._read_body(response)
            finally:
                await response.aclose()
        except httpx.DecodingError as exc:
            raise InvalidResponseError(
                f"{method} {_path_of(url)}: the body could not be decoded ({exc})",
                status_code=None,
            ) from exc
        except httpx.TransportError as exc:
            raise TransportError(
                f"{method} {_path_of(url)} failed: {type(exc).__name__}: "
                f"{self._redact(str(exc)) or 'no detail'}"
            ) from exc
        return response.status_code, response.headers, body

    async def _read_body(self, response: httpx.Response) -> bytes:
        limit = self.max_body_size
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(response.status_code)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise self._too_large(response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, status_code: int) -> InvalidResponseError:
        return InvalidResponseError(
            f"response body exceeds max_body_size={self.max_body_size} bytes; not read",
            status_code=status_code,
        )

    def _raise_for_status(
        self, status_code: int, headers: httpx.Headers, body: bytes, *, request_id: str | None
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

    async def _pause_before_retry(
        self,
        exc: Exception,
        attempt: int,
        *,
        request_id: str | None,
        bucket: Limiter | None,
    ) -> None:
        delay = self.retry.backoff(attempt, self._rng)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if isinstance(exc, RateLimitedError) and bucket is not None:
            await bucket.pause(delay)
        if self.trace:
            logger.debug(
                "retrying",
                request_id=request_id,
                attempt=attempt,
                delay=round(delay, 3),
                error=type(exc).__name__,
            )
        await anyio.sleep(delay)

    def _request_headers(self, *, json_body: bool) -> dict[str, str]:
        """Built per request so that the key never sits in an attribute or a local."""
        headers = {
            "x-api-key": self._key.reveal(),
            "accept": "application/json",
            "user-agent": _USER_AGENT,
        }
        if json_body:
            headers["content-type"] = "application/json"
        return headers

    def _excerpt(self, body: bytes) -> str:
        """A safe excerpt of a body: the key is removed *before* cutting, so no fragment
        of it can survive at the cut."""
        return excerpt(body.replace(self._key.reveal().encode(), b"***"))

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
