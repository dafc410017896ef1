"""The HTTP transport an owned `httpx.AsyncClient` is built on."""

from __future__ import annotations

import httpx

__all__ = ["default_transport"]


def default_transport(*, max_connections: int) -> httpx.AsyncBaseTransport:
    """httpx's own transport with deliberate pool limits.

    Keep-alive connections match the pool size: httpx's default of 20 keep-alive slots
    under heavier concurrency closes and reopens connections until requests time out.
    """
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
    )
