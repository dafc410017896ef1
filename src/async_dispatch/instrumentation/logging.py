"""`LoggingHook`: the instrumentation events worth a log line, through the library logger.

The policy is the library's logging policy (see `async_dispatch._log`): say only what a
person should act on unless asked for more.

- `RateLimitPaused` → warning ``rate_limited`` (``seconds``, ``source``): the key is over
  its budget and everything waits;
- `WebhookAnswered` with a 4xx or 5xx → info ``webhook_refused`` (``reason``,
  ``status_code``): a sender is misconfigured, or someone is probing the URL;
- `TaskRetrying` → info ``task_retrying`` (``request_id``, ``attempt``, ``kind``,
  ``wait``): an attempt failed and the task will be resubmitted;
- `CheckDone`, `SubmitDone`, `TaskResolved` → debug ``checked``, ``submitted``,
  ``resolved``: a per-request trace, built only when the ``async_dispatch`` logger has
  debug enabled, so it costs one level test otherwise.

Everything else is for metrics, not logs.
"""

from __future__ import annotations

from typing import Final

from .._log import debug_enabled, logger
from ._events import (
    CheckDone,
    Event,
    RateLimitPaused,
    SubmitDone,
    TaskForgotten,
    TaskResolved,
    TaskRetrying,
    TaskTracked,
    TokenWaited,
    WebhookAnswered,
)

__all__ = ["LoggingHook"]

#: The per-request events, logged at debug level only.
_TRACED: Final = (CheckDone, SubmitDone, TaskResolved)


class LoggingHook:
    """Logs instrumentation events on the ``async_dispatch`` logger (see module docs).

    Stateless: one instance can serve any number of clients.
    """

    __slots__ = ()

    #: What it never logs: the per-task bookkeeping events (see `Instrumentation.wants`).
    ignores: Final = frozenset({TaskTracked, TaskForgotten, TokenWaited})
    #: What it logs only at debug level (see `Instrumentation.only_when_debugging`).
    debug_only: Final = frozenset(_TRACED)

    def __repr__(self) -> str:
        return "LoggingHook()"

    def __call__(self, event: Event) -> None:
        if isinstance(event, RateLimitPaused):
            logger.warning("rate_limited", seconds=round(event.seconds, 3), source=event.source)
        elif isinstance(event, WebhookAnswered):
            if event.status_code >= 400:
                logger.info("webhook_refused", reason=event.reason, status_code=event.status_code)
        elif isinstance(event, TaskRetrying):
            logger.info(
                "task_retrying",
                request_id=event.request_id,
                attempt=event.attempt,
                kind=event.kind.value,
                wait=round(event.wait, 3),
            )
        elif isinstance(event, _TRACED) and debug_enabled():
            _debug(event)


def _debug(event: CheckDone | SubmitDone | TaskResolved) -> None:
    if isinstance(event, CheckDone):
        logger.debug(
            "checked",
            request_id=event.request_id,
            result=event.result,
            latency=round(event.latency, 3),
            attempt=event.attempt,
        )
    elif isinstance(event, SubmitDone):
        logger.debug(
            "submitted",
            request_id=event.request_id,
            result=event.result,
            latency=round(event.latency, 3),
        )
    else:
        logger.debug(
            "resolved",
            request_id=event.request_id,
            kind=event.kind.value,
            final=event.final,
            polls=event.polls,
            age=round(event.age, 3),
            detection_delay=(
                None if event.detection_delay is None else round(event.detection_delay, 3)
            ),
            via=event.via,
        )
