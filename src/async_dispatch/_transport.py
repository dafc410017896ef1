"""The HTTP client a `DispatchClient` builds for itself, and the transport under it.

Under asyncio, with aiohttp installed (the ``speedups`` extra), requests go through our
`AiohttpTransport`: measured on loopback it spends a fraction of httpcore's CPU per
request, and CPU is what limits a poller tracking thousands of tasks. Under trio, or
without aiohttp, httpx's own transport is used. Callers who want a specific transport pass
their own `httpx.AsyncClient` to `DispatchClient`.

Between a `DispatchClient` and the transport of a client it built there is nothing to
honour (no auth, event hooks, cookies or redirects), so its requests go straight to the
transport, skipping about a third of the CPU of a request. The exception is a proxy set
in the environment: httpx applies those only to transports it builds itself, so then the
client is built the ordinary way and requests go through it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import urllib.request
from typing import Final

import httpx

__all__ = [
    "KEEPALIVE_EXPIRY",
    "aiohttp_available",
    "default_transport",
    "own_client",
    "running_asyncio",
]

#: Seconds an idle connection is kept for reuse.
KEEPALIVE_EXPIRY: Final = 30.0


def own_client(
    *, max_connections: int, timeout: httpx.Timeout
) -> tuple[httpx.AsyncClient, httpx.AsyncBaseTransport | None]:
    """A client for a `DispatchClient` to own, and the transport its requests may go
    straight to (None when they must go through the client: proxies from the environment).
    """
    if urllib.request.getproxies():
        limits = pool_limits(max_connections)
        return httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False), None
    transport = default_transport(max_connections=max_connections)
    client = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
    return client, transport


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
    return httpx.AsyncHTTPTransport(limits=pool_limits(max_connections))


def pool_limits(max_connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY,
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
