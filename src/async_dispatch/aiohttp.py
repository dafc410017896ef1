"""aiohttp integration: a cleanup context that owns the runtime, typed app keys, a handler.

Requires the ``aiohttp`` extra; aiohttp runs on asyncio only. ::

    from async_dispatch.aiohttp import RUNTIME_KEY, setup_dispatch
    from async_dispatch.webhooks import DispatchRuntime

    app = web.Application()
    setup_dispatch(app, DispatchRuntime(callback_url="https://my.app/webhooks/dispatch"))

    async def create_job(request: web.Request) -> web.Response:
        request_id = await request.app[RUNTIME_KEY].submit(await request.text())
        return web.json_response({"request_id": request_id})

`setup_dispatch` does three things you can also do by hand: store the (not yet opened)
runtime under `RUNTIME_KEY`, append `dispatch_context(runtime)` to ``app.cleanup_ctx`` so
it is open from startup to cleanup, and add the webhook route. The runtime is stored
before the app starts because aiohttp freezes app state at startup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Final

import anyio
from aiohttp import web

from ._poller import Poller
from ._runtime import DispatchRuntime
from ._webhooks import DEFAULT_WEBHOOK_PATH, WebhookResult

__all__ = [
    "DEFAULT_WEBHOOK_PATH",
    "RUNTIME_KEY",
    "dispatch_context",
    "get_poller",
    "get_runtime",
    "setup_dispatch",
    "webhook_handler",
]

#: The app key under which `setup_dispatch` keeps the `DispatchRuntime` (``app[RUNTIME_KEY]``).
RUNTIME_KEY: Final = web.AppKey("async_dispatch.runtime", DispatchRuntime)
_UNAVAILABLE: Final = WebhookResult(status_code=503, reason="unavailable")


def dispatch_context(
    runtime: DispatchRuntime,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry: the runtime is open from app startup to cleanup."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with runtime:
            yield

    return context


def setup_dispatch(
    app: web.Application,
    runtime: DispatchRuntime,
    *,
    path: str | None = DEFAULT_WEBHOOK_PATH,
) -> None:
    """Store `runtime` in `app`, run it with the app, and route webhooks at `path`.

    Pass ``path=None`` to add the route yourself (with `webhook_handler`).
    """
    app[RUNTIME_KEY] = runtime
    app.cleanup_ctx.append(dispatch_context(runtime))
    if path is not None:
        app.router.add_post(path, webhook_handler)


def get_runtime(request: web.Request) -> DispatchRuntime:
    """The app's `DispatchRuntime` (see `setup_dispatch`)."""
    return request.app[RUNTIME_KEY]


def get_poller(request: web.Request) -> Poller:
    """The app's runtime's `Poller`."""
    return request.app[RUNTIME_KEY].poller


async def webhook_handler(request: web.Request) -> web.Response:
    """The webhook ``POST`` handler. Checks size and header token before reading the
    body, then reads at most the receiver's ``max_body_size`` (else 413) within its
    ``body_timeout`` (else 408)."""
    result = await _handle(request)
    return web.Response(
        body=result.body_bytes(),
        status=result.status_code,
        content_type="application/json",
    )


async def _handle(request: web.Request) -> WebhookResult:
    runtime = request.app.get(RUNTIME_KEY)
    if runtime is None or not runtime.running:
        return _UNAVAILABLE
    receiver = runtime.receiver
    # Size and header token first: a sender without the token gets nothing buffered.
    refused = receiver.check_headers(request.headers)
    if refused is not None:
        return refused
    try:
        with anyio.fail_after(receiver.body_timeout):
            body = await _read_at_most(request, receiver.max_body_size + 1)
    except TimeoutError:
        return receiver.too_slow()
    if len(body) > receiver.max_body_size:
        return receiver.too_large()
    return await receiver.handle(body, request.headers)


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    """The body, or its first `limit` bytes (one byte over the maximum says enough)."""
    body = await request.content.read(limit)
    while len(body) < limit and not request.content.at_eof():
        more = await request.content.read(limit - len(body))
        if not more:
            break
        body += more
    return body
