"""What resuming costs ``async-dispatch run``: a run killed twice against one left alone.

    python -m benchmarks.run_resume [--prompts 2000] [--out benchmarks/results/run_resume.json]

Both runs submit the same prompts to a fresh simulator each, served over TCP by this
process, with the same settings: tasks that end in well under a second (median 0.2 s),
a budget well above what they need. The command runs as a real process, as a user runs
it. The interrupted run is killed with SIGKILL once a third, then two thirds, of the
prompts have their result line, and started again each time, until it completes.

Measured, side by side: wall time (from the first start to the end of the last process,
restarts included), the simulator's own count of submits and status reads, and requests
per prompt. Checked as it goes: one result line per prompt, no prompt submitted twice
(the simulator's record of every task's prompt).

Writes the figures to ``benchmarks/results/run_resume.json``; `benchmarks.render` puts
them in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from async_dispatch.testing import Durations, SimulatorConfig, serve

__all__ = ["main"]

_DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "run_resume.json"
#: The run's settings: a budget above the simulator's need, a quick cadence.
_SETTINGS = ["--rate", "400", "--interval", "0.1", "--max-interval", "0.3"]
_DURATIONS = Durations(median=0.2, sigma=0.5, minimum=0.05, maximum=0.8)


async def _lines(path: Path) -> int:
    try:
        return (await anyio.Path(path).read_bytes()).count(b"\n")
    except FileNotFoundError:
        return 0


async def _start(prompts: Path, results: Path, base_url: str) -> anyio.abc.Process:
    command = [
        sys.executable, "-m", "async_dispatch._cli", "run", str(prompts),
        "--out", str(results), "--progress-interval", "3600", *_SETTINGS,
    ]  # fmt: skip
    env = {
        **os.environ,
        "DISPATCH_API_KEY": "sim-key",
        "DISPATCH_BASE_URL": base_url,
        "DISPATCH_EXECUTION_MODE": "cloud",
    }
    return await anyio.open_process(command, env=env, stdout=None, stderr=None)


async def _kill_at(child: anyio.abc.Process, results: Path, lines: int) -> None:
    while await _lines(results) < lines:
        if child.returncode is not None:
            raise RuntimeError("the run ended before it could be killed: use more prompts")
        await anyio.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    await child.wait()


async def one_run(directory: Path, count: int, kills: list[int], seed: int) -> dict[str, Any]:
    """One batch to the end, killed with SIGKILL at each number of result lines."""
    prompts = directory / "prompts.txt"
    texts = [f"/Operator benchmark task {n:05d}" for n in range(count)]
    prompts.write_text("".join(text + "\n" for text in texts))
    results = directory / "results.jsonl"
    async with serve(SimulatorConfig(seed=seed, durations=_DURATIONS)) as running:
        started = time.perf_counter()
        for lines in kills:
            async with await _start(prompts, results, running.base_url) as child:
                await _kill_at(child, results, lines)
        async with await _start(prompts, results, running.base_url) as child:
            code = await child.wait()
        wall = time.perf_counter() - started
        sim = running.simulator
        created = Counter(task.prompt_excerpt for task in sim.app.tasks.values())
        submits, reads = sim.stats.requests["submit"], sim.stats.requests["status"]
    written = [json.loads(line) for line in results.read_text().splitlines()]
    indices = Counter(line["index"] for line in written)
    if sorted(indices) != list(range(count)) or max(indices.values()) != 1:
        raise AssertionError("not exactly one result line per prompt")
    if max(created.values()) != 1:
        raise AssertionError("a prompt was submitted twice")
    kinds = Counter(line["kind"] for line in written)
    return {
        "kills": len(kills),
        "exit_code": code,
        "wall_s": round(wall, 2),
        "submits": submits,
        "status_reads": reads,
        "requests_per_prompt": round((submits + reads) / count, 3),
        "lines": len(written),
        "submit_uncertain": kinds.get("submit-uncertain", 0),
        "kinds": dict(kinds),
    }


async def main(count: int) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as top:
        for name, kills in (("uninterrupted", []), ("killed_twice", [count // 3, 2 * count // 3])):
            directory = Path(top) / name
            directory.mkdir()
            runs[name] = await one_run(directory, count, kills, seed=21)
    return {
        "prompts": count,
        "runs": runs,
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}",
        },
    }


def table(results: dict[str, Any]) -> str:
    """The two runs side by side, as Markdown."""
    rows = [
        "| run | kill -9 | wall time s | submits | status reads | requests per prompt "
        "| result lines | submit-uncertain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in results["runs"].items():
        rows.append(
            f"| {name.replace('_', ' ')} | {run['kills']} | {run['wall_s']} | {run['submits']} "
            f"| {run['status_reads']} | {run['requests_per_prompt']} | {run['lines']} "
            f"| {run['submit_uncertain']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=_DEFAULT_OUT)
    args = parser.parse_args()
    outcome = anyio.run(main, args.prompts, backend="asyncio")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(outcome, indent=1) + "\n")
    print(table(outcome))
    print(f"wrote {args.out}", file=sys.stderr)
