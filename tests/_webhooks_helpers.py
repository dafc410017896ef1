"""Shared by the webhook, FastAPI, aiohttp and example tests: serve apps on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import uvicorn

from async_dispatch import DeliveryResult

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the examples are scripts, not a package)."""
    module_name = f"_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def bound_socket() -> Iterator[tuple[socket.socket, int]]:
    """A listening-ready TCP socket on 127.0.0.1 and its port, closed afterwards.

    Bound before the app is built, so the app's own callback URL can name the port.
    """
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and accepted connections inherit the listener's. Without it every keep-alive
    # request waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves the test process's signal handlers alone and says when ready."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, sock: socket.socket) -> AsyncIterator[uvicorn.Server]:
    """Serve an ASGI app with uvicorn on this (asyncio) loop, lifespan included."""
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        log_config=None,
        access_log=False,
        loop="asyncio",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = _QuietServer(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            await server.ready.wait()
        assert server.started, "the app failed to start"
        try:
            yield server
        finally:
            server.should_exit = True


async def wait_until(
    predicate: Callable[[], object], *, timeout: float = 5.0, step: float = 0.01
) -> None:
    """Sleep in small steps until `predicate()` is true; fail the test after `timeout`."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state that has no event
            await anyio.sleep(step)


def other_tasks() -> set[asyncio.Task[Any]]:
    """Every asyncio task except the caller's: what must be gone after a shutdown."""
    return asyncio.all_tasks() - {asyncio.current_task()}


class RecordingDeliverer:
    """Stands in for a `Poller`: records payloads and answers what it is told to."""

    def __init__(self, answer: DeliveryResult = DeliveryResult.ACCEPTED) -> None:
        self.answer = answer
        self.payloads: list[Mapping[str, Any]] = []

    def deliver(self, payload: Mapping[str, Any]) -> DeliveryResult:
        self.payloads.append(payload)
        return self.answer
