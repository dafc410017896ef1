"""Fleet mode: four replicas on one key, each with its own bucket or one shared in Redis.

Issue #12's setting. The simulator enforces a per-key limit of R requests a second; four
replica processes (tests/fleet_replica.py) each run a `DispatchClient` + `Poller` with
rate R and poll as fast as their limiter allows. Variants:

- ``local``: each replica has its own in-process `TokenBucket` (what a fleet gets without
  fleet mode): together they offer 4R, and the server answers the excess with 429s.
- ``redis``: one `RedisTokenBucket` shared through Redis: the fleet sends R, and no 429.

- ``store``: four processes with the shared bucket AND one `RedisStore` (true fleet
  mode: any replica checks any task), against ``memory``: the shared bucket with each
  replica's own `MemoryStore`, on the same workload of tasks that finish. Both report the
  429 share, the rate achieved, detection latency (completion on the simulator to the
  outcome reaching the app, p50/p95), Redis round trips per status check (counted in each
  replica: every command and script it sends, background jobs included) and client CPU
  per status check (``time.process_time()`` of each replica).
- ``takeover``: four `RedisStore` replicas whose status reads are slow (so checks are
  always in flight), one killed with SIGKILL while it holds leases: the time from the
  kill to the last of its leased tasks resolving on a survivor.

Needs a Redis (``--redis-url``, default ``$REDIS_URL`` then the local one); without one it
prints why and skips. Run alone: ``python -m benchmarks.fleet [--quick]`` (prints a table,
writes ``benchmarks/results/fleet.json``), or ``python -m benchmarks --only fleet``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from async_dispatch.testing import Durations, Faults, OutcomeMix, RateLimit, SimulatorConfig, serve

from ._cpu_split import CpuSplit


def rate_limited_share(rejected: int, requests: int) -> dict[str, float]:
    return {"count": rejected, "share": round(rejected / requests, 4) if requests else 0.0}


# -- fleet mode with a shared store: one replica process ------------------------------------

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fleet.json"


def _say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def _count_round_trips() -> Counter[str]:
    """Count every command this process sends to Redis, by what it was for.

    Every command of `RedisConnection` (scripts included) and of `RedisStore`'s direct
    calls goes through `RedisConnection.translate_errors`: counting its entries counts the
    round trips (the connect is left out).
    """
    from async_dispatch.redis import RedisConnection

    counts: Counter[str] = Counter()
    original = RedisConnection.translate_errors

    def counted(self: RedisConnection, doing: str) -> contextlib.AbstractContextManager[None]:
        if doing != "connecting":
            counts[doing.removeprefix("running ").removesuffix(".lua")] += 1
        return original(self, doing)

    RedisConnection.translate_errors = counted  # type: ignore[method-assign,assignment]
    return counts


async def _replica(args: argparse.Namespace) -> None:
    """One replica: submit tasks at a steady pace, print each outcome with its wall time."""
    from async_dispatch import DispatchClient, DispatchError, Limiter, Poller, TokenBucket
    from async_dispatch.redis import RedisStore, RedisTokenBucket

    counts = _count_round_trips()
    split = _split_cpu()
    shared = RedisTokenBucket(args.redis_url, name=args.name, rate=args.rate, burst=args.burst)
    # "local": each replica its own bucket, the mistake fleet mode exists to prevent.
    bucket: Limiter = shared if args.limiter == "redis" else TokenBucket(args.rate, args.burst)
    store = None
    if args.store == "redis":
        # The store's own defaults unless told: what a fleet runs with. The takeover run
        # sets both short, to time a takeover, at the cost of more background work.
        timing = {"lease": args.lease, "outcome_idle": args.outcome_idle}
        store = RedisStore(
            shared.connection,
            name=args.name,
            **{key: value for key, value in timing.items() if value is not None},
        )
    async with (
        shared.connection,
        bucket,
        DispatchClient(
            api_key="sim-key", base_url=args.base_url, bucket=bucket, execution_mode="cloud"
        ) as client,
    ):
        poller = Poller(
            client,
            store=store,
            initial_interval=0.05,  # as fast as the budget lets it: the fleet is saturated
            max_interval=0.1,
            max_in_flight=8,
            deadline=120,
        )
        async with poller:
            _say(ready=os.getpid(), consumer=store.consumer if store is not None else None)
            while not os.path.exists(args.go):  # noqa: ASYNC110, ASYNC240 (start when all are ready)
                await anyio.sleep(0.01)
            cpu, sent = time.process_time(), sum(counts.values())
            split_before = split.snapshot()
            profile = _start_profile()

            async def submit() -> None:
                for index in range(args.tasks):
                    try:
                        _say(submitted=await poller.submit(f"/Operator fleet bench {index}"))
                    except DispatchError as exc:  # e.g. 429s past the retries, with "local"
                        _say(submit_failed=type(exc).__name__)
                    await anyio.sleep(args.submit_every)

            async def take_results() -> None:
                async for outcome in poller.results(forever=True):
                    _say(
                        outcome=outcome.request_id,
                        at=time.time(),
                        kind=outcome.kind.value,
                        final=outcome.final,
                        deliveries=outcome.deliveries,
                    )

            with anyio.move_on_after(args.duration):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: split.charged_to("submits", submit()))
                    tg.start_soon(lambda: split.charged_to("results", take_results()))
            stats = poller.stats
            if profile is not None:
                profile.disable()
                where = Path(os.environ[_PROFILE_ENV])
                profile.dump_stats(where / f"{args.limiter}-{args.store}-{os.getpid()}.prof")
            _say(
                summary=True,
                polls_sent=stats.polls_sent,
                submits_sent=stats.submits_sent,
                cpu=time.process_time() - cpu,
                round_trips=sum(counts.values()) - sent,
                by_purpose=dict(counts),
                cpu_split=split.since(*split_before),
            )


def _split_cpu() -> CpuSplit:
    """Charge the CPU of a replica's long-lived coroutines to the part of the work they do
    (`benchmarks._cpu_split`): the workers (claims, status reads, ends of checks) to the
    check path; the reaper (expiry rounds), outcome reads and takeovers, lease renewals
    and acks to the background; coredis's reader and writer tasks to "redis_io" (shared
    by every command: `run_store_variant` splits it by the commands each part sent)."""
    from coredis.connection._base import BaseConnection

    from async_dispatch import Poller
    from async_dispatch.redis import RedisStore

    split = CpuSplit()
    for owner, name, part in (
        (Poller, "_work", "check_path"),
        (RedisStore, "_send_ends", "check_path"),
        (Poller, "_reap", "background"),
        (RedisStore, "_read_outcomes", "background"),
        (RedisStore, "_maintain", "background"),
        (RedisStore, "_send_acks", "background"),
        (Poller, "_settle", "submits"),
        (BaseConnection, "_reader_task", "redis_io"),
        (BaseConnection, "_writer_task", "redis_io"),
    ):
        split.patch(owner, name, part)
    return split


#: Set by ``--profile DIR``: each replica profiles its measured window into DIR.
_PROFILE_ENV = "ASYNC_DISPATCH_BENCH_PROFILE"


def _start_profile() -> Any:
    """A running `cProfile.Profile` when ``--profile`` asked for one, else None."""
    if not os.environ.get(_PROFILE_ENV):
        return None
    import cProfile

    profile = cProfile.Profile(time.process_time)  # CPU, not wall time (a busy machine)
    profile.enable()
    return profile


class _Process:
    """A replica process whose JSON lines land in a file (readable while it runs)."""

    def __init__(self, *args: str) -> None:
        self.out = tempfile.NamedTemporaryFile("w+", prefix="fleet-bench-", suffix=".jsonl")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet", "replica", *args],
            cwd=ROOT,
            stdout=self.out,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def events(self) -> list[dict[str, Any]]:
        with open(self.out.name) as lines:
            return [json.loads(line) for line in lines if line.startswith("{")]

    def kill(self) -> None:
        """SIGKILL, to this process only (by its PID), if it still runs."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self.out.close()


@contextlib.asynccontextmanager
async def _four_replicas(
    base_url: str, redis_url: str, name: str, *args: str, ready_within: float
) -> AsyncIterator[list[_Process]]:
    """Four replica processes on fleet `name`, all ready and started together (the go
    file), for the block; then each is stopped by its PID and the fleet's keys deleted."""
    go = Path(tempfile.gettempdir()) / f"{name}.go"
    processes: list[_Process] = []
    try:
        for _ in range(4):
            processes.append(
                _Process(
                    *("--base-url", base_url, "--redis-url", redis_url, "--name", name),
                    *("--go", str(go), *args),
                )
            )
        await _wait_for(
            lambda: all(any("ready" in e for e in p.events()) for p in processes), ready_within
        )
        go.touch()
        yield processes
    finally:
        for process in processes:
            process.close()
        go.unlink(missing_ok=True)
        await _delete_keys(redis_url, name)


async def _wait_for(predicate: Any, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.05)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def run_store_variant(
    limiter: str,
    store: str,
    *,
    rate: float,
    server_burst: int,
    duration: float,
    tasks: int,
    redis_url: str,
) -> dict[str, Any]:
    """Four replicas: `limiter` "local" (a bucket each) or "redis" (one shared), `store`
    "memory" (each its own tasks) or "redis" (one RedisStore for the fleet)."""
    # A third of the tasks never finish: the fleet stays saturated (rate achieved), and the
    # rest give the detection latency.
    config = SimulatorConfig(
        outcomes=OutcomeMix(success=2.0, error=0.0, input_required=0.0, never=1.0),
        durations=Durations(median=1.0, sigma=0.5, minimum=0.3, maximum=2.5),
        rate_limit=RateLimit(rate=rate, burst=server_burst),
        seed=12,
    )
    name = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    submit_every = duration * 0.3 / tasks
    async with serve(config) as running:
        sim = running.simulator
        async with _four_replicas(
            running.base_url,
            redis_url,
            name,
            *("--rate", repr(rate), "--store", store, "--limiter", limiter),
            *("--duration", repr(duration)),
            *("--tasks", str(tasks), "--submit-every", repr(submit_every)),
            ready_within=120,
        ) as processes:
            loop_start = anyio.current_time()
            await _wait_for(
                lambda: all(any("summary" in e for e in p.events()) for p in processes),
                duration + 30,
            )
            events = [p.events() for p in processes]
        requests = sum(sim.stats.requests.values())
        rejected = sim.stats.rate_limited
        window = (loop_start + 0.5, loop_start + duration - 0.5)
        accepted = sum(window[0] <= t < window[1] for t in sim.accepted_request_times())
        submitted = {e["submitted"] for ev in events for e in ev if "submitted" in e}
        latencies: list[float] = []
        seen: Counter[str] = Counter()
        for ev in events:
            for e in ev:
                if "outcome" in e and e["final"]:
                    seen[e["outcome"]] += 1
                    completed = sim.task_completed_at(e["outcome"])
                    if completed is not None and e["deliveries"] == 1:
                        latencies.append(e["at"] - completed.wall.timestamp())
    summaries = [next(e for e in ev if "summary" in e) for ev in events]
    polls = sum(s["polls_sent"] for s in summaries)
    trips = sum(s["round_trips"] for s in summaries)
    purposes: Counter[str] = Counter()
    for summary in summaries:
        purposes.update(summary["by_purpose"])
    # The check path: a token (less the submits' own), a claim, the end of the check.
    submits = sum(s["submits_sent"] for s in summaries)
    check_path = purposes["token_bucket_acquire"] - submits
    check_path += sum(purposes[n] for n in ("store_claim", "store_end_check", "store_resolve"))
    return {
        "rate": rate,
        "requests": requests,
        "rate_limited": rate_limited_share(rejected, requests),
        "accepted_per_second": round(accepted / (window[1] - window[0]), 2),
        "share_of_rate": round(accepted / (window[1] - window[0]) / rate, 3),
        "tasks": len(submitted),
        "resolved": len(submitted & set(seen)),
        "duplicates": sum(n - 1 for n in seen.values()),
        "latency_p50": _round(_percentile(latencies, 50)),
        "latency_p95": _round(_percentile(latencies, 95)),
        "status_checks": polls,
        "round_trips_per_check": round(trips / polls, 2) if polls and trips else None,
        "check_path_round_trips_per_check": (
            round(check_path / polls, 2) if polls and trips else None
        ),
        "round_trips_by_purpose": dict(purposes.most_common()),
        "cpu_ms_per_check": round(sum(s["cpu"] for s in summaries) / polls * 1000, 3)
        if polls
        else None,
        "cpu_ms_per_check_by_part": _cpu_by_part(summaries, purposes, check_path, polls),
    }


#: The commands a submit sends (besides its token): its intent, its end, the task's add.
_SUBMIT_COMMANDS = ("store_begin_submit", "store_send_intent", "store_add", "store_add_many")


def _cpu_by_part(
    summaries: list[dict[str, Any]], purposes: Counter[str], check_path: int, polls: int
) -> dict[str, float] | None:
    """The replicas' CPU per status check, by part (`_split_cpu`): ``check_path``,
    ``background``, ``submits``, ``results`` (outcomes to the application); they add up to
    ``cpu_ms_per_check``. coredis's reader and writer tasks work for every command alike:
    their CPU and steps go to the check path, submits and background by the share of the
    commands each sent. What no part ran (the event loop between steps, tasks no part
    names), ``loop_and_unclaimed``, is in the parts too, by the share of the steps each
    had the loop run; it is also given alone."""
    if not polls:
        return None
    seconds: defaultdict[str, float] = defaultdict(float)
    steps: defaultdict[str, float] = defaultdict(float)
    for summary in summaries:
        for total, taken in ((seconds, "seconds"), (steps, "steps")):
            for part, amount in summary["cpu_split"][taken].items():
                total[part] += amount
    trips = sum(purposes.values())
    submits = sum(s["submits_sent"] for s in summaries)
    submit_commands = submits + sum(purposes[name] for name in _SUBMIT_COMMANDS)
    shares = {
        "check_path": check_path,
        "submits": submit_commands,
        "background": trips - check_path - submit_commands,
    }
    for counter in (seconds, steps):
        io = counter.pop("redis_io", 0.0)
        for part, commands in shares.items():
            counter[part] += io * commands / trips if trips else 0
    unclaimed = sum(s["cpu"] for s in summaries) - sum(seconds.values())
    parts = ("check_path", "background", "submits", "results")
    total_steps = sum(steps[part] for part in parts) or 1
    per_check = {
        part: round((seconds[part] + unclaimed * steps[part] / total_steps) / polls * 1000, 3)
        for part in parts
    }
    return {**per_check, "loop_and_unclaimed": round(unclaimed / polls * 1000, 3)}


async def _delete_keys(redis_url: str, name: str) -> None:
    """Leave nothing behind in a shared Redis: every key of the benchmark's fleet name."""
    from async_dispatch.redis import RedisConnection

    async with RedisConnection(redis_url) as connection:
        client = connection.client
        keys = [key async for key in client.scan_iter(match=RedisConnection.key(name, "*"))]
        if keys:
            await client.delete(keys)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


#: The ids whose check ARGV[1] (a consumer name) holds under a live lease, read as the
#: scripts read them (lua/_task.lua): every record is in the one `tasks` hash, its lease
#: expiry in ``l`` (0 when not claimed) and its claimer in ``b``; times are the server's.
_HELD_LEASES = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1e6
local held = {}
for _, checks in ipairs({KEYS[2], KEYS[3]}) do
  for _, rid in ipairs(redis.call('ZRANGE', checks, 0, -1)) do
    local raw = redis.call('HGET', KEYS[1], rid)
    local task = raw and cmsgpack.unpack(raw)
    if task and (task.l or 0) > now and task.b == ARGV[1] then
      held[#held + 1] = rid
    end
  end
end
return held
"""


async def _victim_leases(redis_url: str, name: str, consumer: str) -> list[str]:
    """The ids whose check `consumer` holds under a live lease right now."""
    from async_dispatch.redis import RedisConnection

    async with RedisConnection(redis_url) as connection:
        keys = [RedisConnection.key(name, key) for key in ("tasks", "last", "due")]
        held = await connection.client.eval(_HELD_LEASES, keys=keys, args=[consumer])
        assert isinstance(held, list)
        return [rid.decode() if isinstance(rid, bytes) else str(rid) for rid in held]


async def run_takeover(*, lease: float, tasks: int, redis_url: str) -> dict[str, Any]:
    """Kill -9 a replica that holds leases; time until the last of its tasks resolves."""
    config = SimulatorConfig(
        outcomes=OutcomeMix.only("success"),
        durations=Durations.fixed(1.0),
        faults=Faults(slow=1.0, slow_delay=1.0),  # every status read takes a second
        seed=12,
    )
    name = f"bench-takeover-{uuid.uuid4().hex[:8]}"
    async with (
        serve(config) as running,
        _four_replicas(
            running.base_url,
            redis_url,
            name,
            *("--rate", "100", "--burst", "20", "--store", "redis"),
            *("--duration", "60", "--lease", repr(lease), "--outcome-idle", repr(lease)),
            *("--tasks", str(tasks), "--submit-every", "0"),
            ready_within=60,
        ) as processes,
    ):
        victim, survivors = processes[0], processes[1:]
        consumer = next(e["consumer"] for e in victim.events() if "ready" in e)
        held: list[str] = []
        with anyio.move_on_after(30):
            while not held:
                held = await _victim_leases(redis_url, name, consumer)
                await anyio.sleep(0.05)
        if not held:
            raise RuntimeError(f"replica {consumer} held no lease within 30 s: none to take over")
        victim.kill()
        killed_at = time.time()

        def finals() -> dict[str, float]:
            done: dict[str, float] = {}
            for process in survivors:
                for e in process.events():
                    if "outcome" in e and e["final"]:
                        done.setdefault(e["outcome"], e["at"])
            return done

        await _wait_for(lambda: set(held) <= set(finals()), lease * 3 + 30)
        took = max(finals()[rid] for rid in held) - killed_at
        submitted = {e["submitted"] for p in processes for e in p.events() if "submitted" in e}
        await _wait_for(lambda: submitted <= set(finals()) | _victim_done(victim), 60)
        redelivered = sum(
            1
            for p in survivors
            for e in p.events()
            if "outcome" in e and e.get("deliveries", 1) > 1
        )
    return {
        "lease": lease,
        "tasks": len(submitted),
        "victim_leases": len(held),
        "takeover_seconds": round(took, 2),
        "redelivered_outcomes": redelivered,
        "lost": 0,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _victim_done(victim: _Process) -> set[str]:
    return {e["outcome"] for e in victim.events() if "outcome" in e and e["final"]}


# -- the whole benchmark --------------------------------------------------------------------

#: Result key -> (limiter, store) of the four replicas.
VARIANTS = {"local": ("local", "memory"), "redis": ("redis", "memory"), "store": ("redis", "redis")}
#: The two shared-bucket variants again at `FASTER` times the rate: the same background
#: work per second, spread over that many times the checks.
FASTER = 4
FAST_VARIANTS = {f"{key}_{FASTER}x": key for key in ("redis", "store")}
ALL_PARTS = (*VARIANTS, *FAST_VARIANTS, "takeover")


def redis_unavailable(url: str) -> str | None:
    """Why no Redis answers at `url`, or None when one does."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1.0):
            return None
    except OSError as exc:
        return f"no Redis at {parts.hostname}:{parts.port or 6379} ({exc.strerror or exc})"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    reason = redis_unavailable(args.redis_url)
    if reason is not None:
        return {"skipped": f"fleet benchmark needs Redis: {reason}; set REDIS_URL"}
    results: dict[str, Any] = {
        "quick": args.quick,
        "rate": args.rate,
        "server_burst": args.server_burst,
        "duration": args.duration,
        "replicas": 4,
    }
    runs = [(key, *VARIANTS[key], args.rate) for key in VARIANTS]
    runs += [(key, *VARIANTS[of], args.rate * FASTER) for key, of in FAST_VARIANTS.items()]
    for key, limiter, store, rate in runs:
        if key not in args.parts:
            continue
        results[key] = await _reported(
            run_store_variant(
                limiter,
                store,
                rate=rate,
                server_burst=args.server_burst,
                duration=args.duration,
                tasks=args.tasks,
                redis_url=args.redis_url,
            )
        )
    if "takeover" in args.parts:
        results["takeover"] = await _reported(
            run_takeover(lease=args.lease, tasks=args.takeover_tasks, redis_url=args.redis_url)
        )
    return results


async def _reported(variant: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A variant's figures, or what went wrong: one failed variant loses only its own."""
    try:
        return await variant
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}


def table(results: dict[str, Any]) -> str:
    """The figures as a Markdown table (what the README section shows)."""
    if "skipped" in results:
        return f"fleet: skipped ({results['skipped']})"
    rows = [
        "| variant | 429 share | accepted/s (of R) | p50 / p95 latency s "
        "| Redis round trips/check (check path) | CPU ms/check |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in _LABELS.items():
        r = results.get(key, {"error": "not run"})
        if "error" in r:
            rows.append(f"| {label} | failed: {r['error'][:60]} | | | | |")
            continue
        latency = "-"
        if "latency_p50" in r:
            latency = f"{r['latency_p50']} / {r['latency_p95']}"
        rows.append(
            f"| {label} | {r['rate_limited']['share']:.2%} | {r['accepted_per_second']} "
            f"({r['share_of_rate']:.0%}) | {latency} | {r['round_trips_per_check'] or '-'} "
            f"({r['check_path_round_trips_per_check'] or '-'}) "
            f"| {r.get('cpu_ms_per_check', '-')} |"
        )
    rows += ["", *cpu_table(results)]
    kept = results.get("kept_from", {})
    if kept:
        rows += ["", "Kept from an earlier run (`--parts`): " + ", ".join(
            f"{part} ({date or 'date not recorded'})" for part, date in sorted(kept.items())
        ) + "."]  # fmt: skip
    t = results.get("takeover", {"error": "not run"})
    rows.append("")
    if "error" in t:
        rows.append(f"Takeover after kill -9: failed: {t['error']}")
        return "\n".join(rows)
    rows.append(
        f"Takeover after kill -9 (lease {t['lease']:g} s): the victim held "
        f"{t['victim_leases']} lease(s); the last of them resolved {t['takeover_seconds']} s "
        f"after the kill; {t['tasks']} tasks, none lost, {t['redelivered_outcomes']} "
        "outcomes redelivered."
    )
    return "\n".join(rows)


_LABELS = {
    "local": "own TokenBucket + MemoryStore each",
    "redis": "RedisTokenBucket + MemoryStore each",
    "store": "RedisTokenBucket + RedisStore",
    f"redis_{FASTER}x": f"RedisTokenBucket + MemoryStore each at {FASTER}R",
    f"store_{FASTER}x": f"RedisTokenBucket + RedisStore at {FASTER}R",
}


def cpu_table(results: dict[str, Any]) -> list[str]:
    """Client CPU per check by part (`_cpu_by_part`), each shared-bucket variant run."""
    rows = [
        "| CPU ms/check by part | check path | background jobs | submits | outcomes to app "
        "| (loop and unclaimed, in the parts) | check path vs MemoryStore |",
        "|---|---|---|---|---|---|---|",
    ]
    memory_at_faster = f"redis_{FASTER}x"
    for key, memory in (
        ("redis", "redis"),
        ("store", "redis"),
        (memory_at_faster, memory_at_faster),
        (f"store_{FASTER}x", memory_at_faster),
    ):
        parts = results.get(key, {}).get("cpu_ms_per_check_by_part")
        if not parts:
            continue
        base = results.get(memory, {}).get("cpu_ms_per_check_by_part")
        ratio = f"{parts['check_path'] / base['check_path']:.2f}x" if base else "-"
        rows.append(
            f"| {_LABELS[key]} | {parts['check_path']} | {parts['background']} "
            f"| {parts['submits']} | {parts['results']} | {parts['loop_and_unclaimed']} "
            f"| {ratio} |"
        )
    return rows if len(rows) > 2 else []


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--server-burst", type=int, default=10)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--tasks", type=int, default=30, help="tasks per replica (store runs)")
    parser.add_argument("--takeover-tasks", type=int, default=8)
    parser.add_argument(
        "--lease",
        type=float,
        default=2.0,
        help="the takeover run's lease and outcome_idle (the other runs use the store's defaults)",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--parts",
        type=lambda text: text.split(","),
        default=list(ALL_PARTS),
        help=f"comma-separated parts to run (default all: {','.join(ALL_PARTS)}); the "
        "parts left out keep their figures from the results file already at --out",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="each replica writes a cProfile of its measured window into this directory "
        "(the figures then include the profiler's overhead: do not record them)",
    )
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ[_PROFILE_ENV] = str(args.profile.resolve())
    unknown = set(args.parts) - set(ALL_PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.quick:
        args.duration, args.tasks = 5.0, 10
    return args


def parse_replica(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one replica of the fleet benchmark")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--store", choices=("memory", "redis"), default="redis")
    parser.add_argument("--limiter", choices=("local", "redis"), default="redis")
    parser.add_argument("--go", required=True, help="start once this file exists")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--submit-every", type=float, default=0.0)
    parser.add_argument("--lease", type=float, help="RedisStore's lease (its default if unset)")
    parser.add_argument(
        "--outcome-idle", type=float, help="RedisStore's outcome_idle (its default if unset)"
    )
    return parser.parse_args(argv)


def _run_meta(*, quick: bool) -> dict[str, Any]:
    """When and where the run was made, for the figures rendered from fleet.json."""
    import datetime
    import platform

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "quick": quick,
    }


async def run_fleet(*, quick: bool) -> dict[str, Any]:
    """For ``python -m benchmarks --only fleet``: this benchmark, in the suite's loop."""
    return await main(parse(["--quick"] if quick else []))


if __name__ == "__main__":
    if sys.argv[1:2] == ["replica"]:
        anyio.run(_replica, parse_replica(sys.argv[2:]), backend="asyncio")
        sys.exit(0)
    options = parse(sys.argv[1:])
    outcome = anyio.run(main, options, backend="asyncio")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    if options.out.exists() and "skipped" not in outcome:
        # The parts not run this time keep their last figures (and say when they ran).
        kept = json.loads(options.out.read_text())
        for part in set(ALL_PARTS) - set(options.parts):
            if part in kept:
                outcome[part] = kept[part]
                # The date of the run that measured it (kept once already: that one's).
                dates = kept.get("kept_from", {})
                date = dates[part] if part in dates else kept.get("meta", {}).get("date")
                outcome.setdefault("kept_from", {})[part] = date
    outcome["meta"] = _run_meta(quick=options.quick)
    options.out.write_text(json.dumps(outcome, indent=1) + "\n")
    print(table(outcome))
    print(f"wrote {options.out}", file=sys.stderr)
