"""`OpenTelemetryHook`: the library's metrics and spans through the OpenTelemetry API.

Needs the ``otel`` extra (``pip install 'async-remote-dispatch[otel]'``): the API only.
Which SDK, exporters and views you install is your application's business; with none,
the API's no-op providers make this hook nearly free.

The metrics are those of `PrometheusHook`, named the OpenTelemetry way: dotted, the unit
in the instrument rather than the name, no ``_total``. An OpenTelemetry Prometheus
exporter turns ``async_dispatch.checks`` back into ``async_dispatch_checks_total`` and
``async_dispatch.check.duration`` (unit ``s``) into ``async_dispatch_check_duration_seconds``.
Metric attributes follow the same rule as Prometheus labels: closed sets, ``"other"`` for
anything else, never a request id.

Spans are another matter: a span is one operation, so it may name its task. Each span
gets the attributes the core passes, prefixed with ``async_dispatch.``
(``async_dispatch.request_id``, ``async_dispatch.attempt``), and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import partial
from typing import Final

from opentelemetry import metrics, trace

from .._version import __version__
from ._metrics import Kind, Metric, MetricHook, Series

__all__ = ["ATTRIBUTE_PREFIX", "OpenTelemetryHook"]

#: The instrumentation scope: what the meter and the tracer are named.
_SCOPE: Final = "async_dispatch"
#: Prepended to each span attribute the core passes, per OpenTelemetry's naming rules.
ATTRIBUTE_PREFIX: Final = "async_dispatch."


class OpenTelemetryHook(MetricHook):
    """Records events as OpenTelemetry metrics, and traces submits and checks.

    Args:
        meter_provider: Where the metrics go; the global one (`metrics.set_meter_provider`)
            by default, looked up lazily, so the hook may be built before the SDK is set up.
        tracer_provider: Where the spans go; the global one by default, likewise.
    """

    __slots__ = ("_tracer",)

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        super().__init__(partial(_series, meter))

    def __repr__(self) -> str:
        return "OpenTelemetryHook()"

    def span(
        self, name: str, attributes: Mapping[str, str | int | float]
    ) -> contextlib.AbstractContextManager[object]:
        """A span named ``name``, child of the current one, made current for the body.

        If the body raises, the span records the exception and ends with an error status;
        the exception goes on to the caller.
        """
        return self._tracer.start_as_current_span(
            name,
            attributes={ATTRIBUTE_PREFIX + key: value for key, value in attributes.items()},
            record_exception=True,
            set_status_on_exception=True,
        )


def _series(meter: metrics.Meter, metric: Metric) -> dict[str | None, Series]:
    """Each series of ``metric`` by label value: its instrument's ``add`` (``record``)
    and one attributes mapping, made now and shared by every event recorded into it."""
    instrument = _instrument(meter, metric)
    add = instrument.record if isinstance(instrument, metrics.Histogram) else instrument.add
    if metric.label is None:
        return {None: (add, None)}
    key = metric.label.name
    return {value: (add, {key: value}) for value in metric.label.every_value}


def _instrument(
    meter: metrics.Meter, metric: Metric
) -> metrics.Counter | metrics.UpDownCounter | metrics.Histogram:
    name, unit, description = metric.otel_name, metric.unit, metric.description
    if metric.kind is Kind.COUNTER:
        return meter.create_counter(name, unit=unit, description=description)
    if metric.kind is Kind.GAUGE:
        return meter.create_up_down_counter(name, unit=unit, description=description)
    return meter.create_histogram(
        name,
        unit=unit,
        description=description,
        explicit_bucket_boundaries_advisory=metric.buckets,
    )
