"""When to try again, and how long to wait first.

Capped exponential backoff with full jitter (the AWS architecture blog's variant: a
uniform draw between zero and the capped exponential) spreads retries of many clients
evenly instead of in synchronised waves. A `Retry-After` from the service always wins
over our own guess, as long as it is usable (see `RetryPolicy.rate_limit_pause`).
"""

from __future__ import annotations

import email.utils
import math
import random
from datetime import datetime, timezone

import attrs

from ._errors import UsageError
from ._validation import check_int, check_number, check_seconds

__all__ = ["RetryPolicy", "parse_retry_after"]

#: A `Retry-After` longer than this is treated as this: a broken proxy must not be able
#: to park a client for days. Five minutes still honours every per-minute limit.
MAX_RETRY_AFTER = 300.0
#: A 429 without a usable `Retry-After` pauses the key this long, doubling per 429 in a
#: row up to `_PAUSE_CAP`.
_PAUSE_FLOOR = 1.0
_PAUSE_CAP = 60.0


def _seconds(_instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    check_seconds(attribute.name, value, allow_zero=True)


def _positive_seconds(_instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    check_seconds(attribute.name, value)


def _factor(_instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    check_number(attribute.name, value, allow_zero=True)


def _positive_int(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    check_int(attribute.name, value, minimum=1)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How to retry transient failures and how long a 429 pauses the key.

    Two rules live here, each in one method, so the client and the poller cannot drift:

    - `backoff()`: the wait before a retry after a transient failure (5xx, transport
      error, garbled body). The wait before retry *n* (1-based) is a uniform draw from
      ``[0, min(max_delay, initial_delay * multiplier ** (n - 1))]``.
    - `rate_limit_pause()`: how long a 429 (or 408/425) pauses everything sharing the key.

    Args:
        attempts: Tries of one `get_status()`/`submit()` call, the first included.
            ``RetryPolicy(attempts=1)`` switches retries off.
        initial_delay, max_delay, multiplier: The backoff curve (zero delays in tests).
        rate_limit_floor: The first pause after a 429 whose ``Retry-After`` is missing or
            useless (absent, <= 0, a past date, or shorter than this floor); it doubles
            with every 429 in a row, up to `rate_limit_ceiling`. Must be > 0: a 429 must
            always slow the key down. Tests use a tiny floor, not zero.
        rate_limit_ceiling: The most a guessed pause grows to.
        max_retry_after: A usable ``Retry-After`` is honoured up to this many seconds.
        max_wait: The most one `get_status()`/`submit()` call spends waiting between its
            tries, in total (backoff and 429 pauses alike). A wait that would go past it is
            not waited: the call raises the error at hand instead (a `RateLimitedError`
            then carries in `retry_after` the pause the key is under), so a call returns
            within about ``attempts * timeout + max_wait`` seconds, whatever the service
            says. ``0`` means: retry only what needs no waiting.
        waits: False makes every backoff and every 429 pause 0: for tests only, through
            `RetryPolicy.instant()`.
    """

    attempts: int = attrs.field(default=4, validator=_positive_int)
    initial_delay: float = attrs.field(default=0.5, validator=_seconds)
    max_delay: float = attrs.field(default=10.0, validator=_seconds)
    multiplier: float = attrs.field(default=2.0, validator=_factor)
    rate_limit_floor: float = attrs.field(default=1.0, validator=_positive_seconds)
    rate_limit_ceiling: float = attrs.field(default=60.0, validator=_positive_seconds)
    max_retry_after: float = attrs.field(default=MAX_RETRY_AFTER, validator=_positive_seconds)
    max_wait: float = attrs.field(default=60.0, validator=_seconds)
    waits: bool = True

    @classmethod
    def instant(cls, attempts: int = 3) -> RetryPolicy:
        """A policy that retries as it is told but never waits: for tests.

        Every backoff and every 429 pause is 0, a usable ``Retry-After`` included, so a
        test counts retries instead of sleeping through them (stamina's testing mode, as
        a value passed to the client rather than a global switch). Everything else is as
        in production: the attempts, the `max_wait` budget, the 429 streak, the events.
        Never use it against the real service: a 429 must slow the key down, which is
        why no other policy can make that pause 0 (`rate_limit_floor` must be > 0).
        """
        return cls(attempts=attempts, initial_delay=0, max_delay=0, waits=False)

    def __attrs_post_init__(self) -> None:
        if self.rate_limit_ceiling < self.rate_limit_floor:
            raise UsageError(
                f"rate_limit_ceiling ({self.rate_limit_ceiling!r}) must be >= "
                f"rate_limit_floor ({self.rate_limit_floor!r})"
            )
        if self.max_retry_after < self.rate_limit_floor:
            raise UsageError(
                f"max_retry_after ({self.max_retry_after!r}) must be >= "
                f"rate_limit_floor ({self.rate_limit_floor!r})"
            )

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        ceiling = 0.0
        if self.initial_delay > 0 and self.waits:
            try:
                growth = self.multiplier ** max(retry - 1, 0)
            except OverflowError:  # a float power past 1e308 raises instead of giving inf
                growth = math.inf
            ceiling = min(self.max_delay, self.initial_delay * growth)
        return (rng or random).uniform(0.0, ceiling)

    def rate_limit_pause(self, retry_after: float | None, consecutive: int) -> float:
        """Seconds a 429 pauses the whole key: THE rule, for the client and the poller.

        `retry_after` is the service's hint (`parse_retry_after`), `consecutive` how many
        429s in a row the caller has met (1 for the first). A usable hint (at least
        `rate_limit_floor`) is honoured, up to `max_retry_after`: the service knows its
        window better than we can guess it. A useless one (missing, <= 0, a past date,
        nan, or tiny) would let a caller spend its whole budget on 429s, so it is replaced
        by a guess that starts at `rate_limit_floor` and doubles with every 429 in a row,
        up to `rate_limit_ceiling`. The result is never below the floor, except under
        `instant()`, where it is 0.
        """
        if not self.waits:
            return 0.0
        if retry_after is not None and retry_after >= self.rate_limit_floor:
            return min(retry_after, self.max_retry_after)
        streak = min(max(consecutive, 1), 64) - 1
        return min(self.rate_limit_ceiling, self.rate_limit_floor * 2.0**streak)


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
