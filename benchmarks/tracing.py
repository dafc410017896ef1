"""What tracing costs per check: the poller with `OpenTelemetryHook`, tracing on and off.

    python -m benchmarks.tracing [--checks 5000] [--repeats 5]

Three contenders, side by side in one run against the overhead scenario's instant server
(a bare aiohttp process answering ``pending``), their order rotated each repeat, each the
poller checking 1,000 tracked tasks as fast as the server answers (`_poller_checks`):

- ``no_hooks``: ``hooks=[]``, the floor;
- ``otel_untraced``: `OpenTelemetryHook` with its metrics on the SDK's `MeterProvider`
  and the API's no-op tracer: tracing off;
- ``otel_traced``: the same hook on the SDK's `TracerProvider`: every check a span in its
  task's trace (the stored ``traceparent`` extracted, a link to the current span), made,
  recorded and dropped (no exporter: exporting is the application's cost).

Client CPU is `time.process_time()` of this process; figures are medians. Writes
``benchmarks/results/tracing.json`` (rendered into benchmarks/README.md by
``python -m benchmarks.render``) and prints one line per contender.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import anyio

from ._measure import metered
from ._scenarios import _poller_checks
from ._servers import serving

RESULTS: Final = Path(__file__).resolve().parent / "results" / "tracing.json"
#: Contender -> the `_hooks` kind it runs with.
CONTENDERS: Final = {"no_hooks": "none", "otel_untraced": "otel_untraced", "otel_traced": "otel"}


async def measure(checks: int, repeats: int) -> dict[str, Any]:
    async with serving({"kind": "fast"}) as server:
        base = server.base_url
        runs: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        contenders: dict[str, Callable[[], Awaitable[int]]] = {
            name: functools.partial(_poller_checks, base, checks, None, kind)
            for name, kind in CONTENDERS.items()
        }
        await contenders["no_hooks"]()  # warm up imports and the server
        names = list(contenders)
        for repeat in range(repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                async with metered() as meter:
                    done = await contenders[name]()
                runs[name].append(1000 * meter.cpu / done)
    median = {name: round(statistics.median(values), 4) for name, values in runs.items()}
    return {
        "run": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}",
            "command": f"python -m benchmarks.tracing --checks {checks} --repeats {repeats}",
        },
        "checks": checks,
        "repeats": repeats,
        "cpu_ms_per_check": median,
        "runs": runs,
        "ratios": {
            "traced_vs_untraced": round(median["otel_traced"] / median["otel_untraced"], 3),
            "traced_vs_no_hooks": round(median["otel_traced"] / median["no_hooks"], 3),
            "untraced_vs_no_hooks": round(median["otel_untraced"] / median["no_hooks"], 3),
        },
    }


def table(results: dict[str, Any]) -> list[str]:
    """The figures as Markdown (benchmarks/render.py's ``bench-tracing`` region)."""
    run = results["run"]
    cpu, ratios = results["cpu_ms_per_check"], results["ratios"]
    return [
        *textwrap.wrap(
            f"Run: {run['date']}, {run['machine']}; `{run['command']}`.",
            90,
            break_on_hyphens=False,
            break_long_words=False,
        ),
        "",
        "| contender | CPU ms/check |",
        "|---|---|",
        *(f"| {name} | {cpu[name]:.3f} |" for name in CONTENDERS),
        "",
        "| ratio | measured |",
        "|---|---|",
        *(f"| {name} | {value:.2f} |" for name, value in ratios.items()),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing", description=__doc__)
    parser.add_argument("--checks", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args(argv)
    results = anyio.run(measure, args.checks, args.repeats)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for name, value in results["cpu_ms_per_check"].items():
        print(f"{name}: {value:.3f} ms CPU per check")
    for name, value in results["ratios"].items():
        print(f"{name}: {value:.2f}")


if __name__ == "__main__":
    main()
