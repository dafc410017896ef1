"""A server whose `Retry-After` is useless or extreme (0, negative, a date, a week): pauses
stay within a floor and a cap, and a call never blocks past its budget (first staged in #11)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, MutableMapping
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from _foundation_helpers import (
    KEY,
    PAUSING,
    SUCCESS,
    reply,
    service,
)
from _logs import capture_logs
from async_dispatch import (
    RateLimitedError,
    RetryPolicy,
    TokenBucket,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as events:
        yield events


# -- 9. Retry-After extremes ----------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, 0.0, -1.0, 0.001, 0.5, math.nan])
def test_a_useless_retry_after_gets_a_floor_that_doubles(hint: float | None) -> None:
    policy = RetryPolicy()
    pauses = [policy.rate_limit_pause(hint, n) for n in range(1, 10)]
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@pytest.mark.parametrize(("hint", "pause"), [(1.0, 1.0), (30.0, 30.0), (999_999.0, 300.0)])
def test_a_usable_retry_after_is_honoured_up_to_a_cap(hint: float, pause: float) -> None:
    assert RetryPolicy().rate_limit_pause(hint, 1) == pause
    assert RetryPolicy().rate_limit_pause(hint, 20) == pause


def test_the_pause_never_overflows() -> None:
    assert RetryPolicy().rate_limit_pause(None, 10**9) == 60
    assert RetryPolicy().rate_limit_pause(math.inf, 1) == 300


@pytest.mark.trio_only
@pytest.mark.virtual_clock
class TestOnVirtualTime:
    """Pauses measured on trio's MockClock: minutes pass in microseconds, exactly."""

    @pytest.mark.parametrize("hint", ["0", "-1", "0.001", "Wed, 21 Oct 2015 07:28:00 GMT"])
    async def test_useless_retry_afters_slow_the_key_down(
        self, hint: str, logs: list[MutableMapping[str, Any]]
    ) -> None:
        times: list[float] = []

        def limited(request: httpx.Request) -> httpx.Response:
            times.append(anyio.current_time())
            return httpx.Response(429, headers={"Retry-After": hint})

        fake = service(limited)
        policy = RetryPolicy(attempts=100, max_wait=3)
        async with fake.client(retry=policy) as client:
            with pytest.raises(RateLimitedError) as caught:
                await client.get_status("req_1")
        assert len(times) <= 3  # 63 before: no pause grew
        assert caught.value.retry_after == 4  # the next pause: 1, 2, then 4 s
        # One warning per pause taken; the 4 s one is the caller's to take (no bucket).
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [(e["seconds"], e["source"]) for e in warnings] == [(1, "client"), (2, "client")]

    async def test_a_huge_retry_after_does_not_block_a_call(self) -> None:
        fake = service(reply(429, headers={"Retry-After": "999999"}), reply(200, SUCCESS))
        bucket = TokenBucket(rate=100, burst=10)
        async with fake.client(retry=RetryPolicy(), timeout=30, bucket=bucket) as client:
            start = anyio.current_time()
            with pytest.raises(RateLimitedError) as caught:
                await client.get_status("req_1")
            assert anyio.current_time() - start < 1
            assert caught.value.retry_after == 300
            assert bucket.paused_for() == pytest.approx(300)
            # While the key is paused, a call that cannot wait that long sends nothing.
            with pytest.raises(RateLimitedError, match="paused"):
                await client.submit("/Operator go")
            assert anyio.current_time() - start < 1
        assert len(fake.requests) == 1

    async def test_a_retry_after_within_the_budget_is_waited(self) -> None:
        fake = service(reply(429, headers={"Retry-After": "20"}), reply(200, SUCCESS))
        async with fake.client(retry=RetryPolicy(max_wait=60)) as client:
            start = anyio.current_time()
            await client.get_status("req_1")
        assert anyio.current_time() - start == pytest.approx(20)

    async def test_wait_sleeps_through_a_pause_longer_than_a_call_may_wait(self) -> None:
        fake = service(reply(429, headers={"Retry-After": "120"}), reply(200, SUCCESS))
        async with fake.client(retry=PAUSING) as client:
            start = anyio.current_time()
            status = await client.wait("req_1", timeout=600)
        assert status.text == SUCCESS["response"]["text"]
        assert anyio.current_time() - start == pytest.approx(120)

    async def test_concurrent_429s_for_the_same_pause_log_one_warning(
        self, logs: list[MutableMapping[str, Any]]
    ) -> None:
        async def slow_429(request: httpx.Request) -> httpx.Response:
            await anyio.sleep(0.1)  # all ten are in flight when the 429s arrive
            return httpx.Response(429, headers={"Retry-After": "5"})

        fake = service(slow_429)  # type: ignore[arg-type]
        bucket = TokenBucket(rate=1000, burst=20)
        async with fake.client(retry=RetryPolicy(attempts=2), bucket=bucket) as client:

            async def call() -> None:
                with contextlib.suppress(RateLimitedError):
                    await client.get_status("req_1")

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(call)
        assert len(fake.requests) == 20
        # The first round of 429s starts one pause; the second round, after it, another.
        assert len([e for e in logs if e["event"] == "rate_limited"]) == 2


# -- issue #14: tracing a submit ------------------------------------------------------------


async def test_tracing_emits_events_for_a_submit(logs: list[MutableMapping[str, Any]]) -> None:
    fake = service(reply(429, headers={"Retry-After": "0"}), reply(202, {"requestId": "req_9"}))
    async with fake.client(retry=RetryPolicy(rate_limit_floor=0.001)) as client:
        assert await client.submit("/Operator go") == "req_9"
    debug = [e for e in logs if e["log_level"] == "debug"]
    # "submitted" is the logging hook's line for `SubmitDone`: one per submit.
    assert [e["event"] for e in debug] == ["retrying", "submitted"]
    assert debug[1]["request_id"] == "req_9"
    assert debug[1]["result"] == "accepted"
    assert KEY not in repr(logs)
