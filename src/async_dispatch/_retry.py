"""When to try again, and how long to wait first.

Capped exponential backoff with full jitter (the AWS architecture blog's variant: a
uniform draw between zero and the capped exponential) spreads retries of many clients
evenly instead of in synchronised waves. A `Retry-After` from the service always wins
over our own guess.
"""

from __future__ import annotations

import email.utils
import math
import random
from datetime import datetime, timezone

import attrs

from ._errors import UsageError

__all__ = ["RetryPolicy", "parse_retry_after"]

#: A `Retry-After` longer than this is treated as this: a broken proxy must not be able
#: to park a client for days.
MAX_RETRY_AFTER = 300.0
#: A 429 without a usable `Retry-After` pauses the key this long, doubling per 429 in a
#: row up to `_PAUSE_CAP`.
_PAUSE_FLOOR = 1.0
_PAUSE_CAP = 60.0


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0 or math.isinf(value):
        raise UsageError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _positive_int(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise UsageError(f"{attribute.name} must be >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How `DispatchClient` retries transient failures of a single logical call.

    `attempts` counts every try, the first included. The wait before retry *n* (1-based) is
    a uniform draw from ``[0, min(max_delay, initial_delay * multiplier ** (n - 1))]``.
    Use ``RetryPolicy(attempts=1)`` to switch retries off, or zero delays in tests.
    """

    attempts: int = attrs.field(default=4, validator=_positive_int)
    initial_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=10.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        ceiling = 0.0
        if self.initial_delay > 0:
            try:
                growth = self.multiplier ** max(retry - 1, 0)
            except OverflowError:  # a float power past 1e308 raises instead of giving inf
                growth = math.inf
            ceiling = min(self.max_delay, self.initial_delay * growth)
        return (rng or random).uniform(0.0, ceiling)

    def rate_limit_pause(self, retry_after: float | None, consecutive: int) -> float:
        """How long a 429 pauses the whole key: the one rule, for client and poller alike.

        `consecutive` counts the 429s met in a row (1 for the first). A usable
        `Retry-After` is honoured (up to `MAX_RETRY_AFTER`); a missing or useless one
        (zero, negative, a past date) gets a floor that doubles with each 429 in a row,
        so a 429 always slows the key down.
        """
        floor = min(_PAUSE_CAP, _PAUSE_FLOOR * 2.0 ** min(max(consecutive, 1) - 1, 16))
        if retry_after is None or not retry_after >= _PAUSE_FLOOR:
            return floor
        return min(retry_after, MAX_RETRY_AFTER)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a `Retry-After` header, or None when absent or unusable.

    Both forms of RFC 9110 are understood: delay-seconds (``"120"``; fractions tolerated)
    and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``). Dates in the past mean zero.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
