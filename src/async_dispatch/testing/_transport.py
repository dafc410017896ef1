"""An httpx transport that calls the simulator's ASGI app in process, as a socket would.

``httpx.ASGITransport`` would do, but it cannot tell a dropped connection from a short
body, and it ignores timeouts. This one is small and answers like a real connection: an
app that promises a body and stops early raises ``httpx.RemoteProtocolError``, one that
says nothing raises it too, and an answer slower than the request's read timeout raises
``httpx.ReadTimeout``.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx

from ._app import ASGIApp, Message
from ._faults import DELIBERATE_DROP

__all__ = ["SimulatorTransport"]


class SimulatorTransport(httpx.AsyncBaseTransport):
    """Send httpx requests straight into an ASGI app, with socket-like failures."""

    def __init__(self, app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.app = app
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = b"".join([chunk async for chunk in request.stream])
        url = request.url
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "server": (url.host, url.port or (443 if url.scheme == "https" else 80)),
            "client": self.client,
        }
        received = False
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []
        complete = False

        async def receive() -> Message:
            nonlocal received
            if received:
                return {"type": "http.disconnect"}
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, headers, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                complete = not message.get("more_body", False)

        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        token = DELIBERATE_DROP.set(False)  # keep the app's marker out of the caller's context
        try:
            with anyio.move_on_after(read_timeout if read_timeout is not None else float("inf")):
                await self.app(scope, receive, send)
                return self._response(request, status, headers, parts, complete)
        finally:
            DELIBERATE_DROP.reset(token)
        raise httpx.ReadTimeout("timed out waiting for the simulator's answer", request=request)

    @staticmethod
    def _response(
        request: httpx.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
        parts: list[bytes],
        complete: bool,
    ) -> httpx.Response:
        if not status:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if not complete:
            received = sum(len(part) for part in parts)
            expected = dict(headers).get(b"content-length", b"?").decode("latin-1")
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {received} bytes, expected {expected})",
                request=request,
            )
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(b"".join(parts)),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )
