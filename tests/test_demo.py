"""``async-dispatch demo``: the whole story, time-scaled down to about a second."""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter

import pytest
from rich.console import Console

from async_dispatch._cli import main
from async_dispatch._cli._demo import DemoSummary, Progress, plan_endings
from async_dispatch._outcome import OutcomeKind

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
        deadline=180.0,
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
        "outcomes: success 2 + error 1 + timed-out 1 + failed 0 = 4 tasks",
        "input required: 1 tasks asked for a person on the way; 1 then finished (counted above)",
        "timed out: 1 tasks are made never to finish; each stops at its deadline (180 simulated s)",
        "requests: 20 = 4 submits (0 sent again after a 429) + 16 status checks; 5.0 per task",
        "429s received: 2 (each paused the client's shared budget)",
        "detection latency: p50 0.20 s, p95 0.29 s, max 0.30 s from server completion "
        "to outcome (n=3)",
    ]


def _progress(total: int, *, scale: int = 1) -> Progress:
    """A moment of a big demo: every figure as wide as a real run makes it."""
    finished = {
        OutcomeKind.SUCCESS: 257 * scale,
        OutcomeKind.ERROR: 22 * scale,
        OutcomeKind.TIMED_OUT: 6 * scale,
        OutcomeKind.FAILED: 0,
    }
    return Progress(
        total=total,
        submitted=total,
        finished=finished,
        open_asked_input=3 * scale,
        asked_for_input=18 * scale,
        submit_requests=total + 6 * scale,
        status_requests=928 * scale,
        rate_limited=9 * scale,
        never=6 * scale,
        deadline=180.0,
        elapsed=21.4,
    )


def _numbers(line: str) -> list[int]:
    return [int(n) for n in re.findall(r"(?<![\w.])\d+(?![\w.])", line)]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize(("total", "scale"), [(300, 1), (30_000, 100)])
def test_the_live_display_fits_the_terminal_and_adds_up(width: int, total: int, scale: int) -> None:
    progress = _progress(total, scale=scale)
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(progress.renderable())
    text = console.export_text()
    assert "…" not in text
    assert "..." not in text
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    # Every total is printed with its parts, and the parts add up to it.
    finished = next(line for line in lines if line.strip().startswith("finished ") and "=" in line)
    done, *endings = _numbers(finished)
    assert done == sum(endings) == progress.done
    still_open = next(line for line in lines if "still open" in line)
    assert _numbers(still_open)[0] == progress.submitted - progress.done
    requests = next(line for line in lines if line.strip().startswith("requests"))
    total_requests, submits, checks = _numbers(requests)
    assert total_requests == submits + checks
    # Input requests are counted apart from the endings, and said to be no ending.
    assert "input" not in finished
    assert any("asked for input" in line and "not an ending" in line for line in lines)
    assert any("never to finish" in line and "deadline" in line for line in lines)
    assert any("resent" in line for line in lines)  # why there are more submits than tasks
