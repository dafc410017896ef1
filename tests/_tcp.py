"""A raw loopback TCP server for tests that need a misbehaving peer (a trickled body, a
hang-up mid-answer) that no HTTP framework would produce. Runs on asyncio and trio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.abc

__all__ = ["Handler", "tcp_server"]

#: Serves one connection.
Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[str]:
    """A loopback server running `handler` per connection; yields its base URL."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(conn: anyio.abc.SocketStream) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async with conn:
                await handler(conn)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()
