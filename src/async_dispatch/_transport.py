"""The HTTP transport an owned `httpx.AsyncClient` is built on.

Under asyncio, with aiohttp installed (the ``speedups`` extra), requests go through our
`AiohttpTransport`: measured on loopback it spends a fraction of httpcore's CPU per
request, and CPU is what limits a poller tracking thousands of tasks. Under trio, or
without aiohttp, httpx's own transport is used. Callers who want a specific transport pass
their own `httpx.AsyncClient` to `DispatchClient`.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Final

import httpx

__all__ = ["KEEPALIVE_EXPIRY", "aiohttp_available", "default_transport", "running_asyncio"]

#: Seconds an idle connection is kept for reuse.
KEEPALIVE_EXPIRY: Final = 30.0


def default_transport(*, max_connections: int) -> httpx.AsyncBaseTransport:
    """The fastest transport that works on the running event loop.

    Call it inside the event loop that will use it: the choice depends on which one runs.
    """
    if running_asyncio() and aiohttp_available():
        from ._aiohttp_transport import AiohttpTransport

        return AiohttpTransport(max_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY)
    return httpx_transport(max_connections=max_connections)


def httpx_transport(*, max_connections: int) -> httpx.AsyncHTTPTransport:
    """httpx's own transport with deliberate pool limits.

    Keep-alive connections match the pool size: httpx's default of 20 keep-alive slots
    under heavier concurrency closes and reopens connections until requests time out.
    """
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
    )


def aiohttp_available() -> bool:
    """Whether aiohttp can be imported (without importing it: that costs ~100 ms)."""
    return importlib.util.find_spec("aiohttp") is not None


def running_asyncio() -> bool:
    """Whether the calling code runs in an asyncio event loop (and not trio's).

    anyio 4 has no public "which backend" call and no longer depends on sniffio, so sniffio
    is asked when it is installed (it knows about trio running as an asyncio guest), else
    the presence of a running asyncio loop decides.
    """
    try:
        import sniffio
    except ImportError:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False
