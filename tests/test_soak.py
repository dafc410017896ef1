"""Soak: thousands of tasks over real loopback TCP against the simulator, 20% of status
reads failing (5xx, HTML pages, truncated JSON, dropped connections, unknown statuses)
and a server-side rate limit. Zero lost, zero duplicated, the right outcome for each,
and few 429s (the poller's shared bucket keeps under the server's limit).

The long run is marked ``soak`` (``make soak``); a short one runs by default.
Set ``SOAK_REPORT=path.json`` to keep the counts of a run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import anyio
import attrs
import pytest

from async_dispatch import DispatchClient, Outcome, OutcomeKind, Poller, RetryPolicy
from async_dispatch.testing import (
    Durations,
    Faults,
    OutcomeMix,
    RateLimit,
    SimulatorConfig,
    serve,
)

pytestmark = pytest.mark.asyncio_only  # uvicorn serves on this loop; trio would need a thread


TWENTY_PERCENT = Faults(
    server_error=0.06,
    html_error=0.03,
    html_ok=0.02,
    truncated_json=0.03,
    drop=0.03,
    unknown_status=0.03,
)


@attrs.frozen
class Plan:
    tasks: int
    median: float
    maximum: float
    deadline: float
    server_rate: float
    poller_rate: float
    max_interval: float
    #: Concurrent submitters: each queues for tokens like the poller's one dispatcher does.
    submitters: int
    #: A task that finished more than this before its deadline must not time out. Faults
    #: delay a check by up to the error backoff, so this only binds on long runs.
    settle: float


async def soak(plan: Plan, seed: int) -> dict[str, Any]:
    config = SimulatorConfig(
        durations=Durations(median=plan.median, sigma=0.6, maximum=plan.maximum),
        outcomes=OutcomeMix(success=0.7, error=0.1, input_required=0.1, never=0.1),
        input_wait=plan.median / 2,
        rate_limit=RateLimit(rate=plan.server_rate, burst=20),
        faults=TWENTY_PERCENT,
        seed=seed,
    )
    outcomes: list[Outcome] = []
    async with serve(config, port=0) as running:
        sim = running.simulator
        client = DispatchClient(
            api_key=config.default_key,
            base_url=running.base_url,
            retry=RetryPolicy(attempts=5, initial_delay=0.05, max_delay=0.5),
            timeout=10,
            execution_mode="cloud",
        )
        async with (
            client,
            Poller(
                client,
                rate=plan.poller_rate,
                burst=10,
                deadline=plan.deadline,
                initial_interval=plan.median / 2,
                max_interval=plan.max_interval,
                max_in_flight=10,
                seed=seed,
            ) as poller,
        ):
            submitted: list[str] = []

            async def submitter(share: range) -> None:
                for n in share:
                    submitted.append(await poller.submit(f"/Operator soak task {n}"))

            async with anyio.create_task_group() as tg:
                for worker in range(plan.submitters):
                    tg.start_soon(submitter, range(worker, plan.tasks, plan.submitters))
                async for outcome in poller.results(forever=True):
                    outcomes.append(outcome)
                    if len(submitted) == plan.tasks and not len(poller):
                        break
            stats = poller.stats.as_dict()
        truth = {rid: sim.app.tasks[rid] for rid in submitted}
        server = sim.stats.as_dict()
        rate_window = sim.rate_window_max(1.0)

    finals: Counter[str] = Counter(o.request_id for o in outcomes if o.final)
    assert len(submitted) == len(set(submitted)) == plan.tasks
    assert set(finals) == set(submitted), "lost tasks"
    assert max(finals.values()) == 1, "duplicated outcomes"
    wrong = []
    for outcome in outcomes:
        if not outcome.final:
            continue
        task = truth[outcome.request_id]
        if outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR):
            ok = task.finish is not None and outcome.kind.value == task.final
        else:
            # TIMED_OUT only for tasks that never finish or finish near/after the deadline.
            ok = outcome.kind is OutcomeKind.TIMED_OUT and (
                task.finish is None or task.finish - task.created > plan.deadline - plan.settle
            )
        if not ok:
            wrong.append((outcome, task))
    assert wrong == []
    status_requests = stats["polls_sent"]
    limited = stats["rate_limited"]
    assert limited <= 0.02 * status_requests, f"{limited} 429s in {status_requests} reads"
    assert rate_window <= plan.server_rate + 20 + 1
    report = {
        "tasks": plan.tasks,
        "lost": plan.tasks - len(finals),
        "duplicated": sum(n - 1 for n in finals.values()),
        "outcomes": dict(Counter(o.kind.value for o in outcomes)),
        "poller": stats,
        "server": server,
    }
    path = os.environ.get("SOAK_REPORT")
    if path:
        await anyio.Path(path).write_text(json.dumps(report, indent=2, default=str))
    return report


@pytest.mark.anyio
async def test_short_soak_over_tcp_with_faults() -> None:
    plan = Plan(
        tasks=150,
        median=0.6,
        maximum=2.0,
        deadline=2.5,
        server_rate=150,
        poller_rate=120,
        max_interval=0.6,
        submitters=4,
        settle=2.5,
    )
    report = await soak(plan, seed=11)
    assert report["poller"]["retries"] > 0  # the faults were there


@pytest.mark.soak
@pytest.mark.anyio
async def test_long_soak_over_tcp_with_faults() -> None:
    plan = Plan(
        tasks=5_000,
        median=20.0,
        maximum=90.0,
        deadline=150.0,
        server_rate=250,
        poller_rate=200,
        max_interval=30.0,
        submitters=2,
        settle=60.0,
    )
    report = await soak(plan, seed=2026)
    assert report["poller"]["retries"] > 100
