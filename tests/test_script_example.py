"""The README's script without ``async``, held to what its text promises.

tests/test_readme.py runs every block; this one runs the script block again against a
simulator where three tasks in ten fail, and checks the claims of the sentence after it
from the outside: 100 tasks, one line each, typed results, every failed attempt sent
again (the simulator's own count of the tasks it created), and never a task that is
final without its earlier attempts listed.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest

from async_dispatch.testing import Durations, OutcomeMix, RunningSimulator, SimulatorConfig, serve
from test_readme import BLOCKS, Block

SCRIPT = next(b for b in BLOCKS if "SyncPoller(" in b.code and "ResubmitPolicy(" in b.code)


@pytest.fixture(scope="module")
def flaky_service() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(
        seed=3,
        durations=Durations.fixed(0.1),
        outcomes=OutcomeMix(success=0.7, error=0.3, input_required=0.0),
    )
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(config)) as running,
    ):
        yield running


def run(block: Block, tmp_path: Path, base_url: str) -> list[tuple[str, list[str], str]]:
    path = tmp_path / "script.py"
    path.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "DISPATCH_API_KEY": "sim-key", "DISPATCH_BASE_URL": base_url}
    done = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert not re.search(r"\b(async|await)\b", block.code)  # a plain script
    lines = []
    for line in done.stdout.splitlines():  # "success ('req_1', 'req_2') Weather(...)"
        match = re.fullmatch(r"(\S+) (\(.*?\)) (.*)", line)
        assert match is not None, line
        lines.append((match[1], list(ast.literal_eval(match[2])), match[3]))
    return lines


def test_the_script_tracks_100_tasks_typed_and_resubmits_the_failed(
    tmp_path: Path, flaky_service: RunningSimulator
) -> None:
    before = flaky_service.simulator.stats.tasks_created
    lines = run(SCRIPT, tmp_path, flaky_service.base_url)
    created = flaky_service.simulator.stats.tasks_created - before

    assert len(lines) == 100  # one final outcome per task
    attempts = [attempt for _, ids, _ in lines for attempt in ids]
    assert len(attempts) == len(set(attempts)) == created  # every attempt, once
    resubmitted = [ids for _, ids, _ in lines if len(ids) > 1]
    assert resubmitted, "three tasks in ten fail: some must have been sent again"
    assert all(len(ids) <= 3 for _, ids, _ in lines)  # attempts=3
    for kind, ids, weather in lines:
        if kind == "success":
            assert weather.startswith("Weather(city="), weather  # the dataclass, not a dict
        else:
            assert kind == "error", (kind, ids)
            assert len(ids) == 3, ids  # it gave up after the third attempt
            assert weather == "None"
