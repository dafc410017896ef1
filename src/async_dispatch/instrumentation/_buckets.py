"""Histogram bucket boundaries, in seconds, shared by the Prometheus and OTel hooks.

Each quantity gets boundaries spanning what it actually ranges over, so a dashboard can
tell a fast check from a slow one and a webhook's latency from a polling interval.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DETECTION_DELAY_BUCKETS", "REQUEST_DURATION_BUCKETS", "TOKEN_WAIT_BUCKETS"]

#: A check or submit: a few milliseconds on a good day, tens of seconds when the client's
#: own retries back off through 5xx answers or a 429's ``Retry-After``.
REQUEST_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: From ``completedAt`` to our noticing: sub-second by webhook, up to the polling interval
#: (which grows with a task's age) by polling.
DETECTION_DELAY_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
#: Waiting for a token: milliseconds while the bucket refills, up to minutes while a 429
#: pauses the key.
TOKEN_WAIT_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
