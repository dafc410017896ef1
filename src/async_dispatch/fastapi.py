"""FastAPI integration: a lifespan that owns the runtime, a dependency, a webhook router.

Requires the ``fastapi`` extra. ::

    from async_dispatch.fastapi import RuntimeDep, dispatch_lifespan, webhook_router
    from async_dispatch.webhooks import DispatchRuntime

    runtime = DispatchRuntime(callback_url="https://my.app/webhooks/dispatch")
    app = FastAPI(lifespan=dispatch_lifespan(runtime))
    app.include_router(webhook_router("/webhooks/dispatch"))

    @app.post("/jobs")
    async def create_job(prompt: str, dispatch: RuntimeDep) -> dict[str, str]:
        return {"request_id": await dispatch.submit(prompt)}

The runtime lives in ``app.state`` while the app runs (no module globals), so several
apps in one process each have their own. To combine with a lifespan of your own, open the
runtime inside it with `open_runtime(app, runtime)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.datastructures import State
from starlette.requests import ClientDisconnect

from ._errors import NotOpenError
from ._poller import Poller
from ._runtime import DispatchRuntime
from ._webhooks import DEFAULT_WEBHOOK_PATH, WebhookResult

__all__ = [
    "DEFAULT_WEBHOOK_PATH",
    "PollerDep",
    "RuntimeDep",
    "dispatch_lifespan",
    "get_poller",
    "get_runtime",
    "open_runtime",
    "webhook_router",
]

_STATE_NAME: Final = "async_dispatch"
_UNAVAILABLE: Final = WebhookResult(status_code=503, reason="unavailable")


@contextlib.asynccontextmanager
async def open_runtime(app: FastAPI, runtime: DispatchRuntime) -> AsyncIterator[DispatchRuntime]:
    """Open `runtime` and make it reachable from the app's routes until the block ends."""
    async with runtime:
        setattr(app.state, _STATE_NAME, runtime)
        try:
            yield runtime
        finally:
            delattr(app.state, _STATE_NAME)


def dispatch_lifespan(
    runtime: DispatchRuntime,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A ``lifespan=`` for `FastAPI`: the runtime runs from startup to shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(app, runtime):
            yield

    return lifespan


def _runtime_or_none(state: State) -> DispatchRuntime | None:
    runtime = getattr(state, _STATE_NAME, None)
    return runtime if isinstance(runtime, DispatchRuntime) else None


def get_runtime(request: Request) -> DispatchRuntime:
    """A dependency: the app's running `DispatchRuntime`."""
    runtime = _runtime_or_none(request.app.state)
    if runtime is None:
        raise NotOpenError(
            "no DispatchRuntime is running for this app: pass "
            "lifespan=dispatch_lifespan(runtime) to FastAPI (or use open_runtime)"
        )
    return runtime


def get_poller(request: Request) -> Poller:
    """A dependency: the running runtime's `Poller`."""
    return get_runtime(request).poller


#: A route parameter annotated so receives the running `DispatchRuntime`.
RuntimeDep = Annotated[DispatchRuntime, Depends(get_runtime)]
#: A route parameter annotated so receives the running runtime's `Poller`.
PollerDep = Annotated[Poller, Depends(get_poller)]


def webhook_router(path: str = DEFAULT_WEBHOOK_PATH, **router_options: Any) -> APIRouter:
    """An `APIRouter` with the webhook ``POST`` route at `path`.

    The size and the header token are checked from the headers, before the body is
    read; the body is read only up to the receiver's ``max_body_size`` (a larger one gets
    413 without being buffered) and for at most its ``body_timeout`` (then 408). A sender
    that disconnects mid-body is reported as ``disconnected``, not as an application
    error. The route is left out of the OpenAPI schema by default.
    """
    router = APIRouter(**router_options)

    @router.post(path, include_in_schema=False)
    async def receive_dispatch_webhook(request: Request) -> Response:
        result = await _handle(request)
        return Response(
            content=result.body_bytes(),
            status_code=result.status_code,
            media_type="application/json",
        )

    return router


async def _handle(request: Request) -> WebhookResult:
    runtime = _runtime_or_none(request.app.state)
    if runtime is None:
        return _UNAVAILABLE
    receiver = runtime.receiver
    # Size and header token first: a sender without the token gets nothing buffered.
    refused = receiver.check_headers(request.headers)
    if refused is not None:
        return refused
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(receiver.body_timeout):
            # aclosing: stopping early must finalise the stream now, not in the GC.
            async with contextlib.aclosing(request.stream()) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    if size > receiver.max_body_size:
                        return receiver.too_large()
                    chunks.append(chunk)
    except TimeoutError:
        return receiver.too_slow()
    except ClientDisconnect:  # the answer reaches nobody; no traceback for it either
        return receiver.disconnected()
    return await receiver.handle(b"".join(chunks), request.headers)
