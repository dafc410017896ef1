"""A FastAPI service that dispatches batches of prompts, results pushed by webhook.

``POST /batches`` with ``{"prompts": ["...", ...]}`` answers at once (202) with the batch
id, and submits the prompts in the background, within the runtime's one rate limit: a
handler never waits for the budget. The submits run in a task group that the app's
lifespan owns, so shutdown waits for them (up to ``SHUTDOWN_GRACE`` seconds, then cancels
what is left; a prompt not submitted by then stays ``submitting``). Results come through
one long-lived poller in hybrid mode: the service pushes each result to
``/webhooks/dispatch`` and a slow safety-net poll catches any webhook that never arrives.
``GET /batches/{id}`` reports progress (counts per state) and the results so far.
``GET /metrics`` serves the library's Prometheus metrics (extra ``prometheus``).

Configuration (environment):

- ``DISPATCH_API_KEY``, ``DISPATCH_BASE_URL``: the service (see ``DispatchClient``).
- ``DISPATCH_EXECUTION_MODE`` or ``DISPATCH_BROWSER_WINDOW_ID``: where the tasks run,
  ``cloud`` or a browser window; the service refuses a task that names neither.
- ``DISPATCH_CALLBACK_URL``: the public URL of this app's ``/webhooks/dispatch`` route.
  Unset: polling only.
- ``DISPATCH_CALLBACK_SECRET``: the webhook secret; a random one is generated if unset.
- ``DISPATCH_SAFETY_INTERVAL``: seconds between safety-net polls (default 60).
- ``DISPATCH_RATE``: requests per second the app may send with this key (default 10):
  set it to the key's limit. Submits and status checks share it.
- ``DISPATCH_REDIS_URL``: fleet mode (extra ``redis``). Every worker, on every machine,
  shares one rate limit (`RedisTokenBucket`), one set of tracked tasks (`RedisStore`) and
  the batches (a hash per batch in the same Redis), so any worker can take a request, a
  webhook or an outcome. ``DISPATCH_CALLBACK_SECRET`` is then required: a webhook for a
  task one worker submitted may reach any other, which must accept the same secret.
- ``DISPATCH_FLEET_NAME``: which fleet (default ``dispatch-example``); one per API key.

Try it against the local simulator, in two shells::

    async-dispatch simulate --port 8000 --api-key sim-key
    # or the same: python -c "from async_dispatch.testing import run_forever; run_forever()"

    DISPATCH_API_KEY=sim-key DISPATCH_BASE_URL=http://127.0.0.1:8000/fast/v2 \\
    DISPATCH_EXECUTION_MODE=cloud \\
    DISPATCH_CALLBACK_URL=http://127.0.0.1:8001/webhooks/dispatch \\
        uvicorn --factory examples.fastapi_app:create_app --port 8001

    curl -s -XPOST localhost:8001/batches -H 'content-type: application/json' \\
        -d '{"prompts": ["/Operator find flights to Lisbon", "summarise the news"]}'
    curl -s localhost:8001/batches/<batch_id>

Fleet mode, four workers on one key (a third shell for Redis, or an existing one)::

    redis-server --port 6379 --save '' --appendonly no
    async-dispatch simulate --port 8000 --api-key sim-key

    DISPATCH_API_KEY=sim-key DISPATCH_BASE_URL=http://127.0.0.1:8000/fast/v2 \\
    DISPATCH_EXECUTION_MODE=cloud \\
    DISPATCH_CALLBACK_URL=http://127.0.0.1:8001/webhooks/dispatch \\
    DISPATCH_CALLBACK_SECRET=change-me-to-32-random-characters \\
    DISPATCH_REDIS_URL=redis://127.0.0.1:6379 \\
        uvicorn --factory examples.fastapi_app:create_app --port 8001 --workers 4

    curl -s -XPOST localhost:8001/batches -H 'content-type: application/json' \\
        -d '{"prompts": ["/Operator one", "/Operator two", "/Operator three"]}'
    curl -s localhost:8001/batches/<batch_id>      # any worker answers
    async-dispatch fleet --name dispatch-example --redis-url redis://127.0.0.1:6379

Each result then also says which worker recorded it (``replica``) and how many final
outcomes reached the app for it (``outcomes``: 1, or more only for a redelivery after a
worker died between taking an outcome and asking for the next).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.abc
import attrs
from fastapi import FastAPI, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from async_dispatch import (
    AuthenticationError,
    DispatchClient,
    DispatchError,
    Outcome,
    OutcomeKind,
    PermissionDeniedError,
)
from async_dispatch.fastapi import RuntimeDep, open_runtime, webhook_router
from async_dispatch.instrumentation import LoggingHook
from async_dispatch.instrumentation.prometheus import PrometheusHook
from async_dispatch.webhooks import DispatchRuntime

if TYPE_CHECKING:  # fleet mode only: the redis extra
    from async_dispatch.redis import RedisConnection

WEBHOOK_PATH = "/webhooks/dispatch"
MAX_BATCH = 100
#: Submits in flight at once for one batch; the runtime's rate limit paces them anyway.
SUBMIT_CONCURRENCY = 10
#: Seconds shutdown waits for batches still being submitted before cancelling them.
SHUTDOWN_GRACE = 10.0


@attrs.frozen(kw_only=True)
class Settings:
    """What the app needs from its environment."""

    callback_url: str | None = None
    callback_secret: str | None = attrs.field(default=None, repr=False)
    safety_interval: float = 60.0
    deadline: float = 600.0
    rate: float = 10.0
    #: Fleet mode when set (it may hold a password: kept out of repr).
    redis_url: str | None = attrs.field(default=None, repr=False)
    fleet_name: str = "dispatch-example"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            callback_url=os.environ.get("DISPATCH_CALLBACK_URL") or None,
            callback_secret=os.environ.get("DISPATCH_CALLBACK_SECRET") or None,
            safety_interval=float(os.environ.get("DISPATCH_SAFETY_INTERVAL", "60")),
            rate=float(os.environ.get("DISPATCH_RATE", "10")),
            redis_url=os.environ.get("DISPATCH_REDIS_URL") or None,
            fleet_name=os.environ.get("DISPATCH_FLEET_NAME") or "dispatch-example",
        )


# -- the batch bookkeeping (plain data, no framework) ---------------------------------------


@attrs.define
class Item:
    prompt: str
    request_id: str | None = None
    state: str = "submitting"
    text: str | None = None
    polls: int | None = None
    error: str | None = None
    #: Fleet mode: the worker that recorded the outcome, and how many final outcomes came.
    replica: str | None = None
    outcomes: int | None = None

    def as_dict(self, index: int) -> dict[str, Any]:
        return {"index": index, **attrs.asdict(self)}


@attrs.define
class Batch:
    id: str
    items: list[Item]

    def summary(self, *, results: bool = True) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.state] = counts.get(item.state, 0) + 1
        done = sum(1 for item in self.items if item.state not in _UNFINISHED)
        data: dict[str, Any] = {
            "batch_id": self.id,
            "size": len(self.items),
            "done": done,
            "complete": done == len(self.items),
            "counts": counts,
        }
        if results:
            data["results"] = [item.as_dict(i) for i, item in enumerate(self.items)]
        return data


_UNFINISHED = frozenset({"submitting", "pending", OutcomeKind.INPUT_REQUIRED.value})


class Batches:
    """Every batch of this process, and the one place outcomes are written to."""

    def __init__(self) -> None:
        self._batches: dict[str, Batch] = {}
        #: Set while the service refuses our key: every submit would fail, so the app is
        #: not healthy, whatever the poller thinks. Cleared by the next accepted submit.
        self.refused: DispatchError | None = None

    def new(self, prompts: list[str]) -> Batch:
        batch = Batch(uuid.uuid4().hex[:12], [Item(prompt) for prompt in prompts])
        self._batches[batch.id] = batch
        return batch

    def get(self, batch_id: str) -> Batch | None:
        return self._batches.get(batch_id)

    async def save(self, batch: Batch) -> None:
        """Fleet mode: make the batch's submit-side state visible to every worker."""

    async def load(self, batch_id: str) -> Batch | None:
        """Fleet mode: a batch this worker does not hold, from the shared copy."""
        return None

    def record(self, outcome: Outcome) -> Any:
        """The runtime's ``on_outcome``: file each outcome under its batch item."""
        if outcome.context is None:  # SUBMIT_UNCERTAIN from a dead worker: no batch known
            return
        batch_id, index = outcome.context
        item = self._batches[batch_id].items[index]
        if item.state not in _UNFINISHED:
            return
        item.state = outcome.kind.value
        item.polls = outcome.polls
        item.text = outcome.status.text if outcome.status is not None else None
        item.error = str(outcome.error) if outcome.error is not None else None

    async def submit(self, dispatch: DispatchRuntime, batch: Batch, deadline: float | None) -> int:
        """Submit every item at once (the runtime's budget paces them); return how many
        the service accepted."""
        limit = anyio.CapacityLimiter(SUBMIT_CONCURRENCY)

        async def one(index: int, item: Item) -> None:
            async with limit:
                try:
                    item.request_id = await dispatch.submit(
                        item.prompt, deadline=deadline, context=(batch.id, index)
                    )
                except DispatchError as exc:
                    item.state, item.error = "submit-failed", str(exc)
                    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
                        self.refused = exc
                    return
            self.refused = None
            if item.state == "submitting":  # a fast webhook may already have landed
                item.state = "pending"

        async with anyio.create_task_group() as task_group:
            for index, item in enumerate(batch.items):
                task_group.start_soon(one, index, item)
        await self.save(batch)
        return sum(1 for item in batch.items if item.request_id is not None)

    def healthy(self, dispatch: DispatchRuntime) -> bool:
        """False while the service refuses the key, from a submit or from the poller."""
        return dispatch.error is None and self.refused is None


class SharedBatches(Batches):
    """Fleet mode: the batches live in Redis, so any worker answers for any batch.

    One hash per batch, under the fleet's key prefix (so in the fleet's hash slot):
    ``items`` is the submitting worker's view (JSON), ``o:<index>`` the final outcome
    (written once: HSETNX) with ``n:<index>`` counting the final outcomes that arrived,
    ``q:<index>`` the latest input request (``o:`` and ``n:`` in one transaction).
    Reading merges them, so an outcome recorded by one worker before the submitting
    worker saved its view is never overwritten.
    """

    TTL = 86_400

    def __init__(self, connection: RedisConnection, fleet_name: str) -> None:
        super().__init__()
        self._connection = connection
        self._prefix = connection.key(fleet_name, "app:batch:")
        self._replica = f"pid-{os.getpid()}"

    def _key(self, batch_id: str) -> str:
        return self._prefix + batch_id

    async def save(self, batch: Batch) -> None:
        items = [{"prompt": i.prompt, "request_id": i.request_id, "state": i.state,
                  "error": i.error} for i in batch.items]  # fmt: skip
        client = self._connection.client
        await client.hset(self._key(batch.id), {"items": json.dumps(items)})
        await client.expire(self._key(batch.id), self.TTL)
        self._batches.pop(batch.id, None)  # Redis is the one copy

    async def load(self, batch_id: str) -> Batch | None:
        fields = {
            k.decode(): v.decode()
            for k, v in (await self._connection.client.hgetall(self._key(batch_id))).items()
        }
        if "items" not in fields:
            return None
        items = [Item(**item) for item in json.loads(fields["items"])]
        for index, item in enumerate(items):
            found = fields.get(f"o:{index}") or fields.get(f"q:{index}")
            if found is not None:
                item.state, item.text, item.polls, item.error, item.replica = json.loads(found)
                item.outcomes = int(fields.get(f"n:{index}", 0))
        return Batch(batch_id, items)

    async def record(self, outcome: Outcome) -> None:
        if outcome.context is None:
            return
        batch_id, index = outcome.context
        value = json.dumps([
            outcome.kind.value,
            outcome.status.text if outcome.status is not None else None,
            outcome.polls,
            str(outcome.error) if outcome.error is not None else None,
            self._replica,
        ])  # fmt: skip
        client, key = self._connection.client, self._key(batch_id)
        if outcome.final:
            # One transaction: a reader between the two writes would see the outcome
            # with no arrival counted.
            async with client.pipeline(transaction=True) as both:
                both.hsetnx(key, f"o:{index}", value)
                both.hincrby(key, f"n:{index}", 1)
        else:
            await client.hset(key, {f"q:{index}": value})


# -- the app -------------------------------------------------------------------------------


Prompt = Annotated[str, Field(min_length=1)]


class BatchRequest(BaseModel):
    prompts: Annotated[list[Prompt], Field(min_length=1, max_length=MAX_BATCH)]
    deadline: Annotated[float | None, Field(gt=0)] = None


def create_app(
    settings: Settings | None = None,
    *,
    client: DispatchClient | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the app; ``uvicorn --factory examples.fastapi_app:create_app`` calls this.

    ``/metrics`` serves ``registry`` (one of the app's own by default). A ``client`` you
    pass reports to it if you gave it a ``PrometheusHook(registry)``.
    """
    settings = settings or Settings.from_env()
    registry = registry if registry is not None else CollectorRegistry()
    if client is None:
        client = DispatchClient(hooks=[LoggingHook(), PrometheusHook(registry)])
    batches = Batches()
    fleet: dict[str, Any] = {}
    connection: RedisConnection | None = None
    if settings.redis_url is not None:
        connection, fleet, batches = _fleet_mode(settings)
    runtime = DispatchRuntime(
        client,
        callback_url=settings.callback_url,
        callback_secret=settings.callback_secret,
        on_outcome=batches.record,
        safety_interval=settings.safety_interval,
        deadline=settings.deadline,
        rate=settings.rate,
        burst=max(1, int(settings.rate)),
        **fleet,
    )
    background = Background()
    app = FastAPI(title="dispatch batches", lifespan=_lifespan(runtime, background, connection))
    app.include_router(webhook_router(WEBHOOK_PATH))

    @app.post("/batches", status_code=status.HTTP_202_ACCEPTED)
    async def create_batch(body: BatchRequest, dispatch: RuntimeDep) -> dict[str, Any]:
        batch = batches.new(body.prompts)
        await batches.save(batch)
        # Answer now; `GET /batches/{id}` shows each prompt leave `submitting`.
        background.start_soon(batches.submit, dispatch, batch, body.deadline)
        return batch.summary(results=False)

    @app.get("/batches/{batch_id}")
    async def get_batch(batch_id: str) -> dict[str, Any]:
        batch = batches.get(batch_id) or await batches.load(batch_id)
        if batch is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")
        return batch.summary()

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def health(dispatch: RuntimeDep, response: Response) -> dict[str, Any]:
        ok = batches.healthy(dispatch)
        if not ok:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        error = dispatch.error or batches.refused
        return {
            "ok": ok,
            "error": str(error) if error is not None else None,
            "poller": dispatch.poller.stats.as_dict(),
        }

    return app


# -- the app's lifetime ----------------------------------------------------------------------


class Background:
    """The task group in which batches are submitted, owned by the app's lifespan.

    A request handler hands work to it and returns; the lifespan opens it inside the
    runtime (every submit needs the runtime running) and, at shutdown, gives the work
    still in it `SHUTDOWN_GRACE` seconds before cancelling it, so nothing outlives the app.
    """

    def __init__(self) -> None:
        self._group: anyio.abc.TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None
                group.cancel_scope.deadline = anyio.current_time() + SHUTDOWN_GRACE

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._group is None:
            raise RuntimeError("the app is not running (its lifespan has not started)")
        self._group.start_soon(self._guarded, func, *args)

    @staticmethod
    async def _guarded(func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """One batch that fails (Redis gone while saving it, a bug) must not stop the app:
        its error is logged, and the other batches go on."""
        try:
            await func(*args)
        except Exception:
            logging.getLogger(__name__).exception("a background batch submit failed")


def _lifespan(
    runtime: DispatchRuntime, background: Background, connection: RedisConnection | None
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The runtime, then the background submits inside it; in fleet mode, all of it inside
    the Redis connection, entered first and left last, in the lifespan's own task
    (coredis's task group requires it)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if connection is not None:
                await stack.enter_async_context(connection)
            await stack.enter_async_context(open_runtime(app, runtime))
            await stack.enter_async_context(background.running())
            yield

    return lifespan


# -- fleet mode ----------------------------------------------------------------------------


def _fleet_mode(settings: Settings) -> tuple[RedisConnection, dict[str, Any], SharedBatches]:
    """The shared bucket, store and batches of every worker of the fleet."""
    from async_dispatch.redis import RedisConnection, RedisStore, RedisTokenBucket

    assert settings.redis_url is not None
    if settings.callback_url is not None and settings.callback_secret is None:
        raise RuntimeError(
            "fleet mode with webhooks needs DISPATCH_CALLBACK_SECRET, the same on every "
            "worker: a webhook may reach any worker, not only the one that submitted"
        )
    connection = RedisConnection(settings.redis_url)
    name = settings.fleet_name
    fleet: dict[str, Any] = {
        "bucket": RedisTokenBucket(
            connection, name=name, rate=settings.rate, burst=max(1, int(settings.rate))
        ),
        "store": RedisStore(connection, name=name),
    }
    return connection, fleet, SharedBatches(connection, name)
