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

from benchmarks.__main__ import run
from benchmarks._report import markdown
from benchmarks._scenarios import Plan

# The benchmarks compare asyncio libraries.
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
