"""What a fleet secret costs: `RedisStore` signed and unsigned, side by side in one run.

    python -m benchmarks.integrity [--redis-url URL] [--tasks 20000] [--outcomes 3000]
                                   [--repeats 3]

Issue #20 item 17: outcomes and task records carry the fleet secret's MACs
(`async_dispatch.redis._integrity`). Each figure is measured for both stores in the same
run, their order rotated each repeat, medians kept:

- ``track``: ``add_many`` of N new tasks (a record MAC per task), wall and client CPU;
- ``outcome``: per task, a claim (the record checked), a fenced resolve (the outcome
  signed) and the outcome read back from the stream by the same replica (checked):
  client CPU per outcome, the part of a check's path the secret touches;
- ``memory``: Redis bytes per tracked task (``MEMORY USAGE`` of the fleet's keys);
- ``mac``: microseconds to sign one typical outcome text and to check it, alone.

Writes ``benchmarks/results/integrity.json`` (rendered into benchmarks/README.md by
``python -m benchmarks.render``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import textwrap
import timeit
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import anyio

from async_dispatch import OutcomeKind, TrackedTask, make_outcome
from async_dispatch._outcome_codec import encode_outcome
from async_dispatch._wire import parse_status_payload
from async_dispatch.redis import RedisStore
from async_dispatch.redis._integrity import FleetSigner

from .fleet_costs import _Clock, _delete, _memory_usage, _sink, _tasks

RESULTS: Final = Path(__file__).resolve().parent / "results" / "integrity.json"
SECRET: Final = "benchmark-fleet-secret-0123456789abcdef"
CONTENDERS: Final = ("unsigned", "signed")


def _store(url: str, name: str, kind: str, **kwargs: Any) -> RedisStore:
    return RedisStore(url, name=name, secret=SECRET if kind == "signed" else None, **kwargs)


async def _track(url: str, kind: str, n: int) -> dict[str, float]:
    name = f"bench-integrity-{uuid.uuid4().hex[:8]}"
    store = _store(url, name, kind)
    try:
        async with store.attach(_sink([]), anyio.current_time, lambda: None, last_check_lead=1.0):
            tasks = _tasks(n, kind[0])  # ids of one length for both
            clock = _Clock(store.connection)
            await clock.start()
            added = await store.add_many(tasks)
            figures = await clock.stop()
            assert len(added) == n
            figures["redis_bytes_per_task"] = round(
                await _memory_usage(store.connection, name) / n, 1
            )
    finally:
        async with store.connection:
            await _delete(store.connection, name)
    return figures


async def _outcomes(url: str, kind: str, n: int) -> dict[str, float]:
    name = f"bench-integrity-{uuid.uuid4().hex[:8]}"
    store = _store(url, name, kind, read_ahead=n)
    received: list[Any] = []
    try:
        async with store.attach(
            _sink(received), anyio.current_time, lambda: None, last_check_lead=1.0
        ):
            now = anyio.current_time()
            tasks = []
            for i in range(n):
                task = TrackedTask(f"{kind[0]}-{uuid.UUID(int=i)}", started=now,
                                   deadline=now + 3600.0, context={"i": i})  # fmt: skip
                task.due = now
                tasks.append(task)
            await store.add_many(tasks)
            clock = _Clock(store.connection)
            await clock.start()
            for _ in range(n):
                claimed = await store.claim(anyio.current_time())
                assert claimed is not None
                status = parse_status_payload(
                    claimed.request_id,
                    {"status": "success", "response": {"text": "done"}, "usage": {"actions": 3}},
                )
                outcome = make_outcome(
                    claimed, OutcomeKind.SUCCESS, anyio.current_time(), status=status, via="poll"
                )
                assert await store.resolve(claimed, outcome, fenced=True)
            with anyio.fail_after(120):
                while len(received) < n:  # noqa: ASYNC110 - the sink is a plain callable
                    await anyio.sleep(0.005)
            figures = await clock.stop()
    finally:
        async with store.connection:
            await _delete(store.connection, name)
    figures["client_cpu_us_per_outcome"] = round(1e6 * figures["client_cpu_s"] / n, 1)
    return figures


def _mac_micro() -> dict[str, float]:
    signer = FleetSigner(SECRET, "bench")
    task = TrackedTask("req_" + uuid.uuid4().hex, started=0.0, deadline=60.0, context={"i": 1})
    status = parse_status_payload(task.request_id, {"status": "success", "response": {"text": "x"}})
    text = encode_outcome(make_outcome(task, OutcomeKind.SUCCESS, 12.0, status=status))
    mac = signer.outcome(text)
    runs = 20_000
    sign = min(timeit.repeat(lambda: signer.outcome(text), number=runs, repeat=5)) / runs
    check = min(timeit.repeat(lambda: signer.check_entry(text, mac, ""), number=runs, repeat=5))
    return {
        "outcome_bytes": len(text),
        "sign_us": round(1e6 * sign, 2),
        "check_us": round(1e6 * check / runs, 2),
    }


async def run(url: str, tasks: int, outcomes: int, repeats: int) -> dict[str, Any]:
    track: dict[str, list[dict[str, float]]] = {kind: [] for kind in CONTENDERS}
    out: dict[str, list[dict[str, float]]] = {kind: [] for kind in CONTENDERS}
    for repeat in range(repeats):
        order = CONTENDERS if repeat % 2 == 0 else CONTENDERS[::-1]
        for kind in order:
            track[kind].append(await _track(url, kind, tasks))
            out[kind].append(await _outcomes(url, kind, outcomes))

    def median(runs: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(run[key] for run in runs), 4)

    summary: dict[str, Any] = {}
    for kind in CONTENDERS:
        summary[kind] = {
            "track_wall_s": median(track[kind], "wall_s"),
            "track_client_cpu_s": median(track[kind], "client_cpu_s"),
            "redis_bytes_per_task": median(track[kind], "redis_bytes_per_task"),
            "outcome_client_cpu_us": median(out[kind], "client_cpu_us_per_outcome"),
            "outcome_wall_s": median(out[kind], "wall_s"),
        }
    signed, unsigned = summary["signed"], summary["unsigned"]
    return {
        "run": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}",
            "command": f"python -m benchmarks.integrity --tasks {tasks} --outcomes {outcomes} "
            f"--repeats {repeats}",
        },
        "tasks": tasks,
        "outcomes": outcomes,
        "summary": summary,
        "ratios": {
            "track_client_cpu": round(
                signed["track_client_cpu_s"] / unsigned["track_client_cpu_s"], 2
            ),
            "track_wall": round(signed["track_wall_s"] / unsigned["track_wall_s"], 2),
            "outcome_client_cpu": round(
                signed["outcome_client_cpu_us"] / unsigned["outcome_client_cpu_us"], 2
            ),
        },
        "redis_bytes_added_per_task": round(
            signed["redis_bytes_per_task"] - unsigned["redis_bytes_per_task"], 1
        ),
        "mac": _mac_micro(),
    }


def table(results: dict[str, Any]) -> list[str]:
    """The Markdown lines of one run (`results` as `run` returns it)."""
    meta, summary, ratios = results["run"], results["summary"], results["ratios"]
    unsigned, signed, mac = summary["unsigned"], summary["signed"], results["mac"]
    run = f"Run: {meta['date']}, {meta['machine']}; `{meta['command']}`."
    return [
        *textwrap.wrap(run, 90, break_on_hyphens=False, break_long_words=False),
        "",
        "| cost | unsigned | signed | ratio |",
        "|---|---|---|---|",
        f"| track {results['tasks']:,} ids: client CPU s | {unsigned['track_client_cpu_s']} "
        f"| {signed['track_client_cpu_s']} | {ratios['track_client_cpu']}x |",
        f"| track {results['tasks']:,} ids: wall s | {unsigned['track_wall_s']} "
        f"| {signed['track_wall_s']} | {ratios['track_wall']}x |",
        f"| claim, resolve and read back one outcome: client CPU µs "
        f"| {unsigned['outcome_client_cpu_us']} | {signed['outcome_client_cpu_us']} "
        f"| {ratios['outcome_client_cpu']}x |",
        f"| Redis memory per tracked task | {unsigned['redis_bytes_per_task']} B "
        f"| {signed['redis_bytes_per_task']} B | +{results['redis_bytes_added_per_task']} B |",
        "",
        f"One MAC over a {mac['outcome_bytes']}-byte outcome: {mac['sign_us']} µs to make, "
        f"{mac['check_us']} µs to check.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.integrity")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--outcomes", type=int, default=3_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results = anyio.run(run, args.redis_url, args.tasks, args.outcomes, args.repeats)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
