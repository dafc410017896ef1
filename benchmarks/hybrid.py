"""Hybrid (webhooks + safety-net poll) against polling only, on the same simulated workload.

Everything runs over loopback TCP in this event loop (asyncio): the simulator under
uvicorn, and a FastAPI app with `async_dispatch.fastapi.webhook_router` receiving its
webhooks. Each variant opens a fresh `DispatchRuntime` on a fresh simulator with the same
seed, so the tasks and their durations are the same.

Time is compressed by `scale` (real seconds per simulated second) applied to everything
at once: task durations, the poller's intervals (the library defaults: 2 s first check,
10 s max, 60 s safety interval) and the rate budget (10 requests per simulated second, the
`Poller` default). Latencies are reported in simulated seconds, like the workload scenario.

Variants:

- ``polling``: no webhooks, the default adaptive cadence.
- ``hybrid``: webhooks for every task, polling every `safety_interval`.
- ``hybrid_5pct_dropped``: the same with 5% of webhooks lost, so the tail shows what the
  safety net costs.

Run alone: ``python -m benchmarks.hybrid [--quick] [tasks]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
from fastapi import FastAPI

from async_dispatch import DispatchClient, Outcome
from async_dispatch.fastapi import open_runtime, webhook_router
from async_dispatch.testing import (
    Durations,
    OutcomeMix,
    Simulator,
    SimulatorConfig,
    Webhooks,
    bind_socket,
    serve_asgi,
)
from async_dispatch.webhooks import DispatchRuntime

__all__ = ["run_hybrid_comparison"]

_KEY = "bench-key"
_HOOK = "/webhooks/dispatch"
#: Library defaults, in simulated seconds (and requests per simulated second).
_INITIAL, _MAX, _SAFETY, _RATE, _BURST, _DEADLINE = 2.0, 10.0, 60.0, 10.0, 10, 1800.0
_SUBMITTERS = 8


async def run_hybrid_comparison(tasks: int, *, quick: bool) -> dict[str, Any]:
    """Compare the variants on `tasks` tasks; JSON-able figures (latencies in sim. s)."""
    scale = 0.03 if quick else 0.1
    durations = {"median": 30.0, "sigma": 0.6, "minimum": 5.0, "maximum": 60.0 if quick else 120.0}
    variants: dict[str, Any] = {}
    for name, hybrid, drop in (
        ("polling", False, 0.0),
        ("hybrid", True, 0.0),
        ("hybrid_5pct_dropped", True, 0.05),
    ):
        variants[name] = await _run_variant(
            tasks, scale=scale, hybrid=hybrid, drop=drop, durations=durations
        )
    return {
        "tasks": tasks,
        "scale_real_s_per_sim_s": scale,
        "durations_sim_s": durations,
        "poller": {
            "initial_interval_sim_s": _INITIAL,
            "max_interval_sim_s": _MAX,
            "safety_interval_sim_s": _SAFETY,
            "rate_per_sim_s": _RATE,
            "burst": _BURST,
        },
        "variants": variants,
        "note": (
            "requests_per_task counts requests sent to the API (submit + status reads, "
            "against the key's rate limit); webhooks_per_task counts inbound deliveries. "
            "Latency: completion on the server to the outcome reaching the app."
        ),
    }


async def _run_variant(
    tasks: int, *, scale: float, hybrid: bool, drop: float, durations: dict[str, float]
) -> dict[str, Any]:
    config = SimulatorConfig(
        api_keys=frozenset({_KEY}),
        durations=Durations(**durations),
        outcomes=OutcomeMix(success=0.9, error=0.1, input_required=0.0),
        time_scale=scale,
        webhooks=Webhooks(drop=drop, concurrency=16, backoff=0.5 * scale),
        seed=20,
    )
    seen: dict[str, float] = {}
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        if outcome.final:
            seen[outcome.request_id] = anyio.current_time()
            outcomes.append(outcome)

    with _socket() as (sim_sock, sim_port), _socket() as (app_sock, app_port):
        async with Simulator(config) as sim, serve_asgi(sim.app, sim_sock):
            runtime = DispatchRuntime(
                DispatchClient(
                    api_key=_KEY, base_url=sim.base_url_on(sim_port), execution_mode="cloud"
                ),
                callback_url=f"http://127.0.0.1:{app_port}{_HOOK}" if hybrid else None,
                on_outcome=record,
                keep=0,
                rate=_RATE / scale,
                burst=_BURST,
                deadline=_DEADLINE * scale,
                initial_interval=_INITIAL * scale,
                max_interval=_MAX * scale,
                safety_interval=_SAFETY * scale,
                max_in_flight=10,
                seed=20,
            )
            app = FastAPI()
            app.include_router(webhook_router(_HOOK))
            started = time.perf_counter()
            async with open_runtime(app, runtime), serve_asgi(app, app_sock, lifespan="off"):
                ids = await _submit_all(runtime, tasks)
                with anyio.fail_after(_DEADLINE * scale + 30):
                    while len(seen) < len(ids):  # noqa: ASYNC110 - a benchmark's progress poll
                        await anyio.sleep(0.05)
                wall = time.perf_counter() - started
                stats = runtime.poller.stats
                latencies = []
                for request_id in ids:
                    done = sim.task_completed_at(request_id)
                    if done is not None and request_id in seen:
                        latencies.append(max(0.0, seen[request_id] - done.clock) / scale)
            sim_stats = sim.stats
    n = len(ids)
    return {
        "requests_per_task": round((stats.polls_sent + stats.submits_sent) / n, 3),
        "polls_per_task": round(stats.polls_sent / n, 3),
        "webhooks_per_task": round(sim_stats.webhooks_delivered / n, 3),
        "webhooks_dropped": sim_stats.webhooks_dropped,
        # Outcomes settled by a webhook (a task may have had safety polls before it).
        "resolved_by_webhook": stats.deliveries,
        "never_polled": sum(1 for o in outcomes if o.polls == 0),
        "latency_p50": _percentile(latencies, 50),
        "latency_p95": _percentile(latencies, 95),
        "latency_max": round(max(latencies), 3) if latencies else None,
        # Webhook latency is network and event-loop time, which does not scale: in real ms.
        "latency_p50_real_ms": _ms(_percentile(latencies, 50), scale),
        "latency_p95_real_ms": _ms(_percentile(latencies, 95), scale),
        "webhooks_failed": sim_stats.webhooks_failed,
        "rate_limited": sim_stats.rate_limited,
        "wall_seconds": round(wall, 2),
    }


async def _submit_all(runtime: DispatchRuntime, tasks: int) -> list[str]:
    """Submit from a few concurrent submitters, all through the runtime's shared budget."""
    ids: list[str] = []
    counter = iter(range(tasks))

    async def submitter() -> None:
        for n in counter:
            ids.append(await runtime.submit(f"/Operator benchmark task {n}"))

    async with anyio.create_task_group() as tg:
        for _ in range(_SUBMITTERS):
            tg.start_soon(submitter)
    return ids


def _ms(sim_seconds: float | None, scale: float) -> float | None:
    return None if sim_seconds is None else round(sim_seconds * scale * 1000, 1)


def _percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 3)


@contextlib.contextmanager
def _socket() -> Iterator[tuple[socket.socket, int]]:
    sock = bind_socket()
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hybrid", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("tasks", nargs="?", type=int)
    args = parser.parse_args(argv)
    tasks = args.tasks or (50 if args.quick else 1000)

    async def go() -> dict[str, Any]:
        return await run_hybrid_comparison(tasks, quick=args.quick)

    json.dump(anyio.run(go), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
