"""``async-dispatch demo``: the library's whole story in one command and about 25 seconds.

A simulator serves the Remote Dispatch API over real TCP on a free loopback port, in this
process's task group. A few hundred tasks are fanned out through a `Poller` with a known
mix (most succeed, some fail, a few ask for input and then finish, a few never finish and
hit their deadline: each task's ``simulate`` field fixes its ending, the simulator draws
its duration). The poller tracks them under a client-side rate limit, with the server's
limit a little higher so the odd 429 shows how the shared pause works. The summary says
what happened and what it cost: outcomes by kind, requests per task, 429s, and how long
after a task finished on the server the poller reported it.

Every timing is in simulated seconds times ``time_scale``, so a test runs the same story
in two seconds.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.abc
import attrs

from .._client import DispatchClient
from .._errors import DispatchError, UsageError
from .._limiter import TokenBucket
from .._options import SubmitOptions
from .._outcome import Outcome, OutcomeKind
from .._poller import Poller
from ..testing import Durations, OutcomeMix, RateLimit, Simulator, SimulatorConfig, serve
from ._output import FINAL_KINDS, Redactor, have_rich, percentile

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["DemoSummary", "Progress", "plan_endings", "run_demo"]

Ending = Literal["success", "error", "input-required", "never"]

#: How the tasks end, by weight. Every ending appears at least once whatever the count.
_MIX: Final[tuple[tuple[Ending, float], ...]] = (
    ("success", 0.80),
    ("error", 0.11),
    ("input-required", 0.06),
    ("never", 0.03),
)
#: Simulated seconds. Tasks run 5-100 s (median 30); the deadline leaves room for the
#: longest task plus one slow check. A task that asks for input runs 10-40 s around an
#: input request open for 60 s: longer than the slowest check cadence, so it is seen.
_DURATIONS: Final = Durations(median=30.0, sigma=0.6, minimum=5.0, maximum=100.0)
_INPUT_WAIT: Final = 60.0
_DEADLINE: Final = 180.0
_FIRST_CHECK: Final = 10.0
_MAX_INTERVAL: Final = 40.0
#: Concurrent submits, and how much higher than the client's the server's limit is.
_SUBMITTERS: Final = 8
_SERVER_HEADROOM: Final = 1.15
_PLAIN_PROGRESS_EVERY: Final = 2.0


def plan_endings(tasks: int, rng: random.Random) -> list[Ending]:
    """`tasks` endings drawn from the mix, each kind at least once (when tasks >= 4)."""
    names = [name for name, _ in _MIX]
    weights = [weight for _, weight in _MIX]
    endings: list[Ending] = names[: min(tasks, len(names))]
    endings += rng.choices(names, weights, k=tasks - len(endings))
    rng.shuffle(endings)
    return endings


@attrs.frozen(kw_only=True)
class DemoSummary:
    """What the demo prints at the end (``--json`` prints `as_dict()`)."""

    tasks: int
    seed: int
    base_url: str
    seconds: float
    #: The deadline of every task, in simulated seconds.
    deadline: float
    planned: dict[str, int]
    outcomes: dict[str, int]
    submit_failures: int
    input_required_notified: int
    input_required_completed: int
    requests: int
    submit_requests: int
    status_requests: int
    rate_limited: int
    latencies: tuple[float, ...] = attrs.field(repr=False)

    @property
    def consistent(self) -> bool:
        """Every submitted task ended in exactly one final outcome."""
        return sum(self.outcomes.values()) == self.tasks - self.submit_failures

    @property
    def submits_resent(self) -> int:
        """Submit requests the server turned away (429) before accepting them again."""
        return max(0, self.submit_requests - (self.tasks - self.submit_failures))

    def as_dict(self) -> dict[str, Any]:
        p50, p95 = percentile(self.latencies, 50), percentile(self.latencies, 95)
        return {
            "tasks": self.tasks,
            "seed": self.seed,
            "base_url": self.base_url,
            "seconds": round(self.seconds, 3),
            "deadline_s": self.deadline,
            "planned": self.planned,
            "outcomes": self.outcomes,
            "submit_failures": self.submit_failures,
            "input_required": {
                "notified": self.input_required_notified,
                "later_completed": self.input_required_completed,
            },
            "requests": {
                "total": self.requests,
                "submit": self.submit_requests,
                "submit_resent": self.submits_resent,
                "status": self.status_requests,
                "per_task": round(self.requests / max(1, self.tasks), 2),
            },
            "rate_limited_429": self.rate_limited,
            "detection_latency_s": {
                "p50": None if p50 is None else round(p50, 3),
                "p95": None if p95 is None else round(p95, 3),
                "max": round(max(self.latencies), 3) if self.latencies else None,
                "n": len(self.latencies),
            },
        }

    def lines(self) -> list[str]:
        """The summary as ``name: value`` lines, every total shown with its parts."""
        data = self.as_dict()
        finished = sum(self.outcomes.values())
        parts = " + ".join(f"{kind} {n}" for kind, n in self.outcomes.items())
        requests = data["requests"]
        latency = data["detection_latency_s"]
        lines = [
            f"{self.tasks} tasks on {self.base_url} in {self.seconds:.1f} s (seed {self.seed})",
            f"outcomes: {parts} = {finished} tasks",
            f"input required: {self.input_required_notified} tasks asked for a person on "
            f"the way; {self.input_required_completed} then finished (counted above)",
            f"timed out: {self.planned.get('never', 0)} tasks are made never to finish; "
            f"each stops at its deadline ({self.deadline:g} simulated s)",
            f"requests: {requests['total']} = {requests['submit']} submits "
            f"({self.submits_resent} sent again after a 429) + {requests['status']} status "
            f"checks; {requests['per_task']} per task",
            f"429s received: {self.rate_limited} (each paused the client's shared budget)",
        ]
        if latency["n"]:
            lines.append(
                f"detection latency: p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s, "
                f"max {latency['max']:.2f} s from server completion to outcome (n={latency['n']})"
            )
        if self.submit_failures:
            lines.append(f"submits that failed: {self.submit_failures} (never tracked)")
        return lines


@attrs.frozen(kw_only=True)
class Progress:
    """One moment of the demo, as the live display shows it.

    Every number is shown with the parts it adds up to, because a first-time viewer
    reads them as sums: submitted = finished + still open, finished = the four endings.
    An input request is not an ending (the task goes on), so it is counted apart, never
    inside "finished".
    """

    total: int
    submitted: int
    finished: Mapping[OutcomeKind, int]
    #: Open tasks that have asked for a person at least once.
    open_asked_input: int
    asked_for_input: int
    submit_requests: int
    status_requests: int
    rate_limited: int
    never: int
    deadline: float
    elapsed: float

    @property
    def done(self) -> int:
        return sum(self.finished.get(kind, 0) for kind in FINAL_KINDS)

    @property
    def still_open(self) -> int:
        return self.submitted - self.done

    def lines(self) -> list[str]:
        """The detail under the two bars; each line fits 80 columns at any demo size."""
        endings = " + ".join(f"{kind.value} {self.finished.get(kind, 0)}" for kind in FINAL_KINDS)
        resent = max(0, self.submit_requests - self.submitted)
        return [
            f"finished {self.done} = {endings}",
            f"still open {self.still_open} ({self.open_asked_input} of them asked for a person)",
            f"asked for input so far: {self.asked_for_input} (not an ending: they go on)",
            f"timed-out: made never to finish ({self.never} planned); deadline "
            f"{self.deadline:g} simulated s",
            f"requests {self.submit_requests + self.status_requests} = "
            f"{self.submit_requests} submits + {self.status_requests} status checks",
            f"429s {self.rate_limited}: each paused all requests; {resent} submits were resent",
        ]

    def plain(self) -> str:
        """One line for a log, every ten seconds or so."""
        return f"[{self.elapsed:5.1f} s] submitted {self.submitted}/{self.total}; " + "; ".join(
            self.lines()[:2]
        )

    def renderable(self) -> RenderableType:
        """Two bars and the detail lines, for rich; nothing here is ever cut short."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        bars = Table.grid(padding=(0, 1))
        bars.add_column(style="bold", no_wrap=True)
        bars.add_column(no_wrap=True)
        bars.add_column(no_wrap=True)
        total = max(1, self.total)
        minutes, seconds = divmod(int(self.elapsed), 60)
        bars.add_row(
            "submitted",
            ProgressBar(total=total, completed=self.submitted, width=30),
            f"{self.submitted}/{self.total}",
        )
        bars.add_row(
            "finished ",
            ProgressBar(total=total, completed=self.done, width=30),
            f"{self.done}/{self.total}  {minutes}:{seconds:02d}",
        )
        return Group(bars, *(Text("  " + line) for line in self.lines()))


@attrs.define
class _Run:
    """The mutable tally of one demo run."""

    tasks: int
    submitted: int = 0
    submit_failures: int = 0
    submitting_done: bool = False
    finals: list[Outcome] = attrs.Factory(list)
    counts: Counter[OutcomeKind] = attrs.Factory(Counter)
    notified: set[str] = attrs.Factory(set)
    finished: set[str] = attrs.Factory(set)
    latencies: list[float] = attrs.Factory(list)

    @property
    def done(self) -> bool:
        return self.submitting_done and len(self.finals) >= self.tasks - self.submit_failures

    def progress(
        self, sim: Simulator, planned_never: int, deadline: float, elapsed: float
    ) -> Progress:
        return Progress(
            total=self.tasks,
            submitted=self.submitted,
            finished={kind: self.counts[kind] for kind in FINAL_KINDS},
            open_asked_input=len(self.notified - self.finished),
            asked_for_input=len(self.notified),
            submit_requests=sim.stats.requests["submit"],
            status_requests=sim.stats.requests["status"],
            rate_limited=sim.stats.rate_limited,
            never=planned_never,
            deadline=deadline,
            elapsed=elapsed,
        )


async def run_demo(
    *,
    tasks: int,
    seed: int | None,
    rate: float,
    time_scale: float,
    json_output: bool,
    out: Redactor,
) -> int:
    """Run the demo and print its summary; 0 when every task got exactly one outcome."""
    if tasks < 1:
        raise UsageError(f"--tasks must be >= 1, got {tasks}")
    seed = seed if seed is not None else secrets.randbits(32)
    key = f"demo-{secrets.token_hex(8)}"
    burst = max(1, round(rate / 3))
    config = SimulatorConfig(
        api_keys=key,
        seed=seed,
        time_scale=time_scale,
        durations=_DURATIONS,
        outcomes=OutcomeMix(),
        input_wait=_INPUT_WAIT,
        # A higher rate but a smaller burst than the client's: the first wave of submits
        # meets a 429 or two, and the whole poller pauses as one.
        rate_limit=RateLimit(rate=rate * _SERVER_HEADROOM, burst=max(1, burst // 2)),
    )
    endings = plan_endings(tasks, random.Random(seed))
    state = _Run(tasks)
    started = anyio.current_time()
    # Same event loop as the poller (asyncio), so the simulator's completion times and
    # `anyio.current_time()` share one clock.
    async with serve(config, "127.0.0.1", 0, in_thread=False) as running:
        sim, base_url = running.simulator, running.base_url
        bucket = TokenBucket(rate, burst)
        async with (
            # Cloud execution: the service refuses a task in its default (client) mode
            # without a browser window, and a demo has none.
            DispatchClient(
                api_key=key, base_url=base_url, bucket=bucket, execution_mode="cloud"
            ) as client,
            Poller(
                client,
                bucket=bucket,
                deadline=_DEADLINE * time_scale,
                initial_interval=_FIRST_CHECK * time_scale,
                max_interval=_MAX_INTERVAL * time_scale,
                max_in_flight=16,
                seed=seed,
            ) as poller,
        ):
            view = _View(out, json_output, sim, endings.count("never"), started)
            await _fan_out_and_track(poller, sim, endings, state, view)
    summary = DemoSummary(
        tasks=tasks,
        seed=seed,
        base_url=base_url,
        seconds=anyio.current_time() - started,
        deadline=_DEADLINE,
        planned=dict(Counter(endings)),
        outcomes={kind.value: state.counts[kind] for kind in FINAL_KINDS},
        submit_failures=state.submit_failures,
        input_required_notified=len(state.notified),
        input_required_completed=sum(
            1
            for outcome in state.finals
            if outcome.request_id in state.notified
            and outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR)
        ),
        requests=sum(sim.stats.requests.values()),
        submit_requests=sim.stats.requests["submit"],
        status_requests=sim.stats.requests["status"],
        rate_limited=sim.stats.rate_limited,
        latencies=tuple(state.latencies),
    )
    _print_summary(summary, json_output, out)
    return 0 if summary.consistent else 1


@attrs.define
class _View:
    """Where progress goes: a live rich display on a terminal, a line now and then on a
    pipe, nothing with ``--json`` (stdout then holds one document)."""

    out: Redactor
    json_output: bool
    sim: Simulator
    never: int
    started: float
    _live: Any = attrs.field(init=False, default=None)
    _last_plain: float = attrs.field(init=False, default=0.0)

    @property
    def live(self) -> bool:
        return not self.json_output and self.out.isatty() and have_rich()

    def start(self) -> None:
        if self.live:
            from rich.live import Live

            self._live = Live(console=self.out.console(), auto_refresh=False)
            self._live.start()

    def show(self, state: _Run, *, final: bool = False) -> None:
        now = anyio.current_time()
        progress = state.progress(self.sim, self.never, _DEADLINE, now - self.started)
        if self._live is not None:
            self._live.update(progress.renderable(), refresh=True)
        elif not self.json_output and (final or now - self._last_plain >= _PLAIN_PROGRESS_EVERY):
            self._last_plain = now
            self.out.line(progress.plain())

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


async def _fan_out_and_track(
    poller: Poller,
    sim: Simulator,
    endings: list[Ending],
    state: _Run,
    view: _View,
) -> None:
    """Submit every task while consuming outcomes; return when all are accounted for."""
    queue = iter(enumerate(endings))

    async def submitter() -> None:
        for n, ending in queue:
            simulate: dict[str, Any] = {"outcome": ending}
            if ending == "input-required":
                simulate["duration"] = 10 + (n * 37) % 31
                if n % 2 == 0:
                    simulate["finalOutcome"] = "success"
            try:
                await poller.submit(
                    f"/Operator demo task {n} ({ending})",
                    context=ending,
                    options=SubmitOptions(extra={"simulate": simulate}),
                )
                state.submitted += 1
            except DispatchError:
                state.submit_failures += 1

    all_done = anyio.Event()

    async def consume() -> None:
        # `forever=True`: between two submits nothing may be tracked for a moment, and the
        # plain iterator would end there.
        async for outcome in poller.results(forever=True):
            state.counts[outcome.kind] += 1
            if outcome.kind is OutcomeKind.INPUT_REQUIRED:
                state.notified.add(outcome.request_id)
            if not outcome.final:
                continue
            state.finals.append(outcome)
            state.finished.add(outcome.request_id)
            if outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR):
                finished = sim.task_completed_at(outcome.request_id)
                if finished is not None:
                    state.latencies.append(anyio.current_time() - finished.clock)
            if state.done:
                all_done.set()

    async def report() -> None:
        while True:
            await anyio.sleep(0.25)
            view.show(state)

    view.start()
    try:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(report)
            task_group.start_soon(consume)
            async with anyio.create_task_group() as submitters:
                for _ in range(_SUBMITTERS):
                    submitters.start_soon(submitter)
            state.submitting_done = True
            if not state.done:
                await all_done.wait()
            task_group.cancel_scope.cancel()
        view.show(state, final=True)
    finally:
        view.stop()


def _print_summary(summary: DemoSummary, json_output: bool, out: Redactor) -> None:
    if json_output:
        out.json(summary.as_dict())
        return
    if not (out.isatty() and have_rich()):
        for line in summary.lines():
            out.line(line)
        return
    from rich.table import Table

    lines = summary.lines()
    table = Table(title=lines[0], title_justify="left", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        table.add_row(name, value)
    out.console().print(table)
