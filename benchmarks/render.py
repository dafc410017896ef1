"""``python -m benchmarks.render [--check]``: the figures in the Markdown, from the results.

Every performance figure that README.md and benchmarks/README.md quote lives between a
pair of markers::

    <!-- figures:begin NAME -->
    ...generated, do not edit...
    <!-- figures:end -->

and is written here, from ``benchmarks/results/latest.json`` (and ``fleet.json`` for the
fleet run, ``tracing.json`` for ``python -m benchmarks.tracing``), with the date and
machine of the run it comes from. A figure typed by hand rots the moment the code or the
benchmark changes; one rendered from the results file changes with it. Rerun this after
every benchmark run; ``--check`` (what tests/test_docs_figures.py does) fails when a
region differs from what the results render, and names the regions.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ._report import markdown

__all__ = ["DOCUMENTS", "REGIONS", "load_results", "regions_in", "render", "rendered_text"]

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "benchmarks" / "results"
DOCUMENTS: Final = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")

BEGIN: Final = re.compile(r"^<!-- figures:begin (?P<name>[a-z0-9-]+) -->$")
END: Final = "<!-- figures:end -->"

Results = dict[str, Any]


def load_results(directory: Path = RESULTS) -> Results:
    """latest.json, with fleet.json under ``"fleet"``, fleet_costs.json under
    ``"fleet_costs"``, run_resume.json (``python -m benchmarks.run_resume``) under
    ``"run_resume"``, stores.json (``python -m benchmarks.stores``) under ``"stores"`` and
    tracing.json (``python -m benchmarks.tracing``) under ``"tracing"`` and integrity.json
    (``python -m benchmarks.integrity``) under ``"integrity"``, when those runs wrote
    them."""
    results: Results = json.loads((directory / "latest.json").read_text())
    fleet = directory / "fleet.json"
    if "fleet" not in results and fleet.exists():
        results["fleet"] = json.loads(fleet.read_text())
    costs = directory / "fleet_costs.json"
    if "fleet_costs" not in results and costs.exists():
        results["fleet_costs"] = json.loads(costs.read_text())
    resume = directory / "run_resume.json"
    if resume.exists():
        results["run_resume"] = json.loads(resume.read_text())
    stores = directory / "stores.json"
    if stores.exists():
        results["stores"] = json.loads(stores.read_text())
    tracing = directory / "tracing.json"
    if "tracing" not in results and tracing.exists():
        results["tracing"] = json.loads(tracing.read_text())
    integrity = directory / "integrity.json"
    if "integrity" not in results and integrity.exists():
        results["integrity"] = json.loads(integrity.read_text())
    return results


# -- formatting ------------------------------------------------------------------------------


def _n(value: float) -> str:
    """A count: 10000 -> 10,000."""
    return f"{value:,.0f}"


def _f(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _pct(fraction: float, digits: int = 0) -> str:
    return f"{fraction * 100:.{digits}f}%"


def _change(ratio: float, fewer: str, more: str) -> str:
    """A ratio against a reference as words: 0.95 -> "5% fewer", 1.02 -> "2% more"."""
    delta = abs(ratio - 1.0) * 100
    if delta < 0.5:
        return "the same"
    return f"{delta:.0f}% {fewer if ratio < 1 else more}"


#: Not sections of the suite's run: its own meta, and a block with its own region.
_APART: Final = ("meta", "fleet_costs", "run_resume", "stores", "tracing", "integrity")


def _run(meta: dict[str, Any] | None) -> str:
    if not meta:
        return "date and machine not recorded in the results file"
    kind = " (quick smoke run)" if meta.get("quick") else ""
    return f"{meta.get('date', '?')}, {meta.get('machine', '?')}{kind}"


def _source(results: Results) -> list[str]:
    """Which run the figures come from, and any section that comes from another run."""
    line = f"Run: {_run(results.get('meta'))}"
    others = [
        f"`{name}`: {_run(block['meta'])}"
        for name, block in results.items()
        if isinstance(block, dict) and "meta" in block and name not in _APART
    ]
    if others:
        line += "; rerun alone since: " + "; ".join(others)
    return textwrap.wrap(line + ".", 90, break_on_hyphens=False, break_long_words=False)


def _bullets(*items: str) -> list[str]:
    """Markdown list items, wrapped like the hand-written text around them."""
    lines: list[str] = []
    for item in items:
        lines += textwrap.wrap(item, 90, initial_indent="- ", subsequent_indent="  ",
                               break_on_hyphens=False, break_long_words=False)  # fmt: skip
    return lines


def _sizes(results: Results) -> list[tuple[int, dict[str, Any]]]:
    return [(int(size), block) for size, block in results["workload"]["sizes"].items()]


def _rows(results: Results) -> list[tuple[str, dict[str, Any]]]:
    """Every comparison row against `careful`: each workload size, then the faults run."""
    rows = [(f"{_n(size)} tasks", block) for size, block in _sizes(results)]
    rows.append((f"{_n(results['faults']['contenders']['careful']['tasks'])} tasks with faults",
                 results["faults"]))  # fmt: skip
    return rows


def _vs_careful(results: Results, key: str, fewer: str, more: str) -> str:
    return ", ".join(
        f"{_change(block['ratios']['poller_tuned'][key], fewer, more)} at {label}"
        for label, block in _rows(results)
    )


def _range_less(values: list[float]) -> str:
    """CPU ratios (below 1 is less) as "12-15% less", or the plain ratios if mixed."""
    low, high = min(values), max(values)
    if high < 1:
        return f"{(1 - high) * 100:.0f}-{(1 - low) * 100:.0f}% less"
    return f"{low:.2f}-{high:.2f}x"


# -- the regions ------------------------------------------------------------------------------


def readme_performance(results: Results) -> list[str]:
    """The README's summary: a few lines, every number from the results."""
    faults = results["faults"]["contenders"]
    over = results["overhead"]
    oc = over["contenders"]
    memory = results["memory"]
    sat = results["saturated"]["contenders"]["poller_tuned"]
    hybrid = results["hybrid"]["variants"]
    cpu = [block["ratios"]["poller_tuned"]["cpu_vs_careful"] for _, block in _rows(results)]
    naive = ", ".join(
        f"{_n(block['contenders']['naive']['completed'])} of {_n(size)}"
        for size, block in _sizes(results)
    )
    careful_429 = sum(block["contenders"]["careful"]["http_429"] for _, block in _rows(results))
    tuned_429 = sum(block["contenders"]["poller_tuned"]["http_429"] for _, block in _rows(results))
    httpx_vs_ours = (
        oc["bare_httpx"]["cpu_per_request_ms"]
        / oc["bare_httpx_our_aiohttp_transport"]["cpu_per_request_ms"]
    )
    return [
        *_source(results),
        "",
        *_bullets(
            "Against a careful hand-rolled loop (coroutine per task, aiolimiter, backoff with "
            "jitter, `Retry-After`) on the same budget, the tuned poller's requests per task: "
            + _vs_careful(results, "requests_vs_careful", "fewer", "more")
            + "; its p50 detection latency: "
            + _vs_careful(results, "p50_vs_careful", "lower", "higher")
            + f". It met {_n(tuned_429)} 429s to the loop's {_n(careful_429)}, and used "
            + f"{_range_less(cpu)} CPU.",
            "The official SDK's pattern (a coroutine per task, a fixed sleep, no retries, no "
            f"rate limit) completes {naive} tasks against the rate-limited server, and loses "
            f"{_n(faults['naive']['lost'])} of {_n(faults['naive']['tasks'])} when 10% of "
            f"status reads fail; the poller loses {_n(faults['poller_tuned']['lost'])}.",
            "Client CPU per status check: "
            f"{_f(over['ratios']['poller_vs_bare_httpx_same_transport'])}x a bare httpx loop "
            f"on the same transport, {_f(over['ratios']['poller_vs_bare_aiohttp'])}x a bare "
            "aiohttp loop. httpx over the aiohttp transport (the `speedups` extra, under "
            f"asyncio) costs {_f(httpx_vs_ours, 1)}x less CPU per request than over httpx's "
            "own.",
            f"{_n(memory['tasks'])} tracked tasks: {_n(memory['bytes_per_task'])} bytes each "
            f"(a coroutine per task: {_n(memory['coroutine_per_task_bytes'])} bytes), tracked "
            f"in {_f(memory['track_seconds'])} s, shut down in "
            f"{_f(memory['shutdown_seconds'] * 1000, 1)} ms; all their deadlines falling due "
            f"at once are reported within {_f(memory['deadline_seconds_after_due'])} s.",
            f"Saturated: {_pct(sat['rate_error'], 1)} of the configured rate, the busiest "
            f"second at {sat['window_max']:g} requests of the {sat['allowed_window_max']:g} "
            "allowed (`rate x t + burst`).",
            f"Hybrid mode: {_f(hybrid['hybrid']['requests_per_task'])} requests per task "
            f"instead of {_f(hybrid['polling']['requests_per_task'])}, p50 latency "
            f"{_f(hybrid['hybrid']['latency_p50'], 3)} simulated s instead of "
            f"{_f(hybrid['polling']['latency_p50'], 1)}.",
        ),
    ]


def bench_machine(results: Results) -> list[str]:
    meta = results["meta"]
    versions = ", ".join(
        f"{name} {version}" for name, version in meta.get("versions", {}).items() if version
    )
    text = f"Machine of the run: {meta['machine']}; {versions}."
    return textwrap.wrap(text, 90, break_on_hyphens=False, break_long_words=False)


def bench_latest(results: Results) -> list[str]:
    """The full tables of `_report.markdown`, one heading level down."""
    workload = {k: v for k, v in results.items() if k not in ("fleet", *_APART[1:])}
    text = markdown(workload).rstrip("\n")
    lines = [("#" + line) if line.startswith("### ") else line for line in text.splitlines()]
    return [*_source(results), *lines[1:]]


def bench_comparison(results: Results) -> list[str]:
    """Where the tuned poller stands against `careful`, and the other contenders' rows."""
    rows = _rows(results)

    def pair(key: str, digits: int = 2) -> str:
        return ", ".join(
            f"{block['contenders']['poller_tuned'][key]:.{digits}f} vs "
            f"{block['contenders']['careful'][key]:.{digits}f} at {label}"
            for label, block in rows
        )

    sat = results["saturated"]["contenders"]
    over = results["overhead"]
    ratios, targets = over["ratios"], over["targets"]
    within = "; ".join(
        f"{name} {_f(value)} (target {_f(targets[name], 1)}: "
        f"{'met' if value <= targets[name] else 'missed'})"
        for name, value in ratios.items()
        if name in targets
    )
    sizes = dict(_sizes(results))
    big = sizes[max(sizes)]
    default = big["contenders"]["poller_default"]
    small = sizes[min(s for s in sizes if s > min(sizes))] if len(sizes) > 1 else big
    cpu = [block["ratios"]["poller_tuned"]["cpu_vs_careful"] for _, block in rows]
    return [
        *_source(results),
        "",
        *_bullets(
            f"Requests per task, tuned poller vs `careful`: {pair('requests_per_task')}.",
            f"Latency p50 (simulated s): {pair('latency_p50', 1)}.",
            f"Latency p95 (simulated s): {pair('latency_p95', 1)}.",
            f"429s met: {pair('http_429', 0)}.",
            f"CPU, tuned poller against `careful`: {_range_less(cpu)}.",
            f"TIMED_OUT at {_n(max(sizes))} tasks: tuned poller "
            f"{_n(big['contenders']['poller_tuned']['timed_out'])}, `careful` "
            f"{_n(big['contenders']['careful']['timed_out'])}, poller defaults "
            f"{_n(default['timed_out'])} (of which {_n(default['false_timeouts'])} false: the "
            f"task had finished), completing {_n(default['completed'])} of {_n(default['tasks'])}.",
            f"Poller defaults at {_n(small['contenders']['careful']['tasks'])} tasks: "
            f"{_f(small['contenders']['poller_default']['requests_per_task'])} requests per task "
            f"(`careful`: {_f(small['contenders']['careful']['requests_per_task'])}), p50 latency "
            f"{_f(small['ratios']['poller_default']['p50_vs_careful'], 1)}x `careful`'s.",
            "`naive` completes "
            + ", ".join(
                f"{_n(block['contenders']['naive']['completed'])} of {_n(size)}"
                for size, block in sorted(sizes.items())
            )
            + ".",
            f"Saturated, share of the configured rate: tuned poller "
            f"{_pct(sat['poller_tuned']['rate_error'], 1)}, `careful` "
            f"{_pct(sat['careful']['rate_error'], 1)}; busiest second "
            f"{sat['poller_tuned']['window_max']:g} and {sat['careful']['window_max']:g} of "
            f"{sat['poller_tuned']['allowed_window_max']:g} allowed; CPU "
            f"{_change(sat['poller_tuned']['cpu'] / sat['careful']['cpu'], 'less', 'more')}.",
            f"Overhead ratios against their targets: {within}.",
        ),
    ]


def bench_fleet(results: Results) -> list[str]:
    from .fleet import table

    fleet = results.get("fleet")
    if fleet is None:
        return ["No fleet run recorded (`results/fleet.json` is missing)."]
    return [f"Run: {_run(fleet.get('meta'))}.", "", *table(fleet).splitlines()]


def bench_fleet_reading(results: Results) -> list[str]:
    fleet = results.get("fleet")
    if fleet is None or "skipped" in fleet:
        return ["No fleet run recorded."]
    local, redis, store = fleet["local"], fleet["redis"], fleet["store"]
    return _bullets(
        f"Without fleet mode, {_pct(local['rate_limited']['share'], 1)} of requests met a "
        f"429 and the replicas tracked {_n(local['tasks'])} tasks against "
        f"{_n(redis['tasks'])} with the shared bucket (the other submits failed after their "
        f"retries); p95 latency {local['latency_p95']} s. With the shared bucket: "
        f"{_pct(redis['rate_limited']['share'], 1)} 429s, {_pct(redis['share_of_rate'])} of R.",
        f"Redis round trips per check with the shared store: "
        f"{store['check_path_round_trips_per_check']} on the check path, "
        f"{store['round_trips_per_check']} in all; CPU per check {store['cpu_ms_per_check']} ms "
        f"against {redis['cpu_ms_per_check']} ms with each replica's own `MemoryStore`.",
        f"Latency p50 / p95: {store['latency_p50']} / {store['latency_p95']} s with the "
        f"store, {redis['latency_p50']} / {redis['latency_p95']} s with the bucket alone.",
        *_fleet_cpu_reading(fleet),
    )


def _fleet_cpu_reading(fleet: Results) -> list[str]:
    """What issue #20 asks of the CPU: the check path's per check against the memory
    store's, told apart from the background jobs and the submits (`_cpu_by_part`)."""
    from .fleet import FASTER

    lines = []
    for suffix, rate in (("", "R"), (f"_{FASTER}x", f"{FASTER}R")):
        store = fleet.get(f"store{suffix}", {}).get("cpu_ms_per_check_by_part")
        memory = fleet.get(f"redis{suffix}", {}).get("cpu_ms_per_check_by_part")
        if not store or not memory:
            continue
        total = fleet[f"store{suffix}"]["cpu_ms_per_check"]
        in_all = total / fleet[f"redis{suffix}"]["cpu_ms_per_check"]
        lines.append(
            f"At {rate}, the check path's CPU with the shared store is {store['check_path']} ms "
            f"per check against {memory['check_path']} ms with each replica's own "
            f"`MemoryStore` ({store['check_path'] / memory['check_path']:.2f}x); of its "
            f"{total} ms per check in all ({in_all:.2f}x `MemoryStore`'s), "
            f"{store['background']} ms is background jobs and {store['submits']} ms submits "
            f"({memory['submits']} ms with `MemoryStore`)."
        )
    return lines


def bench_fleet_costs(results: Results) -> list[str]:
    """Each recorded run of `benchmarks.fleet_costs` (by label: "before" is the version
    before the batching, "after" this one), its table and where it ran."""
    from .fleet_costs import table

    costs = results.get("fleet_costs")
    if not costs:
        return ["No fleet costs run recorded (`results/fleet_costs.json` is missing)."]
    out: list[str] = []
    for label, run in costs.items():
        meta = run.get("meta", {})
        out += [f"`{label}` ({meta.get('date', 'date not recorded')}, {meta.get('machine', '')}):",
                "", *table(run).splitlines(), ""]  # fmt: skip
    return out[:-1]


def bench_run_resume(results: Results) -> list[str]:
    """``async-dispatch run`` killed twice against left alone (`benchmarks.run_resume`)."""
    resume = results.get("run_resume")
    if resume is None:
        return ["No run recorded (`results/run_resume.json` is missing)."]
    from .run_resume import table

    plain, killed = resume["runs"]["uninterrupted"], resume["runs"]["killed_twice"]
    return [
        f"Run: {_run(resume.get('meta'))}; {_n(resume['prompts'])} prompts.",
        "",
        *table(resume).splitlines(),
        "",
        *_bullets(
            f"Killed twice, the batch took {killed['wall_s'] / plain['wall_s']:.2f}x the "
            f"wall time of the run left alone (restarts included) and "
            f"{killed['requests_per_prompt'] / plain['requests_per_prompt']:.2f}x its "
            f"requests per prompt; every prompt has one line, none was submitted twice.",
            f"{killed['submit_uncertain']} submits were in flight when a kill landed: they "
            f"are reported `submit-uncertain` (the simulator created "
            f"{killed['submits'] - (resume['prompts'] - killed['submit_uncertain'])} of "
            f"them), never sent again.",
        ),
    ]


def bench_stores(results: Results) -> list[str]:
    """Each store's cost per tracked task and per check (`benchmarks.stores`)."""
    stores = results.get("stores")
    if stores is None:
        return ["No run recorded (`results/stores.json` is missing)."]
    from .stores import table

    sqlite = stores["stores"]["sqlite"]
    return [
        f"Run: {_run(stores.get('meta'))}; {_n(stores['tasks'])} tasks, "
        f"{_n(stores['checks'])} checks, {stores['concurrency']} in flight.",
        "",
        *table(stores).splitlines(),
        "",
        *_bullets(
            f"The SQLite file holds {sqlite['file_bytes_per_task']} B per tracked task.",
        ),
    ]


def bench_tracing(results: Results) -> list[str]:
    from .tracing import table

    tracing = results.get("tracing")
    if tracing is None:
        return ["No tracing run recorded (`results/tracing.json` is missing)."]
    return table(tracing)


def bench_integrity(results: Results) -> list[str]:
    from .integrity import table

    integrity = results.get("integrity")
    if integrity is None:
        return ["No fleet secret run recorded (`results/integrity.json` is missing)."]
    return table(integrity)


REGIONS: Final[dict[str, Callable[[Results], list[str]]]] = {
    "readme-performance": readme_performance,
    "bench-machine": bench_machine,
    "bench-latest": bench_latest,
    "bench-comparison": bench_comparison,
    "bench-fleet": bench_fleet,
    "bench-fleet-reading": bench_fleet_reading,
    "bench-fleet-costs": bench_fleet_costs,
    "bench-run-resume": bench_run_resume,
    "bench-stores": bench_stores,
    "bench-tracing": bench_tracing,
    "bench-integrity": bench_integrity,
}


# -- the Markdown -----------------------------------------------------------------------------


def regions_in(text: str) -> dict[str, tuple[int, int]]:
    """Each region's name -> (line after its begin marker, line of its end marker)."""
    found: dict[str, tuple[int, int]] = {}
    lines = text.splitlines()
    start: tuple[str, int] | None = None
    for number, line in enumerate(lines):
        match = BEGIN.match(line.strip())
        if match:
            if start is not None:
                raise ValueError(f"region {start[0]!r} is not closed before line {number + 1}")
            start = (match["name"], number + 1)
        elif line.strip() == END:
            if start is None:
                raise ValueError(f"{END} without a begin marker, line {number + 1}")
            if start[0] in found:
                raise ValueError(f"region {start[0]!r} appears twice")
            found[start[0]] = (start[1], number)
            start = None
    if start is not None:
        raise ValueError(f"region {start[0]!r} is never closed")
    return found


def rendered_text(text: str, results: Results) -> str:
    """`text` with every region replaced by what `results` render for it."""
    lines = text.splitlines()
    for name, (first, end) in sorted(regions_in(text).items(), key=lambda r: -r[1][0]):
        if name not in REGIONS:
            raise ValueError(f"unknown figures region {name!r} (known: {', '.join(REGIONS)})")
        lines[first:end] = ["", *REGIONS[name](results), ""]
    return "\n".join(lines) + "\n"


def render(*, check: bool = False, results: Results | None = None) -> list[Path]:
    """Rewrite (or, with `check`, only compare) every document; returns the stale ones."""
    results = results if results is not None else load_results()
    stale = []
    for path in DOCUMENTS:
        text = path.read_text()
        new = rendered_text(text, results)
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only say which files are stale")
    args = parser.parse_args(argv)
    stale = render(check=args.check)
    for path in stale:
        verb = "stale" if args.check else "rewrote"
        print(f"{verb}: {path.relative_to(ROOT)}", file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
