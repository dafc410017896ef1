"""`DispatchRuntime`: what a web app keeps open for its whole life to dispatch tasks.

A web service that dispatches tasks needs the same four things whatever its framework: an
open `DispatchClient`, a long-lived `Poller` in hybrid mode (webhooks first, a slow poll
as the safety net), a `WebhookReceiver` feeding that poller, and one consumer draining the
poller's outcomes so they reach the application. This object owns all four under one
``async with``, so the FastAPI lifespan and the aiohttp cleanup context are three lines
each, and leaving the block (app shutdown) cancels and awaits everything.

The runtime is built before the app starts (its objects do no I/O until opened), so a
framework can hold it in app state that is frozen once the app runs.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from ._client import DispatchClient
from ._defaults import POLLER_DEFAULTS
from ._errors import CoordinationError, DispatchError
from ._limiter import Limiter
from ._log import logger
from ._options import SubmitOptions, merge_options
from ._outcome import Outcome
from ._poller import Poller
from ._resubmit import ResubmitPolicy
from ._service import Service
from ._store import TaskStore
from ._validation import check_int
from ._webhooks import DEFAULT_MAX_WEBHOOK_BODY, WebhookReceiver, generate_secret

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import SubmitFields

__all__ = ["DispatchRuntime", "OutcomeHandler"]

#: Called with every outcome, in order. May be sync or async; keep it quick: outcomes
#: wait behind it. An exception is logged and does not stop the runtime; the outcome is
#: delivered again (`Poller.redeliver`: ``Outcome.deliveries`` one higher, three times
#: at most, then a fleet's dead-letter stream), so a failing handler loses nothing.
OutcomeHandler = Callable[[Outcome], "Awaitable[None] | None"]

_DEFAULT_KEEP: Final = 10_000


class DispatchRuntime:
    """A client, a hybrid poller, a webhook receiver and an outcome consumer, owned together.

    Args:
        client: An unopened `DispatchClient`; the runtime opens and closes it. Defaults
            to one configured from ``$DISPATCH_API_KEY`` and ``$DISPATCH_BASE_URL``.
        callback_url: The public URL of this app's webhook route. None means polling
            only (the webhook route then answers 404 to everything).
        callback_secret: Sent as ``callbackSecret`` and checked on every webhook. A
            strong one is generated when not given: only this process needs to know it.
        header_name, header_value: An extra header the service must send back (via
            ``callbackHeaders``), e.g. ``"authorization"``, ``"Bearer <token>"``.
        on_outcome: Called with every outcome (see `OutcomeHandler`).
        keep: How many latest outcomes to keep for `outcome()`, oldest dropped first.
        max_body_size: Webhook bodies above this get 413.
        rate, burst, deadline: As for `Poller`, and so are `initial_interval`,
            `max_interval`, `max_in_flight`, `safety_interval`, `stop_on_input_required`,
            `bucket`, `store`, `seed`, `resubmit` and `output_types`. Pass a fleet's
            `RedisTokenBucket` and `RedisStore` to run several replicas of the app on
            one key.
    """

    def __init__(
        self,
        client: DispatchClient | None = None,
        *,
        callback_url: str | None,
        callback_secret: str | None = None,
        header_name: str | None = None,
        header_value: str | None = None,
        on_outcome: OutcomeHandler | None = None,
        keep: int = _DEFAULT_KEEP,
        max_body_size: int = DEFAULT_MAX_WEBHOOK_BODY,
        rate: float = POLLER_DEFAULTS.rate,
        burst: int = POLLER_DEFAULTS.burst,
        deadline: float = POLLER_DEFAULTS.deadline,
        initial_interval: float = POLLER_DEFAULTS.initial_interval,
        max_interval: float = POLLER_DEFAULTS.max_interval,
        max_in_flight: int = POLLER_DEFAULTS.max_in_flight,
        safety_interval: float = POLLER_DEFAULTS.safety_interval,
        stop_on_input_required: bool = False,
        bucket: Limiter | None = None,
        store: TaskStore | None = None,
        seed: int | None = None,
        resubmit: ResubmitPolicy | None = None,
        output_types: Iterable[type] = (),
    ) -> None:
        check_int("keep", keep, minimum=0)
        secret = callback_secret if callback_secret is not None else generate_secret()
        self.client = client if client is not None else DispatchClient()
        self.callback_url = callback_url
        headers = {header_name.lower(): header_value} if header_name and header_value else None
        self.poller = Poller(
            self.client,
            rate=rate,
            burst=burst,
            deadline=deadline,
            initial_interval=initial_interval,
            max_interval=max_interval,
            max_in_flight=max_in_flight,
            safety_interval=safety_interval,
            stop_on_input_required=stop_on_input_required,
            bucket=bucket,
            store=store,
            seed=seed,
            resubmit=resubmit,
            output_types=output_types,
            callback_url=callback_url,
            callback_secret=secret if callback_url is not None else None,
            callback_headers=headers if callback_url is not None else None,
        )
        self.receiver = WebhookReceiver(
            self.poller,
            secret=secret,
            header_name=header_name,
            header_value=header_value,
            max_body_size=max_body_size,
            instrumentation=self.client.instrumentation,
        )
        self.on_outcome = on_outcome
        self.keep = keep
        #: Set when the service refused the key: the poller stopped, nothing will finish.
        self.error: DispatchError | None = None
        self._outcomes: OrderedDict[str, Outcome] = OrderedDict()
        self._service = Service("DispatchRuntime")

    def __repr__(self) -> str:
        mode = "hybrid" if self.callback_url else "polling"
        state = "running" if self.running else "stopped"
        return f"<DispatchRuntime {mode} {state} poller={self.poller!r}>"

    @property
    def running(self) -> bool:
        return self._service.running

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> DispatchRuntime:
        async def enter(stack: contextlib.AsyncExitStack) -> None:
            await stack.enter_async_context(self.client)
            await stack.enter_async_context(self.poller)

        def start(task_group: anyio.abc.TaskGroup) -> None:
            task_group.start_soon(self._consume, name="async_dispatch.runtime-consumer")

        await self._service.open(enter, start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._service.close(exc_type, exc, tb)

    # -- using it -----------------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        options: SubmitOptions | None = None,
        *,
        deadline: float | None = None,
        context: Any = None,
        resubmit: bool = True,
        **fields: Unpack[SubmitFields],
    ) -> str:
        """`Poller.submit()`, the same fields spelled the same: in hybrid mode the callback
        URL, secret and header are added."""
        merged = merge_options(options, fields)
        del fields  # this frame outlives the submit: its locals must not hold secrets
        return await self.poller.submit(
            prompt, merged, deadline=deadline, context=context, resubmit=resubmit
        )

    def outcome(self, request_id: str) -> Outcome | None:
        """The latest outcome seen for `request_id` (among the last `keep`), or None."""
        return self._outcomes.get(request_id)

    @property
    def outcomes(self) -> Mapping[str, Outcome]:
        """The last `keep` outcomes by request id, oldest first (a read-only view)."""
        return MappingProxyType(self._outcomes)

    # -- the consumer -------------------------------------------------------------------

    async def _consume(self) -> None:
        try:
            async for outcome in self.poller.results(forever=True):
                self._remember(outcome)
                if self.on_outcome is not None:
                    await self._call_handler(outcome)
        except DispatchError as exc:  # the key was refused: every task is concerned
            self.error = exc
            logger.error("dispatch_stopped", error=type(exc).__name__)

    async def _call_handler(self, outcome: Outcome) -> None:
        assert self.on_outcome is not None
        try:
            result = self.on_outcome(outcome)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a bug in the handler must not stop the other outcomes
            logger.exception(
                "outcome_handler_failed",
                request_id=outcome.request_id,
                deliveries=outcome.deliveries,
            )
            try:
                # Not acknowledged: it comes back (at-least-once), with a bound.
                await self.poller.redeliver(outcome, exc)
            except CoordinationError:
                # Redis is unreachable: the outcome, no longer renewed, is taken over
                # once idle for the store's `outcome_idle`. Not lost either way.
                logger.warning("outcome_redelivery_deferred", request_id=outcome.request_id)

    def _remember(self, outcome: Outcome) -> None:
        if not self.keep:
            return
        kept = self._outcomes
        kept.pop(outcome.request_id, None)
        kept[outcome.request_id] = outcome
        while len(kept) > self.keep:
            kept.popitem(last=False)
