"""The ways of tracking tasks that the benchmark compares, on the same ids and server.

Every contender gets the same `Setting` (times in *simulated* seconds, multiplied by
`scale` for the clock) and records what it saw in a `Detections`. They share one HTTP
stack: httpx over `default_transport()`, the transport `DispatchClient` uses, so the
differences measured are those of the polling logic.

- `naive`: the official SDK's pattern: one coroutine per task, a fixed 3-5 s sleep between
  polls, no rate limit, no retries (any non-200 answer or transport error loses the task).
- `careful`: what a careful engineer writes by hand: one coroutine per task, one shared
  `aiolimiter.AsyncLimiter`, intervals growing 1.5x with jitter, exponential backoff with
  full jitter on failures, and `Retry-After` honoured (by the coroutine that got the 429).
- `poller_default` / `poller_tuned`: `async_dispatch.Poller` with its defaults (time-scaled)
  and tuned to the server's limit.
- `raw`: the ceiling: a given number of GETs at a given concurrency, no logic at all.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import attrs
import httpx
from aiolimiter import AsyncLimiter

from async_dispatch import DispatchClient, OutcomeKind, Poller, RetryPolicy
from async_dispatch._client import DEFAULT_MAX_CONNECTIONS
from async_dispatch._transport import default_transport

from ._measure import Detections

__all__ = ["CONTENDERS", "Contender", "Setting", "raw"]

KEY: Final = "bench-key"
_TERMINAL: Final = frozenset({"success", "error"})


@attrs.frozen
class Setting:
    """One workload as every contender sees it. Times are simulated seconds."""

    base_url: str
    scale: float
    #: The server's limit, requests per simulated second, and its burst.
    rate: float
    burst: int
    deadline: float = 600.0

    def real(self, simulated: float) -> float:
        return simulated * self.scale

    @property
    def real_rate(self) -> float:
        return self.rate / self.scale

    @property
    def client_burst(self) -> int:
        """Half the server's burst: requests sent at exactly the server's rate arrive with
        network jitter, and a bucket of the same size as the server's would turn every
        early arrival into a 429. The slack absorbs it; the sustained rate is unchanged."""
        return max(1, self.burst // 2)

    def status_url(self, request_id: str) -> str:
        return f"{self.base_url}/remote-dispatch/responses/{request_id}"


Contender = Callable[[Setting, list[str], Detections], Awaitable[None]]


def _http() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=default_transport(max_connections=DEFAULT_MAX_CONNECTIONS),
        timeout=30.0,
        headers={"x-api-key": KEY, "accept": "application/json"},
    )


async def naive(setting: Setting, ids: list[str], seen: Detections) -> None:
    rng = random.Random(1)

    async def track(request_id: str) -> None:
        url = setting.status_url(request_id)
        with anyio.move_on_after(setting.real(setting.deadline)) as scope:
            while True:
                seen.requests += 1
                try:
                    response = await http.get(url)
                except httpx.TransportError:
                    seen.lost += 1
                    return
                if response.status_code != 200:
                    seen.throttled += response.status_code == 429
                    seen.lost += 1
                    return
                try:
                    body = json.loads(response.content)
                except ValueError:
                    seen.lost += 1
                    return
                if body.get("status") in _TERMINAL:
                    seen.detected(body.get("completedAt"))
                    return
                await anyio.sleep(setting.real(rng.uniform(3.0, 5.0)))
        if scope.cancelled_caught:
            seen.timed_out += 1
            seen.timed_out_ids.append(request_id)

    async with _http() as http, anyio.create_task_group() as tg:
        for request_id in ids:
            tg.start_soon(track, request_id)


#: The hand-rolled contender's schedule, in simulated seconds.
_CAREFUL_FIRST: Final = 2.0
_CAREFUL_GROWTH: Final = 1.5
_CAREFUL_MAX: Final = 10.0
_CAREFUL_BACKOFF: Final = 0.5
_CAREFUL_BACKOFF_CAP: Final = 30.0


async def careful(setting: Setting, ids: list[str], seen: Detections) -> None:
    # A bucket of `burst` tokens dripping at `rate`: aiolimiter's (max_rate, time_period).
    burst = setting.client_burst
    limiter = AsyncLimiter(burst, burst / setting.real_rate)
    rng = random.Random(2)

    def jittered(simulated: float) -> float:
        return setting.real(simulated) * rng.uniform(0.8, 1.2)

    def backoff(errors: int) -> float:
        cap = min(_CAREFUL_BACKOFF_CAP, _CAREFUL_BACKOFF * 2 ** min(errors, 16))
        return setting.real(rng.uniform(0, cap))

    async def track(request_id: str) -> None:
        url = setting.status_url(request_id)
        interval = _CAREFUL_FIRST
        errors = 0
        with anyio.move_on_after(setting.real(setting.deadline)) as scope:
            await anyio.sleep(jittered(interval))
            while True:
                async with limiter:
                    seen.requests += 1
                    try:
                        response = await http.get(url)
                    except httpx.TransportError:
                        response = None
                status = response.status_code if response is not None else 0
                body = None
                if status == 200 and response is not None:
                    try:
                        body = json.loads(response.content)
                    except ValueError:
                        body = None
                if status == 404:
                    seen.lost += 1
                    return
                if status == 429 and response is not None:
                    seen.throttled += 1
                    errors += 1
                    retry_after = response.headers.get("retry-after", "")
                    wait = float(retry_after) if retry_after.isdigit() else backoff(errors)
                    await anyio.sleep(wait)
                    continue
                if not isinstance(body, dict) or "status" not in body:
                    errors += 1
                    await anyio.sleep(backoff(errors))
                    continue
                errors = 0
                if body["status"] in _TERMINAL:
                    seen.detected(body.get("completedAt"))
                    return
                await anyio.sleep(jittered(interval))
                interval = min(_CAREFUL_MAX, interval * _CAREFUL_GROWTH)
        if scope.cancelled_caught:
            seen.timed_out += 1
            seen.timed_out_ids.append(request_id)

    async with _http() as http, anyio.create_task_group() as tg:
        for request_id in ids:
            tg.start_soon(track, request_id)


def _scaled_retry(setting: Setting) -> RetryPolicy:
    """The poller's retry waits on the simulated clock, like every other time it is given.

    A failed check is retried after `RetryPolicy.backoff()`, and a 429 without a usable
    ``Retry-After`` pauses for `rate_limit_floor` onwards: real seconds unless scaled.
    Left at their defaults they would be 20 times longer, in simulated time, than the
    `careful` contender's (whose backoff is scaled), and the faults run would measure the
    clocks, not the polling. The defaults' shape is kept; only the unit changes.
    ``attempts=1``: a failed check goes back to the schedule instead of retrying in place.
    """
    defaults = RetryPolicy()
    return RetryPolicy(
        attempts=1,
        initial_delay=setting.real(defaults.initial_delay),
        max_delay=setting.real(defaults.max_delay),
        rate_limit_floor=setting.real(defaults.rate_limit_floor),
        rate_limit_ceiling=setting.real(defaults.rate_limit_ceiling),
    )


async def _poller(
    setting: Setting, ids: list[str], seen: Detections, *, tuned: bool, transport: str = "default"
) -> None:
    if tuned:
        options = {
            "rate": setting.real_rate,
            "burst": setting.client_burst,
            "initial_interval": setting.real(5.0),
            "max_interval": setting.real(10.0),
            "max_in_flight": 16,
        }
    else:  # the constructor's defaults, on the simulated clock
        options = {
            "rate": 10.0 / setting.scale,
            "burst": 10,
            "initial_interval": setting.real(2.0),
            "max_interval": setting.real(10.0),
        }
    http = None
    if transport == "httpx":
        from async_dispatch._transport import httpx_transport

        http = httpx.AsyncClient(
            transport=httpx_transport(max_connections=DEFAULT_MAX_CONNECTIONS), timeout=30.0
        )
    client = DispatchClient(
        api_key=KEY, base_url=setting.base_url, http_client=http, retry=_scaled_retry(setting)
    )
    try:
        async with (
            client,
            Poller(client, deadline=setting.real(setting.deadline), **options) as poller,  # type: ignore[arg-type]
        ):
            await poller.track_many(ids)
            async for outcome in poller:
                if outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR):
                    seen.detected(outcome.status.completed_at if outcome.status else None)
                elif outcome.kind is OutcomeKind.TIMED_OUT:
                    seen.timed_out += 1
                    seen.timed_out_ids.append(outcome.request_id)
                elif outcome.kind is OutcomeKind.FAILED:
                    seen.lost += 1
            seen.requests += poller.stats.polls_sent
            seen.throttled += poller.stats.rate_limited
    finally:
        if http is not None:
            await http.aclose()


async def poller_default(setting: Setting, ids: list[str], seen: Detections) -> None:
    await _poller(setting, ids, seen, tuned=False)


async def poller_tuned(setting: Setting, ids: list[str], seen: Detections) -> None:
    await _poller(setting, ids, seen, tuned=True)


async def raw(setting: Setting, ids: list[str], seen: Detections, *, count: int) -> None:
    """`count` GETs over `ids`, 16 at a time, no logic: the floor for CPU and wall."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await http.get(setting.status_url(ids[remaining % len(ids)]))
            seen.requests += 1
            seen.throttled += response.status_code == 429

    async with _http() as http, anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(worker)


CONTENDERS: Final[dict[str, Contender]] = {
    "naive": naive,
    "careful": careful,
    "poller_default": poller_default,
    "poller_tuned": poller_tuned,
}
