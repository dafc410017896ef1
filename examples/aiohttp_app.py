"""An aiohttp service that dispatches batches of prompts, results pushed by webhook.

The aiohttp twin of ``examples/fastapi_app.py``. ``POST /batches`` with
``{"prompts": ["...", ...]}`` submits every prompt through one long-lived poller in hybrid
mode: the service pushes each result to ``/webhooks/dispatch`` and a slow safety-net poll
catches any webhook that never arrives. ``GET /batches/{id}`` reports progress (counts per
state) and the results so far. aiohttp runs on asyncio only.

Configuration (environment):

- ``DISPATCH_API_KEY``, ``DISPATCH_BASE_URL``: the service (see ``DispatchClient``).
- ``DISPATCH_EXECUTION_MODE`` or ``DISPATCH_BROWSER_WINDOW_ID``: where the tasks run,
  ``cloud`` or a browser window; the service refuses a task that names neither.
- ``DISPATCH_CALLBACK_URL``: the public URL of this app's ``/webhooks/dispatch`` route.
  Unset: polling only.
- ``DISPATCH_CALLBACK_SECRET``: the webhook secret; a random one is generated if unset.
- ``DISPATCH_SAFETY_INTERVAL``: seconds between safety-net polls (default 60).
- ``PORT``: where to listen (default 8001).

Try it against the local simulator, in two shells::

    async-dispatch simulate --port 8000 --api-key sim-key
    # or the same: python -c "from async_dispatch.testing import run_forever; run_forever()"

    DISPATCH_API_KEY=sim-key DISPATCH_BASE_URL=http://127.0.0.1:8000/fast/v2 \\
    DISPATCH_EXECUTION_MODE=cloud \\
    DISPATCH_CALLBACK_URL=http://127.0.0.1:8001/webhooks/dispatch \\
        python examples/aiohttp_app.py

    curl -s -XPOST localhost:8001/batches -d '{"prompts": ["/Operator find flights"]}'
    curl -s localhost:8001/batches/<batch_id>
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import anyio
import attrs
from aiohttp import web

from async_dispatch import (
    AuthenticationError,
    DispatchClient,
    DispatchError,
    Outcome,
    OutcomeKind,
    PermissionDeniedError,
)
from async_dispatch.aiohttp import RUNTIME_KEY, setup_dispatch
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


BATCHES_KEY = web.AppKey("batches", Batches)


# -- the app -------------------------------------------------------------------------------


def _bad_request(message: str) -> web.HTTPUnprocessableEntity:
    return web.HTTPUnprocessableEntity(
        text=f'{{"detail": "{message}"}}', content_type="application/json"
    )


def _parse_batch(data: object) -> tuple[list[str], float | None]:
    """Validate a ``POST /batches`` body by hand (no pydantic here)."""
    if not isinstance(data, dict):
        raise _bad_request("expected a JSON object")
    prompts = data.get("prompts")
    if (
        not isinstance(prompts, list)
        or not 1 <= len(prompts) <= MAX_BATCH
        or not all(isinstance(p, str) and p for p in prompts)
    ):
        raise _bad_request(f"prompts: 1 to {MAX_BATCH} non-empty strings")
    deadline = data.get("deadline")
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline <= 0
    ):
        raise _bad_request("deadline: a number of seconds > 0")
    return prompts, None if deadline is None else float(deadline)


async def create_batch(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except ValueError:
        raise _bad_request("body is not JSON") from None
    prompts, deadline = _parse_batch(data)
    batches = request.app[BATCHES_KEY]
    batch = batches.new(prompts)
    if not await batches.submit(request.app[RUNTIME_KEY], batch, deadline):
        # Nothing was accepted: say so, rather than 202 for work that will never run.
        return web.json_response(batch.summary(), status=502)
    return web.json_response(batch.summary(results=False), status=202)


async def get_batch(request: web.Request) -> web.Response:
    batch = request.app[BATCHES_KEY].get(request.match_info["batch_id"])
    if batch is None:
        raise web.HTTPNotFound(text='{"detail": "no such batch"}', content_type="application/json")
    return web.json_response(batch.summary())


async def health(request: web.Request) -> web.Response:
    dispatch = request.app[RUNTIME_KEY]
    batches = request.app[BATCHES_KEY]
    ok = batches.healthy(dispatch)
    error = dispatch.error or batches.refused
    return web.json_response(
        {
            "ok": ok,
            "error": str(error) if error is not None else None,
            "poller": dispatch.poller.stats.as_dict(),
        },
        status=200 if ok else 503,
    )


def create_app(
    settings: Settings | None = None, *, client: DispatchClient | None = None
) -> web.Application:
    """Build the app; the runtime opens at startup and closes at cleanup."""
    settings = settings or Settings.from_env()
    batches = Batches()
    app = web.Application()
    app[BATCHES_KEY] = batches
    setup_dispatch(
        app,
        DispatchRuntime(
            client,
            callback_url=settings.callback_url,
            callback_secret=settings.callback_secret,
            on_outcome=batches.record,
            safety_interval=settings.safety_interval,
            deadline=settings.deadline,
            rate=settings.rate,
            burst=max(1, int(settings.rate)),
        ),
        path=WEBHOOK_PATH,
    )
    app.router.add_post("/batches", create_batch)
    app.router.add_get("/batches/{batch_id}", get_batch)
    app.router.add_get("/healthz", health)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
