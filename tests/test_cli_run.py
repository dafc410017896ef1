"""``async-dispatch run``: a batch of prompts to one result line each, resumable.

The promise under test: however often the run is stopped (``kill -9``, Ctrl-C) and
started again, every prompt ends with exactly one line in RESULTS and no prompt reaches
the service twice. The simulator's own records prove the second half: its count of
submits and the prompt of every task it created.

The process tests run the command as a real process (``python -m async_dispatch._cli``)
against a simulator served over TCP by this test, and kill it by PID. They run on
asyncio only: uvicorn serves the simulator on asyncio, and the command itself always
runs on asyncio (`main()`); the in-process tests below run on both backends.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_dispatch._cli import ExitCode, run
from async_dispatch._config import API_KEY_ENV, BASE_URL_ENV
from async_dispatch.testing import (
    Durations,
    Faults,
    Simulator,
    SimulatorConfig,
    serve,
    simulator,
)

pytestmark = pytest.mark.anyio

#: Fast cadence and a budget far above what the simulator needs: the tests are about
#: what survives a stop, not about pacing.
QUICK = ["--rate", "400", "--interval", "0.1", "--max-interval", "0.3", "--deadline", "120"]
#: Tasks end in well under a second.
FAST = Durations(median=0.2, sigma=0.5, minimum=0.05, maximum=0.8)


def _environ(base_url: str) -> dict[str, str]:
    return {
        API_KEY_ENV: "sim-key",
        BASE_URL_ENV: base_url,
        "DISPATCH_EXECUTION_MODE": "cloud",
    }


def _prompts(path: Path, count: int) -> list[str]:
    prompts = [f"/Operator batch task {n:05d}" for n in range(count)]
    path.write_text("".join(p + "\n" for p in prompts))
    return prompts


def _results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_once_each(results: list[dict[str, Any]], prompts: list[str], sim: Simulator) -> None:
    """One line per prompt; no prompt reached the simulator twice; every line that names
    a task names the one the simulator created for that prompt."""
    assert sorted(r["index"] for r in results) == list(range(len(prompts)))
    created = Counter(task.prompt_excerpt for task in sim.app.tasks.values())
    assert max(created.values()) == 1, "a prompt was submitted twice"
    # A submit request that created no task can only be one cut short by a kill: its
    # prompt is reported uncertain.
    uncertain = sum(r["kind"] == "submit-uncertain" for r in results)
    assert 0 <= sim.stats.requests["submit"] - sim.stats.tasks_created <= uncertain
    by_prompt = {task.prompt_excerpt: rid for rid, task in sim.app.tasks.items()}
    for result in results:
        prompt = prompts[result["index"]]
        if result["kind"] == "submit-uncertain":
            assert result["request_id"] is None
            continue  # created or not: either way only once
        assert by_prompt[prompt] == result["request_id"]
    # Every prompt without a task at the simulator says so: none was quietly dropped.
    missing = {n for n, p in enumerate(prompts) if p not in by_prompt}
    kinds = {r["index"]: r["kind"] for r in results}
    assert all(kinds[n] == "submit-uncertain" for n in missing)


async def _line_count(path: Path) -> int:
    try:
        return (await anyio.Path(path).read_bytes()).count(b"\n")
    except FileNotFoundError:
        return 0


async def _start(args: list[str], base_url: str) -> anyio.abc.Process:
    command = [sys.executable, "-m", "async_dispatch._cli", "run", *args, *QUICK]
    env = {**os.environ, **_environ(base_url), "PYTHONUNBUFFERED": "1"}
    return await anyio.open_process(command, env=env, stdout=None, stderr=None)


async def _wait_for_lines(child: anyio.abc.Process, results: Path, lines: int) -> None:
    """Until RESULTS has at least `lines` lines, `child` still running (mid-run)."""
    with anyio.fail_after(120):
        while await _line_count(results) < lines:
            assert child.returncode is None, "the run ended before it could be stopped"
            await anyio.sleep(0.05)


async def _kill_after(child: anyio.abc.Process, results: Path, lines: int) -> None:
    """SIGKILL `child` once RESULTS has at least `lines` lines."""
    await _wait_for_lines(child, results, lines)
    os.kill(child.pid, signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL


@pytest.mark.asyncio_only
async def test_killed_twice_with_sigkill_it_ends_with_one_line_per_prompt(
    tmp_path: Path,
) -> None:
    """The issue's bar: 2,000 prompts, ``kill -9`` twice mid-run, restarted each time."""
    count = 2000
    prompts = _prompts(tmp_path / "prompts.txt", count)
    results = tmp_path / "results.jsonl"
    args = [str(tmp_path / "prompts.txt"), "--out", str(results)]
    config = SimulatorConfig(seed=21, durations=FAST)
    async with serve(config) as running:
        for lines in (300, 900):
            child = await _start(args, running.base_url)
            async with child:
                await _kill_after(child, results, lines)
            assert (tmp_path / "results.jsonl.state").exists()
        child = await _start(args, running.base_url)
        async with child:
            with anyio.fail_after(240):
                code = await child.wait()
        assert code in (ExitCode.OK, ExitCode.TASK_FAILED, ExitCode.SUBMIT_UNCERTAIN)
        written = _results(results)
        _check_once_each(written, prompts, running.simulator)
    assert len(written) == count
    assert not (tmp_path / "results.jsonl.state").exists()  # complete: nothing to resume


@pytest.mark.asyncio_only
async def test_ctrl_c_stops_after_the_submit_in_flight_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    count = 300
    prompts = _prompts(tmp_path / "prompts.txt", count)
    results = tmp_path / "results.jsonl"
    args = [str(tmp_path / "prompts.txt"), "--out", str(results)]
    async with serve(SimulatorConfig(seed=3, durations=FAST)) as running:
        child = await _start(args, running.base_url)
        async with child:
            await _wait_for_lines(child, results, 50)
            child.send_signal(signal.SIGINT)
            with anyio.fail_after(60):
                assert await child.wait() == ExitCode.INTERRUPTED
        stopped = _results(results)
        assert len(stopped) < count
        child = await _start(args, running.base_url)
        async with child:
            with anyio.fail_after(120):
                await child.wait()
        written = _results(results)
        _check_once_each(written, prompts, running.simulator)
    # A graceful stop lets its last submit finish: nothing is left uncertain.
    assert all(r["kind"] != "submit-uncertain" for r in written)


# -- in process -------------------------------------------------------------------------


async def _run(
    sim: Simulator, *args: str, stdin: str = "", quick: bool = True
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run(
        ["run", *args, *(QUICK if quick else [])],
        stdout=out,
        stderr=err,
        stdin=io.StringIO(stdin),
        environ=_environ(sim.base_url),
        transport=sim.transport(),
    )
    return code, out.getvalue(), err.getvalue()


async def test_json_lines_give_options_and_a_context_per_task(tmp_path: Path) -> None:
    lines = [
        {"prompt": "/Operator one", "context": {"row": 1}},
        {"prompt": "/Operator two", "options": {"executionMode": "cloud"}, "deadline": 60},
        {"prompt": "/Operator three", "options": {"clear_chat": True}, "context": [3]},
    ]
    source = "".join(json.dumps(line) + "\n" for line in lines)
    results = tmp_path / "r.jsonl"
    async with simulator(seed=1, durations=FAST) as sim:
        code, out, err = await _run(sim, "-", "--out", str(results), stdin=source)
        assert code in (ExitCode.OK, ExitCode.TASK_FAILED), err
        written = {r["index"]: r for r in _results(results)}
        assert out == ""  # stdout is never the progress display
        assert "run: 3/3 done" in err
        assert [written[n]["context"] for n in range(3)] == [{"row": 1}, None, [3]]
        assert [written[n]["line"] for n in range(3)] == [1, 2, 3]
        for result in written.values():
            assert set(result) >= {"index", "request_id", "kind", "status", "response", "error"}
            assert sim.app.tasks[result["request_id"]].prompt_excerpt.startswith("/Operator")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": ""}', '"prompt" must be a non-empty string'),
        ("{not json", "not valid JSON"),
        ('{"prompt": "x", "colour": 1}', "unknown key 'colour'"),
        ('{"prompt": "x", "deadline": -1}', '"deadline" must be a number'),
        ('{"prompt": "x", "options": {"clearChat": "yes"}}', "clear_chat must be a bool"),
        ('["x"]', "expected a JSON object"),
    ],
)
async def test_an_invalid_line_is_named_before_anything_is_submitted(
    tmp_path: Path, line: str, message: str
) -> None:
    source = '{"prompt": "/Operator fine"}\n\n' + line + "\n"
    async with simulator(seed=1, durations=FAST) as sim:
        code, _, err = await _run(sim, "-", "--out", str(tmp_path / "r.jsonl"), stdin=source)
        assert code == ExitCode.USAGE
        assert "stdin, line 3" in err
        assert message in err
        assert sim.stats.requests["submit"] == 0


async def test_a_partial_last_line_is_cut_and_a_finished_batch_is_not_run_again(
    tmp_path: Path,
) -> None:
    prompts = _prompts(tmp_path / "p.txt", 5)
    results = tmp_path / "r.jsonl"
    async with simulator(seed=2, durations=FAST) as sim:
        code, _, err = await _run(sim, str(tmp_path / "p.txt"), "--out", str(results))
        assert code in (ExitCode.OK, ExitCode.TASK_FAILED), err
        complete = results.read_bytes()
        # As a kill -9 during a write would leave it: the last line cut short.
        results.write_bytes(complete[: complete.rfind(b"\n", 0, len(complete) - 1) + 1] + b'{"ind')
        lost = json.loads(complete.splitlines()[-1])["index"]
        code, _, err = await _run(sim, str(tmp_path / "p.txt"), "--out", str(results))
        assert "partial last line was cut off" in err
        written = _results(results)
        assert sorted(r["index"] for r in written) == list(range(5))
        # With no state file to say it was submitted, the cut prompt was submitted again
        # (this test removed its line by hand; a real run keeps the state until done).
        assert sim.stats.tasks_created == 6
        assert Counter(t.prompt_excerpt for t in sim.app.tasks.values())[prompts[lost]] == 2
        before = sim.stats.requests["submit"]
        code, _, err = await _run(sim, str(tmp_path / "p.txt"), "--out", str(results))
        assert "all 5 prompts already have results" in err
        assert sim.stats.requests["submit"] == before


async def test_uncertain_submits_are_reported_and_never_resubmitted(tmp_path: Path) -> None:
    """Submits whose answers the simulator drops or garbles: the task may exist, so the
    prompt gets a submit-uncertain line (exit 10) and is never sent again, not even by a
    second run."""
    prompts = _prompts(tmp_path / "p.txt", 40)
    results = tmp_path / "r.jsonl"
    faults = Faults(drop=0.15, server_error=0.1, on_submit=True, on_status=False)
    async with simulator(seed=4, durations=FAST, faults=faults) as sim:
        args = [str(tmp_path / "p.txt"), "--out", str(results), "--retries", "0"]
        code, _, err = await _run(sim, *args)
        written = _results(results)
        uncertain = [r for r in written if r["kind"] == "submit-uncertain"]
        assert uncertain, "the faults should have made some submits uncertain"
        assert code == ExitCode.SUBMIT_UNCERTAIN, err
        assert all(r["error"] for r in uncertain)
        _check_once_each(written, prompts, sim)
        submits = sim.stats.requests["submit"]
        code, _, _ = await _run(sim, *args)
        assert sim.stats.requests["submit"] == submits
        assert code == ExitCode.SUBMIT_UNCERTAIN


async def test_a_refused_key_stops_the_batch_with_its_exit_code(tmp_path: Path) -> None:
    _prompts(tmp_path / "p.txt", 3)
    async with simulator(seed=6, durations=FAST) as sim:
        out, err = io.StringIO(), io.StringIO()
        code = await run(
            ["run", str(tmp_path / "p.txt"), "--out", str(tmp_path / "r.jsonl"), *QUICK],
            stdout=out,
            stderr=err,
            environ={**_environ(sim.base_url), API_KEY_ENV: "not-the-key"},
            transport=sim.transport(),
        )
    assert code == ExitCode.AUTH, err.getvalue()
    assert "not-the-key" not in err.getvalue()
    assert _results(tmp_path / "r.jsonl") == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_on_a_terminal_progress_is_one_line_redrawn_on_stderr(tmp_path: Path) -> None:
    _prompts(tmp_path / "p.txt", 20)
    async with simulator(seed=7, durations=FAST) as sim:
        out, err = _Terminal(), _Terminal()
        code = await run(
            ["run", str(tmp_path / "p.txt"), "--out", str(tmp_path / "r.jsonl"), *QUICK],
            stdout=out,
            stderr=err,
            environ=_environ(sim.base_url),
            transport=sim.transport(),
        )
    assert code in (ExitCode.OK, ExitCode.TASK_FAILED), err.getvalue()
    assert out.getvalue() == ""
    shown = err.getvalue()
    assert shown.startswith("\rrun: ")
    assert shown.count("\n") == 1  # one line, redrawn in place, ended once
    assert "run: 20/20 done" in shown.rsplit("\r", 1)[-1]


async def test_a_state_file_of_another_input_is_refused(tmp_path: Path) -> None:
    results, state = tmp_path / "r.jsonl", tmp_path / "s.db"
    async with simulator(seed=6, durations=Durations.fixed(30)) as sim:
        _prompts(tmp_path / "a.txt", 3)
        with anyio.move_on_after(1.5):  # leave tasks tracked in the state file
            await _run(sim, str(tmp_path / "a.txt"), "--out", str(results), "--state", str(state))
        assert state.exists()
        (tmp_path / "b.txt").write_text("/Operator something else\n" * 3)
        code, _, err = await _run(
            sim, str(tmp_path / "b.txt"), "--out", str(results), "--state", str(state)
        )
        assert code == ExitCode.USAGE
        assert "another PROMPTS input" in err


async def test_a_state_file_without_its_results_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl.state").write_bytes(b"")
    _prompts(tmp_path / "p.txt", 2)
    async with simulator(seed=6, durations=FAST) as sim:
        code, _, err = await _run(sim, str(tmp_path / "p.txt"), "--out", str(tmp_path / "r.jsonl"))
    assert code == ExitCode.USAGE
    assert "would submit their prompts again" in err
    assert sim.stats.requests["submit"] == 0
