"""The benchmark suite still runs: a tiny workload through every contender, end to end.

No thresholds: figures on a shared CI machine mean little. What this catches is a
benchmark that no longer starts its server, or a contender that loses tasks it should not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _contenders
from benchmarks.__main__ import _merged, run
from benchmarks._report import markdown
from benchmarks._scenarios import Plan

from async_dispatch import RetryPolicy

# The benchmarks compare asyncio libraries (aiohttp, aiolimiter): asyncio only.
pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]


async def test_quick_workload_runs_every_contender() -> None:
    plan = attrs.evolve(Plan.smoke(), sizes=(20,), repeats={20: 1})
    results = await run(plan, ("workload",))
    block = results["workload"]["sizes"]["20"]
    figures = block["contenders"]
    assert set(figures) == {"naive", "careful", "poller_default", "poller_tuned", "raw"}
    for name in ("careful", "poller_default", "poller_tuned"):
        assert figures[name]["completed"] == 20, name
        assert figures[name]["requests"] >= 20, name
        assert figures[name]["latency_p50"] is not None, name
    assert figures["raw"]["requests"] == figures["poller_tuned"]["requests"]
    assert "### Workload: 20 tasks" in markdown(results)


def test_the_pollers_retry_waits_run_on_the_simulated_clock() -> None:
    """Every time a contender is given is simulated seconds times the scale, the poller's
    retry backoff and 429 pauses included: otherwise the faults run compares clocks."""
    setting = _contenders.Setting("http://127.0.0.1:1", scale=0.05, rate=20.0, burst=20)
    policy = _contenders._scaled_retry(setting)
    default = RetryPolicy()
    assert policy.attempts == 1
    assert policy.initial_delay == pytest.approx(setting.real(default.initial_delay))
    assert policy.max_delay == pytest.approx(setting.real(default.max_delay))
    assert policy.rate_limit_floor == pytest.approx(setting.real(default.rate_limit_floor))
    assert policy.rate_limit_ceiling == pytest.approx(setting.real(default.rate_limit_ceiling))
    assert max(policy.backoff(n) for n in range(1, 30)) <= setting.real(default.max_delay)


def test_a_scenario_rerun_alone_replaces_only_its_section() -> None:
    previous = {"meta": {"date": "old"}, "faults": {"x": 1}, "memory": {"y": 2}}
    new = {"meta": {"date": "new"}, "faults": {"x": 3}}
    merged = _merged(previous, new, ("faults",))
    assert merged == {
        "meta": {"date": "old"},
        "faults": {"x": 3, "meta": {"date": "new"}},
        "memory": {"y": 2},
    }
