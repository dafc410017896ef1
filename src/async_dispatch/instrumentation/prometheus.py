"""`PrometheusHook`: counters and histograms in a `prometheus_client` registry.

Needs the ``prometheus`` extra (``pip install 'async-remote-dispatch[prometheus]'``).

Every label has a closed set of values, spelled out in `async_dispatch.instrumentation`'s
events; a value outside its set is counted as ``"other"``. No label ever holds a request
id, a key, a URL or anything else unbounded: a metric series per task would turn a
dashboard into a memory leak on the Prometheus server.

Every labelled series is created at zero when the hook is built, so ``rate()`` and alerts
see a series from the first scrape rather than from its first increment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from .._errors import UsageError
from .._outcome import OutcomeKind
from ._buckets import DETECTION_DELAY_BUCKETS, REQUEST_DURATION_BUCKETS, TOKEN_WAIT_BUCKETS
from ._events import (
    CHECK_RESULTS,
    OTHER,
    RATE_LIMIT_SOURCES,
    RESOLVED_VIA,
    SUBMIT_RESULTS,
    WEBHOOK_REASONS,
    CheckDone,
    Event,
    RateLimitPaused,
    SubmitDone,
    TaskForgotten,
    TaskResolved,
    TaskTracked,
    TokenWaited,
    WebhookAnswered,
)

__all__ = ["PrometheusHook"]

_OUTCOME_KINDS: Final = tuple(kind.value for kind in OutcomeKind)

_Child = TypeVar("_Child", bound=MetricWrapperBase)


class PrometheusHook:
    """Counts events as Prometheus metrics (names in ``docs/instrumentation.md``).

    Build one per process and share it among clients: the metrics are registered once,
    in ``registry``, when the hook is built. A second hook with the same ``namespace`` in
    the same registry raises `UsageError` (nothing of it stays registered) rather than
    silently splitting or double-counting the series; give tests their own
    `CollectorRegistry`.

    Args:
        registry: Where to register the metrics; `prometheus_client.REGISTRY`, the one
            its exposition helpers serve, by default.
        namespace: The prefix of every metric name.
    """

    __slots__ = (
        "_check_duration",
        "_checks",
        "_detection_delay",
        "_outcomes",
        "_pauses",
        "_submit_duration",
        "_submits",
        "_token_wait",
        "_tracked",
        "_webhooks",
        "namespace",
        "registry",
    )

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "async_dispatch"
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        registered: list[MetricWrapperBase] = []

        def register(metric: _Child) -> _Child:
            registered.append(metric)
            return metric

        common: dict[str, Any] = {"namespace": namespace, "registry": self.registry}
        try:
            checks = register(
                Counter("checks", "Status checks, by what they learned.", ["result"], **common)
            )
            check_duration = register(
                Histogram(
                    "check_duration_seconds",
                    "Time a status check took, retries included, by result.",
                    ["result"],
                    buckets=REQUEST_DURATION_BUCKETS,
                    unit="seconds",
                    **common,
                )
            )
            submits = register(Counter("submits", "Submits, by result.", ["result"], **common))
            submit_duration = register(
                Histogram(
                    "submit_duration_seconds",
                    "Time a submit took, by result.",
                    ["result"],
                    buckets=REQUEST_DURATION_BUCKETS,
                    unit="seconds",
                    **common,
                )
            )
            outcomes = register(
                Counter("outcomes", "Outcomes yielded, by kind.", ["kind"], **common)
            )
            detection_delay = register(
                Histogram(
                    "detection_delay_seconds",
                    "Time from a task's completedAt to our noticing it, by how we did.",
                    ["via"],
                    buckets=DETECTION_DELAY_BUCKETS,
                    unit="seconds",
                    **common,
                )
            )
            tracked = register(Gauge("tracked_tasks", "Tasks being tracked now.", **common))
            pauses = register(
                Counter(
                    "rate_limit_pauses",
                    "Shared pauses caused by rate-limited answers, by whose request drew them.",
                    ["source"],
                    **common,
                )
            )
            token_wait = register(
                Histogram(
                    "token_wait_seconds",
                    "Time one acquirer waited for a rate-limit token (waits only).",
                    buckets=TOKEN_WAIT_BUCKETS,
                    unit="seconds",
                    **common,
                )
            )
            webhooks = register(
                Counter(
                    "webhook_answers",
                    "Webhook deliveries answered, by reason.",
                    ["reason"],
                    **common,
                )
            )
        except ValueError as exc:  # "Duplicated timeseries in CollectorRegistry"
            for metric in registered:
                self.registry.unregister(metric)
            raise UsageError(
                f"metrics named {namespace}_* are already registered in this registry: "
                "build one PrometheusHook and share it, or pass a registry of your own"
            ) from exc

        # One child per label value, made now: no label lookup and no allocation per event.
        self._checks = _children(checks, "result", CHECK_RESULTS)
        self._check_duration = _children(check_duration, "result", CHECK_RESULTS)
        self._submits = _children(submits, "result", SUBMIT_RESULTS)
        self._submit_duration = _children(submit_duration, "result", SUBMIT_RESULTS)
        self._outcomes = _children(outcomes, "kind", _OUTCOME_KINDS)
        self._detection_delay = _children(detection_delay, "via", RESOLVED_VIA)
        self._pauses = _children(pauses, "source", RATE_LIMIT_SOURCES)
        self._webhooks = _children(webhooks, "reason", WEBHOOK_REASONS)
        self._tracked = tracked
        self._token_wait = token_wait

    def __repr__(self) -> str:
        return f"PrometheusHook(namespace={self.namespace!r})"

    def __call__(self, event: Event) -> None:
        if isinstance(event, CheckDone):
            _pick(self._checks, event.result).inc()
            _pick(self._check_duration, event.result).observe(event.latency)
        elif isinstance(event, TaskResolved):
            _pick(self._outcomes, event.kind.value).inc()
            if event.detection_delay is not None:
                _pick(self._detection_delay, event.via).observe(event.detection_delay)
            if event.final:
                self._tracked.dec()
        elif isinstance(event, TaskTracked):
            self._tracked.inc()
        elif isinstance(event, TaskForgotten):
            self._tracked.dec()
        elif isinstance(event, TokenWaited):
            self._token_wait.observe(event.seconds)
        elif isinstance(event, SubmitDone):
            _pick(self._submits, event.result).inc()
            _pick(self._submit_duration, event.result).observe(event.latency)
        elif isinstance(event, RateLimitPaused):
            _pick(self._pauses, event.source).inc()
        elif isinstance(event, WebhookAnswered):
            _pick(self._webhooks, event.reason).inc()


def _children(metric: _Child, label: str, values: Iterable[str]) -> dict[str, _Child]:
    """The metric's child for each value of its one label, ``"other"`` included."""
    return {value: metric.labels(**{label: value}) for value in (*values, OTHER)}


def _pick(children: Mapping[str, _Child], value: str) -> _Child:
    """The child for ``value``, or the ``"other"`` one: cardinality stays bounded."""
    child = children.get(value)
    return children[OTHER] if child is None else child
