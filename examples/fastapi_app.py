"""A FastAPI service that dispatches batches of prompts, results pushed by webhook.

``POST /batches`` with ``{"prompts": ["...", ...]}`` submits every prompt through one
long-lived poller in hybrid mode: the service pushes each result to ``/webhooks/dispatch``
and a slow safety-net poll catches any webhook that never arrives.
``GET /batches/{id}`` reports progress (counts per state) and the results so far.
``GET /metrics`` serves the library's Prometheus metrics (extra ``prometheus``).

Configuration (environment):

- ``DISPATCH_API_KEY``, ``DISPATCH_BASE_URL``: the service (see ``DispatchClient``).
- ``DISPATCH_CALLBACK_URL``: the public URL of this app's ``/webhooks/dispatch`` route.
  Unset: polling only.
- ``DISPATCH_CALLBACK_SECRET``: the webhook secret; a random one is generated if unset.
- ``DISPATCH_SAFETY_INTERVAL``: seconds between safety-net polls (default 60).

Try it against the local simulator, in two shells::

    async-dispatch simulate --port 8000 --api-key sim-key
    # or the same: python -c "from async_dispatch.testing import run_forever; run_forever()"

    DISPATCH_API_KEY=sim-key DISPATCH_BASE_URL=http://127.0.0.1:8000 \\
    DISPATCH_CALLBACK_URL=http://127.0.0.1:8001/webhooks/dispatch \\
        uvicorn --factory examples.fastapi_app:create_app --port 8001

    curl -s -XPOST localhost:8001/batches -H 'content-type: application/json' \\
        -d '{"prompts": ["/Operator find flights to Lisbon", "summarise the news"]}'
    curl -s localhost:8001/batches/<batch_id>
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any

import anyio
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
from async_dispatch.fastapi import RuntimeDep, dispatch_lifespan, webhook_router
from async_dispatch.instrumentation import LoggingHook
from async_dispatch.instrumentation.prometheus import PrometheusHook
from async_dispatch.webhooks import DispatchRuntime

WEBHOOK_PATH = "/webhooks/dispatch"
MAX_BATCH = 100
#: Submits in flight at once for one batch; the runtime's rate limit paces them anyway.
SUBMIT_CONCURRENCY = 10


@attrs.frozen(kw_only=True)
class Settings:
    """What the app needs from its environment."""

    callback_url: str | None = None
    callback_secret: str | None = attrs.field(default=None, repr=False)
    safety_interval: float = 60.0
    deadline: float = 600.0
    rate: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            callback_url=os.environ.get("DISPATCH_CALLBACK_URL") or None,
            callback_secret=os.environ.get("DISPATCH_CALLBACK_SECRET") or None,
            safety_interval=float(os.environ.get("DISPATCH_SAFETY_INTERVAL", "60")),
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

    def record(self, outcome: Outcome) -> None:
        """The runtime's ``on_outcome``: file each outcome under its batch item."""
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
        return sum(1 for item in batch.items if item.request_id is not None)

    def healthy(self, dispatch: DispatchRuntime) -> bool:
        """False while the service refuses the key, from a submit or from the poller."""
        return dispatch.error is None and self.refused is None


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
    runtime = DispatchRuntime(
        client,
        callback_url=settings.callback_url,
        callback_secret=settings.callback_secret,
        on_outcome=batches.record,
        safety_interval=settings.safety_interval,
        deadline=settings.deadline,
        rate=settings.rate,
        burst=max(1, int(settings.rate)),
    )
    app = FastAPI(title="dispatch batches", lifespan=dispatch_lifespan(runtime))
    app.include_router(webhook_router(WEBHOOK_PATH))

    @app.post("/batches", status_code=status.HTTP_202_ACCEPTED)
    async def create_batch(
        body: BatchRequest, dispatch: RuntimeDep, response: Response
    ) -> dict[str, Any]:
        batch = batches.new(body.prompts)
        if not await batches.submit(dispatch, batch, body.deadline):
            # Nothing was accepted: say so, rather than 202 for work that will never run.
            response.status_code = status.HTTP_502_BAD_GATEWAY
            return batch.summary()
        return batch.summary(results=False)

    @app.get("/batches/{batch_id}")
    async def get_batch(batch_id: str) -> dict[str, Any]:
        batch = batches.get(batch_id)
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
