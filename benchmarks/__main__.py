"""``python -m benchmarks [--quick] [--only NAME,...] [--out PATH]``.

The full run takes about a quarter of an hour and writes ``benchmarks/results/latest.json``,
``latest.md`` and PNG plots; ``--quick`` is the few-second smoke run CI does (no
thresholds), written to ``benchmarks/results/quick.json``.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import logging
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import attrs

from . import _scenarios
from ._report import markdown, plots
from ._scenarios import Plan

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("overhead", "memory", "saturated", "workload", "faults", "hybrid", "fleet")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _meta(plan: Plan) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in ("httpx", "aiohttp", "anyio", "uvicorn", "aiolimiter"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "versions": versions,
        "quick": plan.quick,
        "command": "python -m benchmarks" + (" --quick" if plan.quick else ""),
    }


async def _memory(plan: Plan) -> dict[str, Any]:
    _log(f"memory: {plan.memory_tasks} tasks (separate process)")
    root = ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "src")])}
    done = await anyio.run_process(
        [sys.executable, "-m", "benchmarks._memory", str(plan.memory_tasks)],
        cwd=root,
        env=env,
        stderr=None,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def _hybrid(plan: Plan) -> dict[str, Any]:
    try:
        from . import hybrid  # written by another engineer; optional
    except ImportError as exc:
        return {"skipped": f"benchmarks.hybrid not available ({exc})"}
    runner = getattr(hybrid, "run_hybrid_comparison", None)
    if runner is None:
        return {"skipped": "benchmarks.hybrid has no run_hybrid_comparison"}
    _log("hybrid: run_hybrid_comparison")
    try:
        result = runner(plan.fault_tasks, quick=plan.quick)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # report, do not lose the other scenarios' figures
        return {"error": f"{type(exc).__name__}: {exc}"}
    return result if isinstance(result, dict) else {"result": result}


async def _fleet(plan: Plan) -> dict[str, Any]:
    from . import fleet  # four replica processes on one key; skips itself without Redis

    _log("fleet: four replicas on one key (Redis)")
    return await fleet.run_fleet(quick=plan.quick)


async def run(plan: Plan, only: tuple[str, ...] = SCENARIOS) -> dict[str, Any]:
    """Run the chosen scenarios in this event loop (asyncio); returns the results."""
    results: dict[str, Any] = {"meta": _meta(plan)}
    for name in only:
        started = time.perf_counter()
        if name == "memory":
            results[name] = await _memory(plan)
        elif name == "hybrid":
            results[name] = await _hybrid(plan)
        elif name == "fleet":
            results[name] = await _fleet(plan)
        else:
            results[name] = await getattr(_scenarios, name)(plan, _log)
        _log(f"{name}: done in {time.perf_counter() - started:.1f}s")
    return results


def _merged(previous: dict[str, Any], new: dict[str, Any], only: tuple[str, ...]) -> dict[str, Any]:
    """`previous` with the scenarios in `only` replaced by `new`'s, each stamped with the
    run it came from: the rendered figures then say which run each section is from."""
    merged = dict(previous)
    for name in only:
        merged[name] = {**new[name], "meta": new["meta"]}
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the scenarios run in the existing results file; each keeps "
        "the date and machine of its own run (under its 'meta')",
    )
    parser.add_argument(
        "--sizes", help="comma-separated task counts of the workload (full: 100,1000,10000)"
    )
    args = parser.parse_args(argv)
    only = tuple(name for name in args.only.split(",") if name)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    plan = Plan.smoke() if args.quick else Plan.full()
    if args.sizes:
        sizes = tuple(int(size) for size in args.sizes.split(","))
        plan = attrs.evolve(plan, sizes=sizes, repeats={n: plan.repeats.get(n, 1) for n in sizes})
    # The poller warns on every 429 pause; the figures count them, the log would drown them.
    logging.getLogger("async_dispatch").setLevel(logging.ERROR)
    results = anyio.run(run, plan, only, backend="asyncio")
    out: Path = args.out or RESULTS / ("quick.json" if plan.quick else "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and out.exists():
        results = _merged(json.loads(out.read_text()), results, only)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    table = markdown(results)
    out.with_suffix(".md").write_text(table)
    if not plan.quick and not args.no_plots:
        for path in plots(results, out.parent):
            _log(f"wrote {path}")
    print(table)
    _log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
