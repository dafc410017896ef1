"""``async-dispatch demo``: the whole story, time-scaled down to about a second."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from async_dispatch._cli import main
from async_dispatch._demo import DemoSummary, plan_endings

#: A client budget so high that the server's limit (a little above it) never answers 429:
#: its Retry-After is whole seconds, longer than this whole time-scaled run.
FAST = ["--time-scale", "0.005", "--seed", "3", "--rate", "2000"]


def test_the_plan_has_every_ending_at_least_once() -> None:
    for tasks in (4, 5, 300):
        endings = plan_endings(tasks, random.Random(tasks))
        assert len(endings) == tasks
        assert set(endings) == {"success", "error", "input-required", "never"}
    assert Counter(plan_endings(300, random.Random(1)))["success"] > 200


def test_demo_json_summary_accounts_for_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tasks", "16", "--json", *FAST]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)  # one JSON document and nothing else on stdout
    assert summary["tasks"] == 16
    assert sum(summary["outcomes"].values()) == 16
    planned = summary["planned"]
    assert summary["outcomes"]["timed-out"] == planned["never"]
    assert summary["outcomes"]["failed"] == 0
    assert summary["input_required"]["later_completed"] == planned["input-required"]
    assert summary["requests"]["submit"] >= 16
    assert summary["requests"]["total"] >= 16 + summary["detection_latency_s"]["n"]
    latency = summary["detection_latency_s"]
    assert latency["n"] == 16 - planned["never"]
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["max"]


def test_the_plain_summary_names_every_figure() -> None:
    summary = DemoSummary(
        tasks=4,
        seed=1,
        base_url="http://127.0.0.1:1",
        seconds=1.5,
        planned={"success": 1, "error": 1, "input-required": 1, "never": 1},
        outcomes={"success": 2, "error": 1, "timed-out": 1, "failed": 0},
        submit_failures=0,
        input_required_notified=1,
        input_required_completed=1,
        requests=20,
        submit_requests=4,
        status_requests=16,
        rate_limited=2,
        latencies=(0.1, 0.2, 0.3),
    )
    assert summary.consistent
    assert summary.lines() == [
        "4 tasks on http://127.0.0.1:1 in 1.5 s (seed 1)",
        "outcomes: success 2, error 1, timed-out 1, failed 0",
        "input required: 1 notified, 1 later completed",
        "requests: 20 (4 submits, 16 status checks), 5.0 per task",
        "429s received: 2 (each paused the client's shared budget)",
        "detection latency (server completion -> outcome): p50 0.20 s, p95 0.29 s, "
        "max 0.30 s (n=3)",
    ]
