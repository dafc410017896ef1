"""`WebhookReceiver`: turn one incoming webhook into an HTTP answer, with no framework.

Web frameworks differ in how they read a body and write a response, but what a webhook
endpoint must *decide* is the same everywhere, and it is where the security lives. So the
decision is made here, on plain bytes and headers, and the framework adapters only copy
the answer out. That keeps every rule testable without a server:

1. size, before anything is parsed (413);
2. the optional header token sent through ``callbackHeaders`` (401);

   both are decided from the headers alone (`check_headers`), which the adapters call
   before they read a byte of the body, so a stranger cannot make a replica buffer one;
   the body must then arrive within `body_timeout` (408);
3. JSON object (400), nested at most `MAX_JSON_DEPTH` levels (422: it never will be);
4. ``callbackSecret`` (401), compared in constant time on bytes;
5. ``requestId`` and the status fields, via `Poller.deliver()` (400);
6. known id (404). A duplicate is a 200: the service delivers at least once, and a
   non-2xx would only make it send the same payload again.

Only a poller that is not open (`NotOpenError`) gets ``503``, the one answer that asks
the service to try again later. A payload we cannot process gets a 4xx: a 5xx would be
retried forever.

`WebhookReceiver.handle()` never raises: a framework that sees an exception answers 500
and the service retries a payload that will never be accepted.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
from collections.abc import Mapping
from typing import Any, Final, Protocol

import attrs

from ._errors import CoordinationError, InvalidResponseError, NotOpenError, UsageError
from ._log import logger
from ._poller import DeliveryResult
from ._validation import check_int
from ._wire import JSONTooDeepError, loads_bounded
from .instrumentation import Instrumentation, WebhookAnswered

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_WEBHOOK_BODY",
    "DEFAULT_WEBHOOK_PATH",
    "Deliverer",
    "WebhookReceiver",
    "WebhookResult",
    "generate_secret",
]

#: Where the web integrations (`async_dispatch.fastapi.webhook_router`,
#: `async_dispatch.aiohttp.setup_dispatch`) mount the webhook route unless told otherwise.
DEFAULT_WEBHOOK_PATH: Final = "/webhooks/dispatch"
#: Status payloads are a few kilobytes; 1 MiB leaves room for large structured outputs.
DEFAULT_MAX_WEBHOOK_BODY: Final = 1024 * 1024
#: Seconds a webhook's body may take to arrive: a few kilobytes take milliseconds, so a
#: body slower than this is a stalled or hostile client holding a connection open.
DEFAULT_BODY_TIMEOUT: Final = 10.0
_MAX_LOGGED_ID: Final = 64
#: An HTTP header name (RFC 9110 token).
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def generate_secret(nbytes: int = 32) -> str:
    """A fresh random secret for ``callbackSecret`` or a header token (URL-safe text).

    32 bytes (256 bits) by default: far beyond guessing, short enough for a header.
    """
    return secrets.token_urlsafe(check_int("nbytes (random bytes)", nbytes, minimum=16))


class Deliverer(Protocol):
    """What the receiver feeds payloads into: a `Poller`, or anything shaped like it."""

    async def deliver(self, payload: Mapping[str, Any]) -> DeliveryResult: ...


@attrs.frozen(kw_only=True)
class WebhookResult:
    """The answer to one webhook: what to send back, and why (for logs and tests)."""

    status_code: int
    #: A short machine-readable word: ``accepted``, ``duplicate``, ``too_large``,
    #: ``bad_json``, ``too_deep``, ``bad_payload``, ``bad_secret``, ``bad_token``,
    #: ``unknown_request``, ``unavailable``, ``internal_error``, ``too_slow`` (the body
    #: took longer than `body_timeout`), ``disconnected`` (the sender left mid-body: the
    #: answer reaches nobody, it is only reported).
    reason: str
    #: The id the payload named, once the payload was authenticated; else None.
    request_id: str | None = None
    #: What the poller did with the payload, when it got that far.
    delivery: DeliveryResult | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx: the sender should not retry."""
        return 200 <= self.status_code < 300

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body to send back. Says little on purpose: senders only need the code."""
        return {"ok": self.ok, "reason": self.reason}

    def body_bytes(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


_TOO_LARGE = WebhookResult(status_code=413, reason="too_large")
_BAD_TOKEN = WebhookResult(status_code=401, reason="bad_token")
_TOO_SLOW = WebhookResult(status_code=408, reason="too_slow")
_DISCONNECTED = WebhookResult(status_code=400, reason="disconnected")


class WebhookReceiver:
    """Checks and delivers webhooks from the Remote Dispatch service to a poller.

    Args:
        poller: Where accepted payloads go (`Poller.deliver`).
        secret: The ``callbackSecret`` given at submit time; payloads must echo it.
        header_name, header_value: A header the service must send (set it through
            ``callbackHeaders``), e.g. ``"authorization"`` and ``"Bearer <token>"``.
        max_body_size: Larger bodies get 413 without being parsed.
        body_timeout: Seconds the whole body may take to arrive once the headers passed
            `check_headers`; the adapters answer 408 after that.
        allow_unauthenticated: Accept payloads with neither a secret nor a header token
            configured. Off by default: anyone who can reach the URL could forge results.
        instrumentation: Told of every answer (`WebhookAnswered`); the runtime passes its
            client's. By default the logging hook, which logs each refusal at info level.
    """

    def __init__(
        self,
        poller: Deliverer,
        *,
        secret: str | None = None,
        header_name: str | None = None,
        header_value: str | None = None,
        max_body_size: int = DEFAULT_MAX_WEBHOOK_BODY,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        allow_unauthenticated: bool = False,
        instrumentation: Instrumentation | None = None,
    ) -> None:
        if (header_name is None) != (header_value is None):
            raise UsageError("give both header_name and header_value, or neither")
        for name, value in (
            ("secret", secret),
            ("header_name", header_name),
            ("header_value", header_value),
        ):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{name} must be a str or None, got {type(value).__name__}")
        if header_name is not None and not _TOKEN.fullmatch(header_name):
            raise UsageError(
                f"header_name must be an HTTP header name (letters, digits and "
                f"!#$%&'*+-.^_`|~), got {header_name!r}"
            )
        if secret is not None and not secret:
            raise UsageError("secret must be non-empty (or None for no secret check)")
        if header_value is not None and not header_value:
            raise UsageError("header_value must be non-empty")
        if secret is None and header_name is None and not allow_unauthenticated:
            raise UsageError(
                "a webhook receiver needs a secret or a header token; pass "
                "allow_unauthenticated=True only if the URL is unreachable to others"
            )
        max_body_size = check_int("max_body_size", max_body_size, minimum=1)
        if (
            isinstance(body_timeout, bool)
            or not isinstance(body_timeout, int | float)
            or not (body_timeout > 0 and math.isfinite(body_timeout))
        ):
            raise UsageError(
                f"body_timeout must be a finite number of seconds > 0, got {body_timeout!r}"
            )
        self.body_timeout = float(body_timeout)
        self.poller = poller
        self.instrumentation = (
            Instrumentation.default() if instrumentation is None else instrumentation
        )
        self.max_body_size = max_body_size
        self.header_name = header_name.lower() if header_name is not None else None
        self._secret = _bytes(secret) if secret is not None else None
        self._token = _bytes(header_value) if header_value is not None else None

    def __repr__(self) -> str:
        checks = [name for name, on in (("secret", self._secret), ("header", self._token)) if on]
        return f"<WebhookReceiver checks={checks} max_body_size={self.max_body_size}>"

    @property
    def callback_headers(self) -> dict[str, str] | None:
        """What to pass as ``callback_headers`` at submit time for the header check."""
        if self.header_name is None or self._token is None:
            return None
        return {self.header_name: self._token.decode()}

    def check_declared_size(self, content_length: str | None) -> WebhookResult | None:
        """A 413 if a ``Content-Length`` header already says the body is too large.

        Adapters call this before reading the body, so a huge upload is refused unread.
        """
        declared = (content_length or "").strip()
        if declared.isdigit() and int(declared) > self.max_body_size:
            return self._answered(_TOO_LARGE)
        return None

    def check_headers(self, headers: Mapping[str, str]) -> WebhookResult | None:
        """The refusal the headers alone decide, or None: read the body then.

        A declared ``Content-Length`` over `max_body_size` (413) and a missing or wrong
        header token (401). Adapters call this before reading the body, so a sender
        without the token cannot make a replica buffer anything.
        """
        refused = self.check_declared_size(_header(headers, "content-length"))
        if refused is not None:
            return refused
        if not self._token_ok(headers):
            return self._answered(_BAD_TOKEN)
        return None

    def too_large(self) -> WebhookResult:
        """The 413 answer, for adapters that stop reading a body past `max_body_size`."""
        return self._answered(_TOO_LARGE)

    def too_slow(self) -> WebhookResult:
        """The 408 answer, for adapters whose body took longer than `body_timeout`."""
        return self._answered(_TOO_SLOW)

    def disconnected(self) -> WebhookResult:
        """What to report when the sender left before its body was complete."""
        return self._answered(_DISCONNECTED)

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> WebhookResult:
        """Decide the answer to one webhook delivery. Never raises."""
        try:
            result = await self._handle(body, headers)
        except Exception as exc:  # the framework must get an answer, not a traceback
            # No exc_info: rendered tracebacks may show locals, and the payload's are secret.
            logger.error("webhook_error", error=type(exc).__name__)
            result = WebhookResult(status_code=500, reason="internal_error")
        return self._answered(result)

    def _answered(self, result: WebhookResult) -> WebhookResult:
        """Report one answer (`WebhookAnswered`: `LoggingHook` logs a refusal, with its
        reason and code, never the secret or the body)."""
        if self.instrumentation.enabled:
            self.instrumentation.emit(
                WebhookAnswered(reason=result.reason, status_code=result.status_code)
            )
        return result

    async def _handle(self, body: bytes, headers: Mapping[str, str]) -> WebhookResult:
        if len(body) > self.max_body_size:
            return self._reject(_TOO_LARGE)
        if not self._token_ok(headers):
            return self._reject(_BAD_TOKEN)
        try:
            payload = loads_bounded(body)
        except JSONTooDeepError:
            return self._reject(WebhookResult(status_code=422, reason="too_deep"))
        except ValueError:
            return self._reject(WebhookResult(status_code=400, reason="bad_json"))
        if not isinstance(payload, dict):
            return self._reject(WebhookResult(status_code=400, reason="bad_payload"))
        if self._secret is not None:
            given = payload.get("callbackSecret")
            if not isinstance(given, str) or not hmac.compare_digest(_bytes(given), self._secret):
                return self._reject(WebhookResult(status_code=401, reason="bad_secret"))
        raw_id = payload.get("requestId")
        request_id = raw_id[:_MAX_LOGGED_ID] if isinstance(raw_id, str) else None
        try:
            delivery = await self.poller.deliver(payload)
        except InvalidResponseError:
            return self._reject(
                WebhookResult(status_code=400, reason="bad_payload", request_id=request_id)
            )
        except RecursionError:  # a payload too deep for the poller: it never will fit
            return self._reject(
                WebhookResult(status_code=422, reason="too_deep", request_id=request_id)
            )
        except (NotOpenError, CoordinationError):  # closed, stopped, or its store is down
            return self._reject(
                WebhookResult(status_code=503, reason="unavailable", request_id=request_id)
            )
        if delivery is DeliveryResult.UNKNOWN:
            return self._reject(
                WebhookResult(
                    status_code=404,
                    reason="unknown_request",
                    request_id=request_id,
                    delivery=delivery,
                )
            )
        reason = "accepted" if delivery is DeliveryResult.ACCEPTED else "duplicate"
        return WebhookResult(
            status_code=200, reason=reason, request_id=request_id, delivery=delivery
        )

    def _token_ok(self, headers: Mapping[str, str]) -> bool:
        """Whether the header token, if one is configured, came (constant-time compare)."""
        if self._token is None:
            return True
        assert self.header_name is not None
        received = _header(headers, self.header_name)
        return received is not None and hmac.compare_digest(_bytes(received), self._token)

    @staticmethod
    def _reject(result: WebhookResult) -> WebhookResult:
        """A refusal; reported (and logged) by `handle()` with every other answer."""
        return result


def _bytes(text: str) -> bytes:
    """UTF-8 that cannot fail: JSON may carry lone surrogates (``"\\ud800"``)."""
    return text.encode("utf-8", "surrogatepass")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts and frameworks' header maps."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
