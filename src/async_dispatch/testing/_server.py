"""The simulator over real TCP, served by uvicorn (the ``simulator`` extra).

``serve()`` runs uvicorn for an ``async with`` block and hands back the URL; under asyncio
it shares the caller's event loop, under trio (which uvicorn cannot run on) it runs in a
thread with its own asyncio loop. ``run_forever()`` is the blocking entry point for a CLI.
Either way the ASGI ``lifespan`` protocol starts and stops the simulator's background work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

from ._config import SimulatorConfig
from ._faults import DELIBERATE_DROP
from ._simulator import Simulator

if TYPE_CHECKING:
    import uvicorn

__all__ = ["RunningSimulator", "bind_socket", "run_forever", "serve", "serve_asgi"]

_INCOMPLETE = "ASGI callable returned without completing response."


@attrs.frozen
class RunningSimulator:
    """A simulator listening on ``base_url``."""

    simulator: Simulator
    host: str
    port: int

    @property
    def origin(self) -> str:
        """``http://host:port``, without the API's base path."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Where clients point: the origin plus the config's ``base_path`` (``/fast/v2``)."""
        return self.simulator.base_url_on(self.port, self.host)


class _DeliberateDropFilter(logging.Filter):
    """Hide uvicorn's error line for a connection the simulator dropped on purpose.

    The app sets a context variable just before it drops; uvicorn logs from the same task,
    so the filter sees it and real "incomplete response" bugs still get logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (DELIBERATE_DROP.get() and record.getMessage() == _INCOMPLETE)


@contextlib.contextmanager
def _quiet_deliberate_drops() -> Iterator[None]:
    logger = logging.getLogger("uvicorn.error")
    drop_filter = _DeliberateDropFilter()
    logger.addFilter(drop_filter)
    try:
        yield
    finally:
        logger.removeFilter(drop_filter)


def _require_uvicorn() -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "serving the simulator over TCP needs uvicorn: "
            "pip install 'async-remote-dispatch[simulator]'"
        ) from exc


def _embedded_server(config: uvicorn.Config, on_ready: Callable[[], None]) -> uvicorn.Server:
    """uvicorn without its signal handlers (Ctrl-C stays the caller's), calling
    ``on_ready`` once startup succeeded or failed."""
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets=sockets)
            finally:
                on_ready()

    return EmbeddedServer(config)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (0: a free port), for
    `serve_asgi`. Bind first when an app must know its own port before it starts (say, for
    the callback URL it gives the simulator). The caller closes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Name the protocol: asyncio only enables TCP_NODELAY on sockets whose `proto` says
    # TCP, and accepted connections inherit it. Without it every keep-alive answer waits
    # ~40 ms for a delayed ACK (Nagle), capping a connection at ~25 requests/s.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _running_on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextlib.asynccontextmanager
async def serve(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    simulator: Simulator | None = None,
    in_thread: bool | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator over TCP for the ``async with`` block; ``port=0`` picks a free one.

    ``in_thread`` runs uvicorn in a thread with its own asyncio loop; by default only when
    the caller is not on asyncio (trio). Then the simulator lives on that loop: compare
    ``task_completed_at(...).wall``, not ``.clock``, with your own times. Leaving the block,
    normally or by cancellation, shuts the server down and waits for it.
    """
    sim = simulator if simulator is not None else Simulator(config)
    sock = bind_socket(host, port)
    try:
        async with serve_asgi(sim.app, sock, in_thread=in_thread):
            yield RunningSimulator(sim, host, sock.getsockname()[1])
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    sock: socket.socket,
    *,
    lifespan: Literal["on", "off"] = "on",
    in_thread: bool | None = None,
) -> AsyncIterator[None]:
    """Serve any ASGI app (the simulator, or your own app receiving its webhooks) with
    uvicorn on ``sock`` for the ``async with`` block, the way `serve()` does."""
    if in_thread is None:
        in_thread = not _running_on_asyncio()
    _require_uvicorn()
    import uvicorn

    server_config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_level="warning",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        loop="asyncio",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    with _quiet_deliberate_drops():
        async with _running(server_config, sock, in_thread=in_thread):
            yield


@contextlib.asynccontextmanager
async def _running(
    config: uvicorn.Config, sock: socket.socket, *, in_thread: bool
) -> AsyncIterator[None]:
    """Run uvicorn on ``sock`` for the block; always wait for its full shutdown.

    An exception from the block is held while the task group winds down and re-raised
    after it, so it reaches the caller as itself rather than inside an ExceptionGroup.
    """
    body_error: BaseException | None = None
    started = False
    async with anyio.create_task_group() as tg:
        wait_ready: Callable[[], Awaitable[object]]
        if in_thread:
            thread_ready = threading.Event()
            server = _embedded_server(config, thread_ready.set)
            run = functools.partial(_run_in_thread, server, sock, thread_ready.set)
            tg.start_soon(anyio.to_thread.run_sync, run)
            wait_ready = functools.partial(anyio.to_thread.run_sync, thread_ready.wait)
        else:
            ready = anyio.Event()
            server = _embedded_server(config, ready.set)
            tg.start_soon(_run_here, server, sock, ready.set)
            wait_ready = ready.wait
        try:
            await wait_ready()
            started = server.started
            if started:
                try:
                    yield
                except BaseException as exc:  # re-raised below, unwrapped
                    body_error = exc
        finally:
            server.should_exit = True
    if not started:
        raise RuntimeError("the server failed to start (see the uvicorn log)")
    if body_error is not None:
        raise body_error


async def _run_here(
    server: uvicorn.Server, sock: socket.socket, on_exit: Callable[[], None]
) -> None:
    # Shielded: a cancelled caller still gets a full, clean uvicorn shutdown.
    with anyio.CancelScope(shield=True):
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn's answer to a failed startup
            pass
        finally:
            on_exit()


def _run_in_thread(
    server: uvicorn.Server, sock: socket.socket, on_exit: Callable[[], None]
) -> None:
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass
    finally:
        on_exit()


def run_forever(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
) -> None:
    """Serve a simulator until Ctrl-C or SIGTERM: the body of ``async-dispatch simulate``."""
    _require_uvicorn()
    import uvicorn

    sim = Simulator(config)
    server = uvicorn.Server(
        uvicorn.Config(
            sim.app,
            host=host,
            port=port,
            lifespan="on",
            log_level=log_level,
            proxy_headers=False,
            server_header=False,
            date_header=False,
        )
    )
    # After uvicorn.Config, which sets up logging. Keys are secrets, even fake ones.
    logging.getLogger("uvicorn.error").info(
        "Remote Dispatch simulator: seed %d, %d API key(s)", sim.seed, len(sim.config.api_keys)
    )
    with _quiet_deliberate_drops(), contextlib.suppress(KeyboardInterrupt):
        server.run()  # uvicorn re-raises the Ctrl-C it handled; for a CLI that is the end
