"""Hooks, and the one object the core talks to: `Instrumentation`.

The core never knows which integrations are installed. It holds one `Instrumentation`,
tests `enabled` before building an event, calls `emit()` with a plain event, and wraps a
submit or a status check in `span()`. A task's own work goes through `task_span()`
instead, with the `TraceContext` that `capture()` gave when the task was tracked: the
core stores that mapping with the task and hands it back, opaque, so a tracer can follow
one task across processes without the core importing it. Everything else (which
metrics, which logger, which tracer) is chosen at configuration time by the list of
hooks.

Two promises make that safe on a hot path that handles thousands of checks a minute:

- With no hooks, the core pays for one attribute test per event and, for spans, returns
  one shared do-nothing context manager: nothing is allocated, nothing is called.
- A hook that raises never breaks the caller: `emit()` and `span()` catch the exception,
  log it once per hook, and carry on. Observability must not turn into an outage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Final, Literal, Protocol, TypeAlias, runtime_checkable

from .._log import logger
from ._events import Event
from .logging import LoggingHook

__all__ = [
    "SPAN_CHECK",
    "SPAN_DELIVER",
    "SPAN_SUBMIT",
    "SPAN_TASK",
    "SPAN_TRACK",
    "Hook",
    "Instrumentation",
    "SpanKind",
    "TaskTracingHook",
    "TraceContext",
    "TracingHook",
]

#: The span around one `DispatchClient.submit`.
SPAN_SUBMIT: Final = "async_dispatch.submit"
#: The span around one status check (one `get_status`, its retries included).
SPAN_CHECK: Final = "async_dispatch.check"
#: The span that starts a task's trace: around `Poller.submit` (its `SPAN_SUBMIT` inside)
#: or `Poller.track`. Its context is what travels with the task (`TraceContext`).
SPAN_TRACK: Final = "async_dispatch.track"
#: The span around one webhook delivery (`Poller.deliver`) of a tracked task.
SPAN_DELIVER: Final = "async_dispatch.deliver"
#: A task's life, from `SPAN_TRACK` to its final outcome, made by the process that hands
#: that outcome to the application.
SPAN_TASK: Final = "async_dispatch.task"

#: A task's trace context, as W3C Trace Context headers (``traceparent`` and, when there
#: is one, ``tracestate``). The core stores it with the task and hands it back on the
#: outcome without reading it: which tracer made it is the hooks' business.
TraceContext: TypeAlias = Mapping[str, str]
#: What a task span is to a tracer, as OpenTelemetry's span kinds say: the task's
#: creation (``producer``), a status request (``client``), a webhook that reached us
#: (``consumer``), or neither (``internal``).
SpanKind: TypeAlias = Literal["internal", "producer", "consumer", "client"]

#: Returned by `Instrumentation.span` when no hook traces. A `nullcontext` holds no state
#: between `__enter__` and `__exit__`, so one instance can be entered any number of times,
#: concurrently, from any task.
_NO_SPAN: Final = contextlib.nullcontext()


@runtime_checkable
class Hook(Protocol):
    """Anything called with each event: a function, or an object with ``__call__``.

    A hook runs synchronously on the event loop, inside the core's hot path, so it must be
    quick and must not block: count, log, or hand the event to a queue. It must not raise
    either; if it does anyway, `Instrumentation` logs the first failure of each hook and
    keeps calling it. Ignore the event types you do not know: new ones may appear.
    """

    def __call__(self, event: Event, /) -> None: ...


@runtime_checkable
class TracingHook(Hook, Protocol):
    """A hook that can also wrap a submit or a check in a span.

    `span` must return a context manager that neither swallows the body's exception nor
    raises one of its own; it is entered and left in the same task.
    """

    def span(
        self, name: str, attributes: Mapping[str, str | int | float]
    ) -> contextlib.AbstractContextManager[object]: ...


@runtime_checkable
class TaskTracingHook(TracingHook, Protocol):
    """A tracing hook that can also follow a task across its checks and processes.

    `capture` names the current span as a `TraceContext`, which the core stores with the
    task (in memory, in Redis, in SQLite) and passes back to `task_span` for every later
    span of that task, in whatever process it runs: that is how one trace follows a task
    from the request that submitted it to the code that consumes its outcome.
    """

    def capture(self) -> dict[str, str] | None:
        """The current span's context as W3C Trace Context headers (None: no span)."""
        ...

    def task_span(
        self,
        name: str,
        attributes: Mapping[str, str | int | float],
        *,
        trace: TraceContext | None,
        kind: SpanKind,
    ) -> contextlib.AbstractContextManager[object]:
        """Like `TracingHook.span`, but part of the task whose context is `trace` (None:
        a task tracked before tracing was on, or by a process without a tracer)."""
        ...


class Instrumentation:
    """The hooks a client (and every poller built on it) reports to.

    Build it once at configuration time; it is immutable afterwards, so the core can test
    `enabled` without a lock or a lookup.

    Args:
        hooks: Called in order with every event. Those that also implement `TracingHook`
            get a span around every submit and check.
    """

    __slots__ = (
        "_debug_only",
        "_failed",
        "_hooks",
        "_ignored",
        "_task_tracers",
        "_tracers",
        "enabled",
        "tracing",
    )

    #: True if any hook is installed. The core tests it before building an event, so a
    #: client without hooks allocates nothing for instrumentation.
    enabled: bool

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._hooks: tuple[Hook, ...] = tuple(hooks)
        self._tracers: tuple[TracingHook, ...] = tuple(
            hook for hook in self._hooks if isinstance(hook, TracingHook)
        )
        # ids of the tracers that follow tasks: tested per span, so not an isinstance().
        self._task_tracers: frozenset[int] = frozenset(
            id(hook) for hook in self._tracers if isinstance(hook, TaskTracingHook)
        )
        self.enabled = bool(self._hooks)
        # Event types that no hook wants: a hook may say what it ignores with an
        # `ignores` attribute (a collection of event types), so the core can skip
        # building events per task that nobody reads.
        self._ignored: frozenset[type] = (
            frozenset.intersection(
                *(frozenset(getattr(hook, "ignores", ())) for hook in self._hooks)
            )
            if self._hooks
            else frozenset()
        )
        # Event types that the hooks which do not ignore them read only while the library
        # logger has debug enabled (a hook says so with a `debug_only` collection): the
        # core builds those only then (see `only_when_debugging`).
        self._debug_only: frozenset[type] = (
            frozenset.intersection(
                *(
                    frozenset(getattr(hook, "ignores", ()))
                    | frozenset(getattr(hook, "debug_only", ()))
                    for hook in self._hooks
                )
            )
            - self._ignored
            if self._hooks
            else frozenset()
        )
        #: True if any hook traces: `span()` then costs more than a shared no-op.
        self.tracing = bool(self._tracers)
        # id() of each hook whose failure was logged already. Hooks need not be hashable;
        # the tuple above keeps them alive, so their ids stay theirs.
        self._failed: set[int] = set()

    def wants(self, event_type: type) -> bool:
        """Whether any hook wants events of `event_type` (asked once, at set-up)."""
        return self.enabled and event_type not in self._ignored

    def only_when_debugging(self, event_type: type) -> bool:
        """Whether the hooks that want `event_type` read it only while the library logger
        has debug enabled (`_log.debug_enabled()`): then building one is pointless unless
        it has. Asked once, at set-up; the logger's level is asked per event."""
        return event_type in self._debug_only

    @classmethod
    def default(cls) -> Instrumentation:
        """What a client reports to unless told otherwise: the logging hook only."""
        return cls([LoggingHook()])

    @property
    def hooks(self) -> tuple[Hook, ...]:
        """The installed hooks, in call order."""
        return self._hooks

    def __repr__(self) -> str:
        return f"Instrumentation(hooks={list(self._hooks)!r})"

    def emit(self, event: Event) -> None:
        """Hand `event` to every hook in turn. Never raises (`Exception`s, that is)."""
        for hook in self._hooks:
            try:
                hook(event)
            except Exception as exc:
                self._hook_failed(hook, exc)

    def span(
        self, name: str, **attributes: str | int | float
    ) -> contextlib.AbstractContextManager[object]:
        """A context manager that wraps its body in one span per tracing hook.

        With no tracing hook this returns the same shared no-op object every time: no
        allocation, no call (the ``**attributes`` dict Python builds for the call is the
        only cost; test `tracing` first to skip even that). The spans nest in hook order,
        the outermost a child of the span current when the body starts (the caller's own
        span, where there is one). What ``as`` receives is unspecified: spans are for
        tracers, the core has nothing to do with them.

        Attributes are facts about this one call that are safe to export: ``request_id``
        and ``attempt`` are the ones the core sends. Never the API key, never a body.
        """
        if not self._tracers:
            return _NO_SPAN
        return _Spans(self, name, attributes)

    def task_span(
        self,
        name: str,
        trace: TraceContext | None,
        kind: SpanKind,
        **attributes: str | int | float,
    ) -> contextlib.AbstractContextManager[object]:
        """`span()` for one task's work: a `TaskTracingHook` makes it part of the task's
        trace (`trace`, what `capture()` gave when the task was tracked); any other
        tracing hook gets a plain `span()`. The shared no-op without tracing hooks."""
        if not self._tracers:
            return _NO_SPAN
        return _Spans(self, name, attributes, trace, kind)

    def capture(self) -> dict[str, str] | None:
        """The current span as a `TraceContext`, from the first `TaskTracingHook` (one
        context travels with a task); None without one, or if it fails."""
        if not self._task_tracers:
            return None
        for tracer in self._tracers:
            if id(tracer) in self._task_tracers:
                try:
                    return tracer.capture()  # type: ignore[attr-defined, no-any-return]
                except Exception as exc:
                    self._hook_failed(tracer, exc)
                return None
        return None

    def _hook_failed(self, hook: object, exc: Exception) -> None:
        """Log the first failure of each hook; a broken hook would otherwise flood logs."""
        if id(hook) in self._failed:
            return
        self._failed.add(id(hook))
        logger.error(
            "instrumentation_hook_failed",
            hook=repr(hook),
            error=type(exc).__name__,
            exc_info=exc,
        )


class _Spans:
    """The spans of every tracing hook around one body, each guarded against its hook.

    A tracer that fails to open a span loses that span; one that fails to close it is
    logged. Neither reaches the body, and the body's own exception reaches every span
    (so each records it) and then the caller, unchanged.
    """

    __slots__ = ("_attributes", "_entered", "_instrumentation", "_kind", "_name", "_trace")

    def __init__(
        self,
        instrumentation: Instrumentation,
        name: str,
        attributes: Mapping[str, str | int | float],
        trace: TraceContext | None = None,
        kind: SpanKind | None = None,
    ) -> None:
        self._instrumentation = instrumentation
        self._name = name
        self._attributes = attributes
        self._trace = trace
        #: None: a plain `span()`, for every tracer alike.
        self._kind = kind
        self._entered: list[tuple[TracingHook, contextlib.AbstractContextManager[object]]] = []

    def __enter__(self) -> None:
        instrumentation, kind = self._instrumentation, self._kind
        for tracer in instrumentation._tracers:
            try:
                if kind is not None and id(tracer) in instrumentation._task_tracers:
                    span = tracer.task_span(  # type: ignore[attr-defined]
                        self._name, self._attributes, trace=self._trace, kind=kind
                    )
                else:
                    span = tracer.span(self._name, self._attributes)
                span.__enter__()
            except Exception as exc:
                self._instrumentation._hook_failed(tracer, exc)
            else:
                self._entered.append((tracer, span))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Innermost first, as nested `with` statements would. Return values are ignored:
        # a span must not swallow the body's exception.
        while self._entered:
            tracer, span = self._entered.pop()
            try:
                span.__exit__(exc_type, exc, tb)
            except BaseException as error:
                if error is exc:  # a span that re-raises the body's exception: fine
                    continue
                if not isinstance(error, Exception):
                    raise
                self._instrumentation._hook_failed(tracer, error)
