"""Hooks that watch the library work, kept apart from the logic they watch.

The core reports plain events (`CheckDone`, `TaskResolved`, ...) to an `Instrumentation`
built from a list of hooks, and wraps each submit and status check in
`Instrumentation.span`. Integrations are hooks living in their own modules, importable
only if their extra is installed:

- `async_dispatch.instrumentation.logging.LoggingHook` (the default): warnings a person
  should act on, a debug trace when debug logging is on;
- `async_dispatch.instrumentation.prometheus.PrometheusHook` (extra ``prometheus``);
- `async_dispatch.instrumentation.otel.OpenTelemetryHook` (extra ``otel``): metrics and
  spans.

A hook is any callable taking an event, so your own is a function away::

    def count_failures(event: Event) -> None:
        if isinstance(event, TaskResolved) and event.kind is OutcomeKind.FAILED:
            failures.append(event.request_id)

See ``docs/instrumentation.md`` for the metrics and how to turn each integration on.
"""

from ._events import (
    CHECK_RESULTS,
    OTHER,
    RATE_LIMIT_SOURCES,
    RESOLVED_VIA,
    SUBMIT_RESULTS,
    WEBHOOK_REASONS,
    CheckDone,
    CheckResult,
    Event,
    RateLimitPaused,
    RateLimitSource,
    ResolvedVia,
    SubmitDone,
    SubmitResult,
    TaskForgotten,
    TaskResolved,
    TaskRetrying,
    TaskTracked,
    TokenWaited,
    WebhookAnswered,
    WebhookReason,
)
from ._hooks import (
    SPAN_CHECK,
    SPAN_DELIVER,
    SPAN_SUBMIT,
    SPAN_TASK,
    SPAN_TRACK,
    Hook,
    Instrumentation,
    SpanKind,
    TaskTracingHook,
    TraceContext,
    TracingHook,
)
from .logging import LoggingHook

__all__ = [
    "CHECK_RESULTS",
    "OTHER",
    "RATE_LIMIT_SOURCES",
    "RESOLVED_VIA",
    "SPAN_CHECK",
    "SPAN_DELIVER",
    "SPAN_SUBMIT",
    "SPAN_TASK",
    "SPAN_TRACK",
    "SUBMIT_RESULTS",
    "WEBHOOK_REASONS",
    "CheckDone",
    "CheckResult",
    "Event",
    "Hook",
    "Instrumentation",
    "LoggingHook",
    "RateLimitPaused",
    "RateLimitSource",
    "ResolvedVia",
    "SpanKind",
    "SubmitDone",
    "SubmitResult",
    "TaskForgotten",
    "TaskResolved",
    "TaskRetrying",
    "TaskTracingHook",
    "TaskTracked",
    "TokenWaited",
    "TraceContext",
    "TracingHook",
    "WebhookAnswered",
    "WebhookReason",
]
