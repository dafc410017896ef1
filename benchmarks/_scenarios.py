"""The benchmark's scenarios. Each returns a JSON-ready dict of figures.

Contenders of one scenario run against the same server process, one after the other,
in an order rotated every repeat (so slow drift on a shared machine spreads over all of
them), and the summary is the median of the repeats.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import anyio
import attrs
import httpx

from async_dispatch import DispatchClient, Poller, RetryPolicy
from async_dispatch._aiohttp_transport import AiohttpTransport
from async_dispatch._transport import httpx_transport
from async_dispatch.instrumentation import Hook

from ._contenders import CONTENDERS, KEY, Setting, raw
from ._measure import Detections, median_of, metered, percentile
from ._servers import ServerHandle, serving

__all__ = ["Plan", "faults", "overhead", "saturated", "workload"]

#: The server's limit, per key, in requests per simulated second.
RATE: Final = 20.0
BURST: Final = 20


@attrs.frozen
class Plan:
    """How big and how long: the full run, or the few-second smoke run."""

    quick: bool
    sizes: tuple[int, ...]
    repeats: dict[int, int]
    scale: float
    durations: dict[str, float]
    saturate_seconds: float
    saturate_rate: float
    fault_tasks: int
    overhead_requests: int
    overhead_repeats: int
    memory_tasks: int

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            sizes=(100, 1_000, 10_000),
            repeats={100: 3, 1_000: 3, 10_000: 1},
            scale=0.05,
            durations={"median": 40.0, "sigma": 0.6, "minimum": 5.0, "maximum": 180.0},
            saturate_seconds=20.0,
            saturate_rate=100.0,
            fault_tasks=1_000,
            overhead_requests=6_000,
            overhead_repeats=3,
            memory_tasks=100_000,
        )

    @classmethod
    def smoke(cls) -> Plan:
        return cls(
            quick=True,
            sizes=(50,),
            repeats={50: 1},
            scale=0.005,
            durations={"median": 20.0, "sigma": 0.5, "minimum": 5.0, "maximum": 40.0},
            saturate_seconds=0.5,
            saturate_rate=100.0,
            fault_tasks=50,
            overhead_requests=300,
            overhead_repeats=1,
            memory_tasks=10_000,
        )


def _sim_spec(plan: Plan, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "sim",
        "time_scale": plan.scale,
        "rate_limit": {"rate": RATE / plan.scale, "burst": BURST},
        "durations": plan.durations,
        "seed": 7,
        **extra,
    }


async def _one_run(
    server: ServerHandle,
    setting: Setting,
    name: str,
    n: int,
    *,
    raw_count: int = 0,
) -> dict[str, Any]:
    # Let the server's bucket refill so every contender starts from the same state.
    await anyio.sleep(setting.burst / setting.real_rate + 0.05)
    ids, started = await server.create(n)
    before = await server.stats(started)
    seen = Detections()
    async with metered() as meter:
        if name == "raw":
            await raw(setting, ids, seen, count=raw_count)
        else:
            await CONTENDERS[name](setting, ids, seen)
    after = await server.stats(started)
    # A TIMED_OUT task that the server had finished before its deadline is a false one.
    # The deadline is counted from `create` (the contender tracks a moment later, so its
    # own deadline is later still): a task counted here finished before any deadline.
    deadline = started + setting.real(setting.deadline)
    finish_times = await server.finished(seen.timed_out_ids) if seen.timed_out_ids else {}
    false_timeouts = sum(1 for t in finish_times.values() if t is not None and t < deadline)
    requests = after["requests"].get("status", 0) - before["requests"].get("status", 0)
    http_429 = after["rate_limited"] - before["rate_limited"]
    completed = len(seen.latencies)
    p50 = percentile(seen.latencies, 0.5)
    p95 = percentile(seen.latencies, 0.95)
    span = (after["last"] or 0.0) - (after["first"] or 0.0)
    return {
        "tasks": n,
        "completed": completed,
        "lost": seen.lost,
        "timed_out": seen.timed_out,
        "false_timeouts": false_timeouts,
        "requests": requests,
        "requests_per_task": requests / completed if completed else None,
        "http_429": http_429,
        "latency_p50": p50 / setting.scale if p50 is not None else None,
        "latency_p95": p95 / setting.scale if p95 is not None else None,
        "wall": meter.wall,
        "cpu": meter.cpu,
        "cpu_per_request_ms": 1000 * meter.cpu / requests if requests else None,
        "peak_rss_mb": meter.peak_rss / 2**20,
        "accepted": after["accepted"],
        "accepted_rate": (after["accepted"] - setting.burst) / span if span > 0 else None,
        "window_max": after["window_max"],
        "faults": sum(after["faults"].values()) - sum(before["faults"].values()),
    }


async def _compare(
    server: ServerHandle,
    setting: Setting,
    names: list[str],
    n: int,
    repeats: int,
    *,
    with_raw: bool,
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    if with_raw:
        runs["raw"] = []
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            runs[name].append(await _one_run(server, setting, name, n))
        if with_raw:
            count = runs["poller_tuned"][-1]["requests"] if "poller_tuned" in runs else n
            runs["raw"].append(await _one_run(server, setting, "raw", n, raw_count=count))
    summary = {name: median_of(results) for name, results in runs.items()}
    return {
        "contenders": summary,
        "ratios": _ratios(summary),
        "runs": runs,
    }


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return a / b
    return None


def _ratios(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    raw_figures = summary.get("raw", {})
    careful_figures = summary.get("careful", {})
    out: dict[str, dict[str, float | None]] = {}
    for name, figures in summary.items():
        out[name] = {
            "cpu_per_request_vs_raw": _ratio(
                figures.get("cpu_per_request_ms"), raw_figures.get("cpu_per_request_ms")
            ),
            "cpu_vs_careful": _ratio(figures.get("cpu"), careful_figures.get("cpu")),
            "requests_vs_careful": _ratio(figures.get("requests"), careful_figures.get("requests")),
            "p50_vs_careful": _ratio(
                figures.get("latency_p50"), careful_figures.get("latency_p50")
            ),
            "p95_vs_careful": _ratio(
                figures.get("latency_p95"), careful_figures.get("latency_p95")
            ),
        }
    return out


async def workload(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Every contender on 100 / 1,000 / 10,000 tasks under the server's rate limit."""
    results: dict[str, Any] = {}
    async with serving(_sim_spec(plan)) as server:
        setting = Setting(server.base_url, plan.scale, RATE, BURST, deadline=600.0)
        for n in plan.sizes:
            log(f"workload: {n} tasks x {plan.repeats[n]} repeats")
            results[str(n)] = await _compare(
                server, setting, list(CONTENDERS), n, plan.repeats[n], with_raw=True
            )
    return {
        "setting": {
            "rate_per_simulated_second": RATE,
            "burst": BURST,
            "time_scale": plan.scale,
            "durations_simulated_seconds": plan.durations,
            "outcomes": "90% success, 10% error",
        },
        "sizes": results,
    }


async def faults(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """The same comparison with 10% of status reads failing (5xx, dropped, truncated)."""
    mix = {"server_error": 0.05, "drop": 0.02, "truncated_json": 0.03}
    log(f"faults: {plan.fault_tasks} tasks, {sum(mix.values()):.0%} faulty reads")
    async with serving(_sim_spec(plan, faults=mix, seed=11)) as server:
        setting = Setting(server.base_url, plan.scale, RATE, BURST, deadline=600.0)
        result = await _compare(
            server,
            setting,
            list(CONTENDERS),
            plan.fault_tasks,
            1 if plan.quick else 2,
            with_raw=False,
        )
    result["faults"] = mix
    return result


async def saturated(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Demand far above the limit: how close to the configured rate, never above it.

    Tasks never finish and are checked as often as allowed; the run ends at their
    deadline. The server's limit equals the client's, so any 429 means the client sent
    faster than configured.
    """
    rate = plan.saturate_rate
    seconds = plan.saturate_seconds
    scale = 1e-4  # intervals of 2 simulated seconds become 0.2 ms: pure demand
    spec = {
        "kind": "sim",
        "rate_limit": {"rate": rate, "burst": BURST},
        "outcomes": {"success": 0, "error": 0, "input_required": 0, "never": 1},
        "seed": 3,
    }
    log(f"saturated: {rate:g} req/s for {seconds:g}s")
    async with serving(spec) as server:
        setting = Setting(server.base_url, scale, rate * scale, BURST, deadline=seconds / scale)
        runs: dict[str, list[dict[str, Any]]] = {"careful": [], "poller_tuned": []}
        # Both take tokens from a bucket of half the server's burst (see `_contenders`).
        for repeat in range(1 if plan.quick else 2):
            for name in list(runs)[repeat % 2 :] + list(runs)[: repeat % 2]:
                runs[name].append(await _one_run(server, setting, name, 500))
    summary = {name: median_of(result) for name, result in runs.items()}
    for figures in summary.values():
        figures["configured_rate"] = rate
        figures["rate_error"] = _ratio(figures["accepted_rate"], rate)
        figures["allowed_window_max"] = rate + BURST
    return {"contenders": summary, "runs": runs}


# -- overhead: the client's own cost per request, against a server that answers instantly --

_CONCURRENCY: Final = 10


async def _bare_aiohttp(base_url: str, count: int) -> int:
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await _loop(count, lambda rid: _aiohttp_get(session, f"{base_url}{rid}"))


async def _aiohttp_get(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url, headers={"x-api-key": KEY}) as response:
        json.loads(await response.read())


async def _bare_httpx(base_url: str, count: int, transport: httpx.AsyncBaseTransport) -> int:
    async with httpx.AsyncClient(transport=transport, headers={"x-api-key": KEY}) as http:

        async def get(rid: str) -> None:
            response = await http.get(f"{base_url}{rid}")
            response.raise_for_status()
            response.json()

        return await _loop(count, get)


async def _loop(count: int, get: Callable[[str], Awaitable[None]]) -> int:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await get(f"req_{remaining:012x}")

    async with anyio.create_task_group() as tg:
        for _ in range(_CONCURRENCY):
            tg.start_soon(worker)
    return count


def _hooks(kind: str) -> list[Hook] | None:
    """The instrumentation of one overhead contender, built fresh for each run.

    ``default``: the client's default (the logging hook, debug off); ``none``: ``[]``;
    ``prometheus``: `PrometheusHook` in a registry of its own; ``otel``: `OpenTelemetryHook`
    on the SDK's providers, metrics kept by an in-memory reader, every span made, recorded
    and dropped (no exporter: exporting is the application's cost, not ours);
    ``otel_untraced``: the same metrics, the API's no-op tracer.
    """
    if kind == "default":
        return None
    if kind == "none":
        return []
    if kind == "prometheus":
        from prometheus_client import CollectorRegistry

        from async_dispatch.instrumentation.prometheus import PrometheusHook

        return [PrometheusHook(CollectorRegistry())]
    assert kind in ("otel", "otel_untraced")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NoOpTracerProvider

    from async_dispatch.instrumentation.otel import OpenTelemetryHook

    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    # ``otel_untraced``: the same hook with tracing off (the API's no-op tracer), so that
    # the two differ by the spans and the task's trace context alone (benchmarks/tracing.py).
    tracers = TracerProvider() if kind == "otel" else NoOpTracerProvider()
    return [OpenTelemetryHook(meter_provider=meters, tracer_provider=tracers)]


async def _poller_checks(
    base_url: str, count: int, http: httpx.AsyncClient | None, hooks: str = "default"
) -> int:
    client = DispatchClient(
        api_key=KEY,
        base_url=base_url,
        http_client=http,
        retry=RetryPolicy(attempts=1),
        hooks=_hooks(hooks),
    )
    async with (
        client,
        Poller(
            client,
            rate=1e6,
            burst=1000,
            initial_interval=1e-6,
            max_interval=1e-6,
            jitter=0,
            max_in_flight=_CONCURRENCY,
        ) as poller,
    ):
        await poller.track_many(f"req_{i:012x}" for i in range(1000))
        while poller.stats.polls_sent < count:  # noqa: ASYNC110 - cheap, outside the hot path
            await anyio.sleep(0.005)
        done = poller.stats.polls_sent - poller.stats.in_flight
    if http is not None:
        await http.aclose()
    return done


async def overhead(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Client CPU per request: the poller vs bare loops on the same and other stacks."""
    count = plan.overhead_requests
    log(f"overhead: {count} requests per contender x {plan.overhead_repeats}")

    async with serving({"kind": "fast"}) as server:
        prefix = f"{server.base_url}/remote-dispatch/responses/"
        base = server.base_url
        contenders: dict[str, Callable[[], Awaitable[int]]] = {
            "bare_aiohttp": lambda: _bare_aiohttp(prefix, count),
            "bare_httpx": lambda: _bare_httpx(prefix, count, httpx_transport(max_connections=16)),
            "bare_httpx_our_aiohttp_transport": lambda: _bare_httpx(
                prefix, count, AiohttpTransport(max_connections=16)
            ),
            "poller": lambda: _poller_checks(base, count, None),
            # The same poller and stack, instrumented four ways (issue #13).
            "poller_no_hooks": lambda: _poller_checks(base, count, None, "none"),
            "poller_prometheus": lambda: _poller_checks(base, count, None, "prometheus"),
            "poller_otel": lambda: _poller_checks(base, count, None, "otel"),
            "poller_stock_httpx": lambda: _poller_checks(
                base,
                count,
                httpx.AsyncClient(transport=httpx_transport(max_connections=16), timeout=30.0),
            ),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        names = list(contenders)
        await contenders["bare_aiohttp"]()  # warm up imports and the server
        for repeat in range(plan.overhead_repeats):
            for name in names[repeat:] + names[:repeat]:
                async with metered() as meter:
                    done = await contenders[name]()
                runs[name].append(
                    {
                        "requests": done,
                        "cpu": meter.cpu,
                        "wall": meter.wall,
                        "cpu_per_request_ms": 1000 * meter.cpu / done,
                        "requests_per_second": done / meter.wall,
                    }
                )
    summary = {name: median_of(result) for name, result in runs.items()}

    def per_request(name: str) -> float:
        value: float = summary[name]["cpu_per_request_ms"]
        return value

    ratios = {
        "poller_vs_bare_httpx_same_transport": per_request("poller")
        / per_request("bare_httpx_our_aiohttp_transport"),
        "poller_stock_vs_bare_httpx_stock": per_request("poller_stock_httpx")
        / per_request("bare_httpx"),
        "poller_vs_bare_aiohttp": per_request("poller") / per_request("bare_aiohttp"),
        "httpx_stock_vs_aiohttp": per_request("bare_httpx") / per_request("bare_aiohttp"),
        "httpx_our_transport_vs_aiohttp": per_request("bare_httpx_our_aiohttp_transport")
        / per_request("bare_aiohttp"),
        # Instrumentation, each against the same poller with no hooks at all.
        "no_hooks_vs_bare_httpx_same_transport": per_request("poller_no_hooks")
        / per_request("bare_httpx_our_aiohttp_transport"),
        "logging_hook_vs_no_hooks": per_request("poller") / per_request("poller_no_hooks"),
        "prometheus_vs_no_hooks": per_request("poller_prometheus") / per_request("poller_no_hooks"),
        "otel_vs_no_hooks": per_request("poller_otel") / per_request("poller_no_hooks"),
    }
    return {
        "concurrency": _CONCURRENCY,
        "contenders": summary,
        "ratios": ratios,
        "targets": {
            "poller_vs_bare_httpx_same_transport": 1.1,
            "poller_stock_vs_bare_httpx_stock": 1.1,
            "poller_vs_bare_aiohttp": 1.6,
        },
        "runs": runs,
    }
