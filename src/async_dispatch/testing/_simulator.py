"""The simulator: one run's state, its background work, and what tests can ask of it."""

from __future__ import annotations

import contextlib
import random
import secrets
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import TaskGroup

from ._app import SimulatorApp
from ._clock import Clock
from ._config import SimulatorConfig
from ._stats import AcceptedLog, CompletionTime, SimulatorStats
from ._transport import SimulatorTransport
from ._uploads import Upload
from ._webhooks import WebhookDispatcher

if TYPE_CHECKING:
    from async_dispatch import DispatchClient

__all__ = ["IN_PROCESS_BASE_URL", "Simulator"]

IN_PROCESS_BASE_URL = "http://127.0.0.1"
"""Origin of in-process clients: loopback, so clients accept plain http. Their base URL
adds the config's ``base_path`` (`Simulator.base_url`)."""


class Simulator:
    """A local Remote Dispatch service: an ASGI app plus the background work it needs.

    Use it as ``async with Simulator(config) as sim:``; that starts webhook delivery in a
    task group owned by the ``async with``. Under an ASGI server, the ``lifespan`` protocol
    does the same (see ``serve``). Talk to it in process through ``sim.transport()`` or
    ``sim.client()``, or over TCP with ``serve()``. One simulator belongs to one event loop.

    Args:
        config: The run's settings; the defaults suit quick tests.
        webhook_client: The ``httpx.AsyncClient`` webhooks are sent with; pass one with an
            ASGI transport to deliver to an in-process receiver. Never closed here.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        webhook_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.seed: int = self.config.seed if self.config.seed is not None else secrets.randbits(32)
        """The seed in use: put it in a config to replay this run."""
        self.stats = SimulatorStats()
        self.clock = Clock(self.config.time_scale)
        self._accepted = AcceptedLog()
        self._webhooks = WebhookDispatcher(
            self.config.webhooks,
            random.Random(f"{self.seed}/webhooks"),
            self.stats,
            webhook_client,
        )
        self.app = SimulatorApp(
            self.config,
            seed=self.seed,
            clock=self.clock,
            stats=self.stats,
            accepted=self._accepted,
            on_task=self._webhooks.schedule_task,
            lifespan=self._lifespan,
        )
        """The ASGI 3 application: mount it in any ASGI server."""
        self.base_url = IN_PROCESS_BASE_URL + self.config.base_path
        """The base URL in-process clients use: loopback plus ``config.base_path``."""
        self._task_group: TaskGroup | None = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._http_clients: list[httpx.AsyncClient] = []

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Simulator seed={self.seed} tasks={len(self.app.tasks)} {state}>"

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task_group is not None

    async def __aenter__(self) -> Simulator:
        if self._exit_stack is not None:
            raise RuntimeError("this simulator is already running")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.push_async_callback(self._close_http_clients)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)  # runs first: stop the background
            self.clock.now()  # pin wall time to this loop's clock now, not at the first request
            task_group.start_soon(self._webhooks.run)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._exit_stack, self._task_group = self._exit_stack, None, None
        assert stack is not None
        # The body's exception is not the background's business: keeping it out of the task
        # group lets it propagate as itself, not wrapped in an ExceptionGroup.
        await stack.aclose()
        return None

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """What an ASGI server's lifespan runs: start unless someone already did."""
        if self.running:
            yield
            return
        async with self:
            yield

    async def _close_http_clients(self) -> None:
        clients, self._http_clients = self._http_clients, []
        with anyio.CancelScope(shield=True):
            for client in clients:
                await client.aclose()

    # -- talking to it ----------------------------------------------------------------------

    def base_url_on(self, port: int, host: str = "127.0.0.1") -> str:
        """The base URL of this simulator served on ``host:port`` (say, by `serve_asgi`
        on a `bind_socket`): the origin plus ``config.base_path``."""
        netloc = f"[{host}]" if ":" in host else host
        return f"http://{netloc}:{port}{self.config.base_path}"

    def transport(self) -> SimulatorTransport:
        """An httpx transport into this simulator, no sockets involved."""
        return SimulatorTransport(self.app)

    def http_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` bound to this simulator in process, closed when it stops.

        ``base_url`` defaults to `base_url` (``http://127.0.0.1/fast/v2`` by default), so
        relative paths such as ``/remote-dispatch`` reach the API.
        """
        kwargs.setdefault("base_url", self.base_url)
        client = httpx.AsyncClient(transport=self.transport(), **kwargs)
        self._http_clients.append(client)
        return client

    def client(self, **kwargs: Any) -> DispatchClient:
        """An ``async_dispatch.DispatchClient`` bound to this simulator in process.

        Keyword arguments go to ``DispatchClient``; ``api_key`` defaults to the config's
        ``default_key``, ``base_url`` to `base_url`, and ``execution_mode`` to ``"cloud"``
        (a submit in the default client mode would need a ``browser_window_id``; pass
        ``execution_mode=None`` to test that rule).
        """
        from ._harness import build_client  # the client is imported only when asked for

        return build_client(self, **kwargs)

    # -- what happened ----------------------------------------------------------------------

    @property
    def uploads(self) -> Mapping[str, Upload]:
        """Files uploaded to the simulated bucket, by key: their bytes, and whether the
        client wrongly sent its API key along (``Upload.api_key_sent``)."""
        return self.app.bucket.uploads

    def task_completed_at(self, request_id: str) -> CompletionTime | None:
        """When the task finishes (or finished) on the server; None if it never does."""
        task = self.app.tasks.get(request_id)
        if task is None or task.finish is None:
            return None
        return CompletionTime(clock=task.finish, wall=self.clock.datetime(task.finish))

    def accepted_request_times(self, api_key: str | None = None) -> list[float]:
        """Loop times of the requests admitted past auth and the rate limit, sorted."""
        return self._accepted.times(api_key)

    def rate_window_max(self, seconds: float = 1.0, *, api_key: str | None = None) -> int:
        """The most admitted requests within any window ``seconds`` long (all keys by
        default): what a rate-limit test compares with ``burst + rate * seconds``."""
        return self._accepted.window_max(seconds, api_key)

    @property
    def pending_webhooks(self) -> int:
        """Webhook deliveries scheduled or in flight, retries included."""
        return self._webhooks.pending

    async def wait_webhooks(self) -> None:
        """Wait until every scheduled webhook was delivered, abandoned or dropped.

        Tasks that finish later schedule theirs later: call this after they finished. The
        simulator must be running, or nothing is ever delivered.
        """
        await self._webhooks.wait_idle()
