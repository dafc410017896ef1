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

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from .._errors import UsageError
from ._metrics import Kind, Metric, MetricHook, Series

__all__ = ["PrometheusHook"]

_CLASSES: Final[Mapping[Kind, type[Counter | Gauge | Histogram]]] = {
    Kind.COUNTER: Counter,
    Kind.HISTOGRAM: Histogram,
    Kind.GAUGE: Gauge,
}


class PrometheusHook(MetricHook):
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

    __slots__ = ("namespace", "registry")

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "async_dispatch"
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        registered: list[MetricWrapperBase] = []

        def series(metric: Metric) -> dict[str | None, Series]:
            made = _register(metric, namespace, self.registry)
            registered.append(made)
            return _series(metric, made)

        try:
            super().__init__(series)
        except ValueError as exc:  # "Duplicated timeseries in CollectorRegistry"
            for metric in registered:
                self.registry.unregister(metric)
            raise UsageError(
                f"metrics named {namespace}_* are already registered in this registry: "
                "build one PrometheusHook and share it, or pass a registry of your own"
            ) from exc

    def __repr__(self) -> str:
        return f"PrometheusHook(namespace={self.namespace!r})"


def _register(
    metric: Metric, namespace: str, registry: CollectorRegistry
) -> Counter | Gauge | Histogram:
    options: dict[str, Any] = {"namespace": namespace, "registry": registry}
    if metric.label is not None:
        options["labelnames"] = [metric.label.name]
    if metric.unit == "s":
        options["unit"] = "seconds"
    if metric.kind is Kind.HISTOGRAM:
        options["buckets"] = metric.buckets
    name = metric.prometheus_name
    return _CLASSES[metric.kind](name, metric.description, **options)


def _series(metric: Metric, made: Counter | Gauge | Histogram) -> dict[str | None, Series]:
    """Each series of ``metric`` by label value, its child made now: every labelled
    series exists from the first scrape, and an event costs no label lookup."""
    if metric.label is None:
        return {None: _moved_by(made)}
    name = metric.label.name
    return {value: _moved_by(made.labels(**{name: value})) for value in metric.label.every_value}


def _moved_by(child: Counter | Gauge | Histogram) -> Series:
    return (child.observe if isinstance(child, Histogram) else child.inc), None
