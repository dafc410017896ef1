"""The Remote Dispatch API as a hand-written ASGI 3 application.

No framework: the simulator shares the CPU with the client it is measuring, so a request
costs a path check, a header scan, a dict lookup and one ``json.dumps``. The API lives under
one base path (``SimulatorConfig.base_path``, the public service's ``/fast/v2`` by default)
and anything else is a 404, so a client with a wrong base URL fails here as it would in
production. The simulated storage bucket for uploads answers on ``/_uploads``.

Order of checks for each request: route, auth (401/403), rate limit (429), then the handler,
then the injected fault (if any) decides how the handler's answer goes out (submits and
status reads only).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import anyio

from ._clock import Clock
from ._config import SimulatorConfig
from ._faults import DELIBERATE_DROP, HTML_OK_PAGE, REASONS, Fault, FaultPicker, html_page
from ._ratelimit import KeyedTokenBuckets
from ._stats import AcceptedLog, SimulatorStats
from ._submit import ValidationIssue, issue, parse_submission
from ._tasks import Task, create_task
from ._uploads import UPLOAD_PATH, UploadBucket, UploadRefused

__all__ = ["ASGIApp", "Receive", "Scope", "Send", "SimulatorApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Lifespan = Callable[[], contextlib.AbstractAsyncContextManager[object]]

_SUBMIT_PATH = "/remote-dispatch"
_STATUS_PREFIX = "/remote-dispatch/responses/"
_PRESIGN_PATH = "/remote-dispatch/generate-file-upload-presigned-post"
_SDK_CONFIG_PATH = "/sdk/config"
_ROUTES: dict[str, tuple[str, str]] = {  # path under the base -> (method, endpoint)
    _SUBMIT_PATH: ("POST", "submit"),
    _PRESIGN_PATH: ("POST", "upload_url"),
    _SDK_CONFIG_PATH: ("GET", "sdk_config"),
}
_JSON = b"application/json"
_XML = b"application/xml"
_HTML = b"text/html; charset=utf-8"
_API_KEY = b"x-api-key"


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_UNAUTHORIZED = _dumps({"detail": "Invalid or missing API key"})
_FORBIDDEN = _dumps({"detail": "This API key has no access to the Remote Dispatch API"})
_NOT_FOUND = _dumps({"detail": "Not Found"})
_TASK_NOT_FOUND = _dumps({"detail": "Request not found"})
_METHOD_NOT_ALLOWED = _dumps({"detail": "Method Not Allowed"})
_RATE_LIMITED = _dumps({"detail": "Rate limit exceeded"})
# What the official SDK checks at start: any version of it is good enough for us.
_SDK_CONFIG = _dumps(
    {
        "packages": {
            "narada": {"min_required_version": "0.0.1"},
            "narada-pyodide": {"min_required_version": "0.0.1"},
        }
    }
)
_UPLOAD_SLACK = 64 * 1024
"""Bytes of multipart framing and fields allowed beyond ``max_upload_size``."""


class SimulatorApp:
    """The ASGI callable. It owns the run's tasks; the ``Simulator`` owns everything else."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        seed: int,
        clock: Clock,
        stats: SimulatorStats,
        accepted: AcceptedLog,
        on_task: Callable[[Task], None],
        lifespan: Lifespan,
    ) -> None:
        self.config = config
        self.tasks: dict[str, Task] = {}
        self._clock = clock
        self._stats = stats
        self._accepted = accepted
        self._on_task = on_task
        self._lifespan_context = lifespan
        # Separate streams so that, say, webhook timing never shifts which request fails.
        self._task_rng = random.Random(f"{seed}/tasks")
        self._faults = FaultPicker(config.faults, random.Random(f"{seed}/faults"))
        self._limiter = KeyedTokenBuckets(config.rate_limit) if config.rate_limit else None
        self._keys = config.api_keys
        self._forbidden = config.forbidden_keys
        self._base = config.base_path
        self.bucket = UploadBucket(
            random.Random(f"{seed}/uploads"), max_size=config.max_upload_size
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: not part of the API
            await send({"type": "websocket.close", "code": 1000})

    # -- lifespan ---------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Run the simulator's background work for as long as the server lives."""
        await receive()  # lifespan.startup
        started = False
        try:
            async with self._lifespan_context():
                started = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except Exception as exc:
            kind = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": kind, "message": repr(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    # -- HTTP -------------------------------------------------------------------------------

    def _route(self, method: str, scope: Scope) -> tuple[str, str, bytes | None]:
        """``(endpoint, request_id, allow)``: what the request asks for, and for a known
        path asked with the wrong method, the method it allows (405)."""
        path: str = scope["path"]
        if path == UPLOAD_PATH:
            return ("upload", "", None) if method == "POST" else ("other", "", b"POST")
        base = self._base
        if not path.startswith(base):
            return "other", "", None
        rest = path[len(base) :]
        if rest.startswith(_STATUS_PREFIX) and len(rest) > len(_STATUS_PREFIX):
            # From the raw path, so an id holding an encoded "/" arrives whole.
            raw = scope.get("raw_path") or path.encode()
            encoded = raw.decode("latin-1").rpartition(_STATUS_PREFIX)[2]
            request_id = unquote(encoded)
            return ("status", request_id, None) if method == "GET" else ("other", "", b"GET")
        route = _ROUTES.get(rest)
        if route is None:
            return "other", "", None
        allowed, endpoint = route
        if method != allowed:
            return "other", "", allowed.encode()
        return endpoint, "", None

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        endpoint, request_id, allow = self._route(method, scope)
        stats = self._stats
        stats.requests[endpoint] += 1
        if endpoint == "other":
            if allow is not None:
                await self._send(send, 405, _METHOD_NOT_ALLOWED, extra=((b"allow", allow),))
            else:
                await self._send(send, 404, _NOT_FOUND)
            return

        key = ""
        content_type = ""
        for name, value in scope["headers"]:
            if name == _API_KEY:
                key = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        if endpoint == "upload":  # the bucket: no API key, no rate limit of the service
            await self._upload(content_type, bool(key), receive, send)
            return
        if key not in self._keys:
            if key in self._forbidden:
                await self._send(send, 403, _FORBIDDEN)
            else:
                await self._send(send, 401, _UNAUTHORIZED)
            return

        now = self._clock.now()
        if self._limiter is not None:
            wait = self._limiter.try_acquire(key, now)
            if wait > 0:
                stats.rate_limited += 1
                await self._send(send, 429, _RATE_LIMITED, extra=self._retry_after(now, wait))
                return
        self._accepted.record(key, now)

        if endpoint == "submit":
            await self._submit(key, receive, send)
        elif endpoint == "status":
            await self._status(key, request_id, send)
        elif endpoint == "upload_url":
            await self._presign(key, scope, receive, send)
        else:
            await self._send(send, 200, _SDK_CONFIG)

    async def _presign(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive, limit=64 * 1024)
        if raw is None:
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        filename = body.get("filename") if isinstance(body, dict) else None
        if not isinstance(filename, str) or not filename.strip():
            detail = [issue(("filename",), "Field required: a non-empty string", "missing")]
            await self._send(send, 422, _dumps({"detail": detail}))
            return
        answer = self.bucket.presign(key, filename, self._bucket_url(scope))
        await self._send(send, 200, _dumps(answer))

    def _bucket_url(self, scope: Scope) -> str:
        """The absolute URL of the bucket, on the host and port this request came to."""
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                break
        if not host:
            server_host, server_port = scope.get("server") or ("127.0.0.1", 80)
            host = f"{server_host}:{server_port}"
        return f"{scope.get('scheme', 'http')}://{host}{UPLOAD_PATH}"

    async def _upload(
        self, content_type: str, api_key_sent: bool, receive: Receive, send: Send
    ) -> None:
        limit = self.bucket.max_size + _UPLOAD_SLACK
        raw = await _read_body(receive, limit=limit)
        try:
            self.bucket.store(content_type, raw, api_key_sent=api_key_sent)
        except UploadRefused as refused:
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{refused.code}</Code>'
                f"<Message>{refused.message}</Message></Error>"
            ).encode()
            await self._send(send, refused.status, body, content_type=_XML)
            return
        self._stats.uploads += 1
        await self._send(send, 204, b"")

    async def _submit(self, key: str, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        if raw is None:
            return  # the client went away before sending its body
        parsed = parse_submission(raw, require_browser_window=self.config.require_browser_window)
        if not isinstance(parsed, list):
            unknown: list[ValidationIssue] = [
                issue(loc, f"unknown upload key {upload!r}: upload the file first", "value_error")
                for loc, upload in parsed.uploads
                if not self.bucket.owns(key, upload)
            ]
            parsed = unknown or parsed
        if isinstance(parsed, list):
            await self._send(send, 422, _dumps({"detail": parsed}))
            return
        # The task exists from here on, whatever happens to the answer: a fault below is the
        # "uncertain submit" a client must not blindly repeat.
        request_id = self._new_request_id()
        task = create_task(
            parsed,
            request_id=request_id,
            api_key=key,
            now=self._clock.now(),
            config=self.config,
            clock=self._clock,
            rng=self._task_rng,
        )
        self.tasks[request_id] = task
        self._stats.tasks_created += 1
        self._on_task(task)
        injection = self._faults.pick(submit=True)
        if injection is None:
            await self._send(send, 202, _dumps({"requestId": request_id}))
            return
        if injection.fault is Fault.SLOW:
            await anyio.sleep(self.config.faults.slow_delay)
            self._stats.faults[Fault.SLOW.value] += 1
            await self._send(send, 202, _dumps({"requestId": request_id}))
            return
        await self._inject(send, injection.fault, injection.status, 202, {"requestId": request_id})

    async def _status(self, key: str, request_id: str, send: Send) -> None:
        injection = self._faults.pick(submit=False)
        if injection is not None and injection.fault is Fault.SLOW:
            await anyio.sleep(self.config.faults.slow_delay)
            self._stats.faults[Fault.SLOW.value] += 1
            injection = None
        task = self.tasks.get(request_id)
        if task is None or task.api_key != key:
            # Another key's task is as unknown as a made-up id: no existence oracle.
            status, body = 404, {"detail": "Request not found"}
        else:
            status, body = 200, task.body_at(self._clock.now())
        if injection is None or (injection.fault is Fault.UNKNOWN_STATUS and status != 200):
            await self._send(send, status, _TASK_NOT_FOUND if status == 404 else _dumps(body))
            return
        await self._inject(send, injection.fault, injection.status, status, body)

    async def _inject(
        self, send: Send, fault: Fault, error_status: int, status: int, body: dict[str, Any]
    ) -> None:
        """Send the faulty version of the answer ``status``/``body``."""
        self._stats.faults[fault.value] += 1
        if fault is Fault.SERVER_ERROR:
            reason = REASONS.get(error_status, "Server Error")
            await self._send(send, error_status, _dumps({"error": reason}))
        elif fault is Fault.HTML_ERROR:
            await self._send(send, 502, html_page(502, "Bad Gateway"), content_type=_HTML)
        elif fault is Fault.HTML_OK:
            await self._send(send, 200, HTML_OK_PAGE, content_type=_HTML)
        elif fault is Fault.TRUNCATED_JSON:
            data = _dumps(body)
            await self._send(send, status, data[: max(1, len(data) // 2)])
        elif fault is Fault.UNKNOWN_STATUS:
            # A status this version does not know, on a task still running: a finished
            # task in an unknown status is final (FAILED), not a transient fault.
            paused = {**body, "status": "paused", "completedAt": None}
            await self._send(send, status, _dumps(paused))
        else:  # Fault.DROP
            await self._drop(send, _dumps(body), status)

    async def _drop(self, send: Send, data: bytes, status: int) -> None:
        """Promise the whole body, send half, and stop: the server closes the connection.

        Over TCP the ASGI server closes the socket because the response is incomplete; in
        process, ``SimulatorTransport`` turns the same incomplete response into the
        ``httpx.RemoteProtocolError`` a real connection would raise.
        """
        DELIBERATE_DROP.set(True)
        headers = [(b"content-type", _JSON), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True}
        )

    # -- helpers ----------------------------------------------------------------------------

    def _new_request_id(self) -> str:
        while True:
            request_id = f"req_{self._task_rng.getrandbits(48):012x}"
            if request_id not in self.tasks:
                return request_id

    def _retry_after(self, now: float, wait: float) -> tuple[tuple[bytes, bytes], ...]:
        limit = self.config.rate_limit
        assert limit is not None
        if limit.retry_after == "http-date":
            # Whole seconds only: round the deadline up, and send our Date so a client can
            # measure the wait against the server's clock rather than its own.
            return (
                (b"retry-after", self._clock.http_date(now + wait, round_up=True).encode()),
                (b"date", self._clock.http_date(now).encode()),
            )
        seconds = max(1, int(-(-wait // 1)))
        return ((b"retry-after", str(seconds).encode()),)

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        *,
        content_type: bytes = _JSON,
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self._stats.responses[status] += 1
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, *, limit: int | None = None) -> bytes | None:
    """The request body; None if the client left first or it grew past ``limit`` bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
