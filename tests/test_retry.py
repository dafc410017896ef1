"""`RetryPolicy.backoff` stays within its documented bounds, and `Retry-After` is read in
both of its forms."""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_dispatch import RetryPolicy, UsageError
from async_dispatch._retry import MAX_RETRY_AFTER, parse_retry_after


class _Ceiling(random.Random):
    """Always draws the top of the range, to expose the ceiling backoff computes."""

    def uniform(self, a: float, b: float) -> float:
        return b


def documented_ceiling(policy: RetryPolicy, retry: int) -> float:
    """``min(max_delay, initial_delay * multiplier ** (retry - 1))``, in exact arithmetic."""
    if policy.initial_delay == 0:
        return 0.0
    try:
        growth = policy.multiplier ** (retry - 1)
    except OverflowError:
        return policy.max_delay
    return min(policy.max_delay, policy.initial_delay * growth)


delays = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
policies = st.builds(
    RetryPolicy,
    attempts=st.integers(min_value=1, max_value=10),
    initial_delay=delays,
    max_delay=delays,
    multiplier=st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
)


@settings(deadline=None, max_examples=300)
@given(policies, st.integers(min_value=1, max_value=10_000), st.randoms(use_true_random=False))
def test_backoff_is_always_within_zero_and_the_capped_exponential(
    policy: RetryPolicy, retry: int, rng: random.Random
) -> None:
    delay = policy.backoff(retry, rng)
    assert 0 <= delay <= documented_ceiling(policy, retry)
    assert math.isfinite(delay)


@settings(deadline=None, max_examples=200)
@given(policies, st.integers(min_value=1, max_value=10_000))
def test_the_ceiling_is_exactly_the_capped_exponential(policy: RetryPolicy, retry: int) -> None:
    assert policy.backoff(retry, _Ceiling()) == pytest.approx(documented_ceiling(policy, retry))


@pytest.mark.parametrize(
    ("retry", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (10**6, 10.0)]
)
def test_the_default_policy_doubles_from_half_a_second_up_to_ten(
    retry: int, ceiling: float
) -> None:
    assert RetryPolicy().backoff(retry, _Ceiling()) == ceiling


def test_backoff_is_jittered() -> None:
    rng = random.Random(7)
    draws = {RetryPolicy().backoff(4, rng) for _ in range(50)}
    assert len(draws) == 50
    assert min(draws) < 1.0 < 3.0 < max(draws)


def test_zero_delays_mean_no_waiting() -> None:
    policy = RetryPolicy(attempts=3, initial_delay=0, max_delay=0)
    assert [policy.backoff(n) for n in range(1, 10)] == [0.0] * 9
    # ...but a 429 still pauses the key: only `instant()` makes that 0.
    assert policy.rate_limit_pause(None, 1) == 1.0
    assert policy.rate_limit_pause(30.0, 1) == 30.0


def test_an_instant_policy_never_waits_but_still_retries() -> None:
    policy = RetryPolicy.instant(attempts=5)
    assert policy.attempts == 5
    assert [policy.backoff(n) for n in range(1, 10)] == [0.0] * 9
    assert {policy.rate_limit_pause(hint, streak) for hint in (None, 0.0, 30.0, 1e9)
            for streak in (1, 2, 50)} == {0.0}  # fmt: skip
    # Production policies keep their floor: a 429 always slows the key down.
    with pytest.raises(UsageError, match="rate_limit_floor"):
        RetryPolicy(rate_limit_floor=0)


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 0},
        {"initial_delay": -1.0},
        {"max_delay": math.inf},
        {"multiplier": math.nan},
        {"max_delay": -0.1},
    ],
)
def test_nonsense_policies_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        RetryPolicy(**options)  # type: ignore[arg-type]


# -- Retry-After ----------------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("86400", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: go now
        ("Thu, 22 Oct 2015 07:28:00 GMT", MAX_RETRY_AFTER),
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),  # the obsolete RFC 850 form
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "Wed, 99 Foo 2015"])
def test_an_absent_or_unusable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_an_http_date_is_measured_from_the_current_time_by_default() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("Fri, 01 Jan 9999 00:00:00 GMT") == MAX_RETRY_AFTER


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=40))
def test_any_retry_after_is_none_or_a_bounded_delay(header: str) -> None:
    seconds = parse_retry_after(header, now=NOW)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER
