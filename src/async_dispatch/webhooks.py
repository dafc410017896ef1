"""Webhooks and hybrid push + poll, for any web framework.

The service pushes a task's result to ``callbackUrl`` when it completes; a slow poll stays
on as the safety net for deliveries that never arrive. This module is the framework-free
part: `WebhookReceiver` decides the answer to a delivery from bytes and headers, and
`DispatchRuntime` keeps a client, a hybrid `Poller`, a receiver and an outcome consumer
open for a web app's lifetime. `async_dispatch.fastapi` and `async_dispatch.aiohttp` wire
them into those frameworks::

    runtime = DispatchRuntime(callback_url="https://my.app/webhooks/dispatch",
                              on_outcome=store_result, safety_interval=60)
    async with runtime:
        await runtime.submit("/Operator ...", context=job_id)
        ...  # the route for callback_url answers with runtime.receiver.handle(body, headers)
"""

from ._runtime import DispatchRuntime, OutcomeHandler
from ._webhooks import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_WEBHOOK_BODY,
    Deliverer,
    WebhookReceiver,
    WebhookResult,
    generate_secret,
)

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_WEBHOOK_BODY",
    "Deliverer",
    "DispatchRuntime",
    "OutcomeHandler",
    "WebhookReceiver",
    "WebhookResult",
    "generate_secret",
]
