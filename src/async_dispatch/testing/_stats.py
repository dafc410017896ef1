"""What the simulator saw and did, for tests and benchmarks to assert on.

Counters are plain integers and ``Counter`` objects updated in place by the one event loop
that runs the simulator; reading them from a test (even from another thread, when the
server runs in one) needs no lock.
"""

from __future__ import annotations

from array import array
from collections import Counter
from datetime import datetime
from typing import Any

import attrs

__all__ = ["AcceptedLog", "CompletionTime", "SimulatorStats"]


@attrs.define(slots=True)
class SimulatorStats:
    """Running totals of one simulator run."""

    requests: Counter[str] = attrs.Factory(Counter)
    """Requests by endpoint: ``submit``, ``status``, ``upload_url`` (presigned POSTs),
    ``upload`` (to the bucket), ``sdk_config``, ``other`` (404s and 405s)."""
    responses: Counter[int] = attrs.Factory(Counter)
    """Responses sent, by HTTP status code (dropped connections are not responses)."""
    faults: Counter[str] = attrs.Factory(Counter)
    """Faults injected, by ``Fault`` value (``drop``, ``server_error``, ...)."""
    rate_limited: int = 0
    """429 answers."""
    tasks_created: int = 0
    uploads: int = 0
    """Files the simulated bucket stored."""
    webhooks_sent: int = 0
    """Delivery attempts made (retries and duplicates included)."""
    webhooks_delivered: int = 0
    """Attempts the receiver answered with 2xx."""
    webhooks_failed: int = 0
    """Attempts that got a non-2xx answer or a transport error."""
    webhooks_abandoned: int = 0
    """Deliveries given up after ``max_attempts``."""
    webhooks_dropped: int = 0
    """Deliveries deliberately never sent (``Webhooks.drop``)."""
    webhooks_duplicated: int = 0
    """Deliveries deliberately sent a second time (``Webhooks.duplicate``)."""

    def as_dict(self) -> dict[str, Any]:
        """A plain snapshot, handy for printing a run's summary."""
        return {
            "requests": dict(self.requests),
            "responses": dict(self.responses),
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "tasks_created": self.tasks_created,
            "uploads": self.uploads,
            "webhooks_sent": self.webhooks_sent,
            "webhooks_delivered": self.webhooks_delivered,
            "webhooks_failed": self.webhooks_failed,
            "webhooks_abandoned": self.webhooks_abandoned,
            "webhooks_dropped": self.webhooks_dropped,
            "webhooks_duplicated": self.webhooks_duplicated,
        }


@attrs.frozen
class CompletionTime:
    """When a task finished on the server: in the simulator's loop clock and on the wall.

    Under the same event loop (in-process, or ``serve()`` under asyncio) ``clock`` compares
    directly with ``anyio.current_time()``; across threads or processes compare ``wall``.
    """

    clock: float
    wall: datetime


class AcceptedLog:
    """Loop times of the requests that passed auth and the rate limit, by key.

    Eight bytes a request, so a benchmark can check the busiest window after the fact.
    """

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: dict[str, array[float]] = {}

    def record(self, key: str, t: float) -> None:
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = array("d")
        times.append(t)

    def times(self, key: str | None = None) -> list[float]:
        """Sorted loop times of accepted requests, for one key or for all."""
        if key is not None:
            return list(self._times.get(key, ()))
        return sorted(t for times in self._times.values() for t in times)

    def window_max(self, seconds: float, key: str | None = None) -> int:
        """The most accepted requests within any window ``seconds`` long."""
        times = self.times(key)
        best = start = 0
        for end, t in enumerate(times):
            while t - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best
