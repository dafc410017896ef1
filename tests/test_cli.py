"""The ``async-dispatch`` command, driven in process against the simulator.

`run()` is the CLI as a coroutine: these tests hand it the simulator's in-process transport
and read what it printed, so every exit code, JSON document and error line is checked on
both backends without sockets (except where the socket is the point: unreachable host).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import httpx
import pytest

from async_dispatch._cli import ExitCode, main, run
from async_dispatch._cli import _tasks as cli_tasks
from async_dispatch._cli._parser import parse
from async_dispatch.testing import Durations, Simulator, simulator

KEY = "sim-key"
QUICK = ["--interval", "0.02", "--max-interval", "0.05", "--rate", "200"]


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def cli(
    *argv: str,
    sim: Simulator | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    env: dict[str, str] | None = None,
    stdin: str = "",
    tty: bool = False,
) -> Result:
    out: io.StringIO = _Terminal() if tty else io.StringIO()
    err = io.StringIO()
    environ = {
        "DISPATCH_API_KEY": KEY,
        "DISPATCH_BASE_URL": "http://127.0.0.1/fast/v2",
        "DISPATCH_EXECUTION_MODE": "cloud",
    }
    environ.update(env or {})
    if sim is not None:
        transport = sim.transport()
    code = await run(
        list(argv),
        stdout=out,
        stderr=err,
        stdin=io.StringIO(stdin),
        environ=environ,
        transport=transport,
    )
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with simulator(seed=11, durations=Durations.fixed(0.05)) as running:
        yield running


async def _submit(sim: Simulator, outcome: str) -> str:
    extra = json.dumps({"simulate": {"outcome": outcome}})
    result = await cli("submit", "/Operator go", "--extra", extra, sim=sim)
    assert result.code == ExitCode.OK, result.err
    return result.out.strip()


@pytest.mark.anyio
async def test_submit_prints_the_id_and_status_reads_it(sim: Simulator) -> None:
    request_id = await _submit(sim, "success")
    assert request_id.startswith("req_")
    assert request_id in sim.app.tasks

    result = await cli("status", request_id, "--json", sim=sim)
    assert result.code == ExitCode.OK
    document = json.loads(result.out)
    assert document["request_id"] == request_id
    assert document["status"] in ("pending", "success")

    plain = await cli("status", request_id, sim=sim)
    assert f"request_id: {request_id}" in plain.out.splitlines()


@pytest.mark.anyio
@pytest.mark.parametrize(("outcome", "code"), [("success", 0), ("error", 1)])
async def test_submit_wait_json_is_one_document_and_the_exit_code_follows_the_task(
    sim: Simulator, outcome: str, code: int
) -> None:
    extra = json.dumps({"simulate": {"outcome": outcome}})
    result = await cli("submit", "go", "--wait", "--json", "--extra", extra, *QUICK, sim=sim)
    assert result.code == code, result.err
    document = json.loads(result.out)  # exactly one JSON document
    assert document["kind"] == outcome
    assert document["status"]["status"] == outcome
    assert document["request_id"] in sim.app.tasks


@pytest.mark.anyio
async def test_submit_wait_reports_input_requests_on_stderr(sim: Simulator) -> None:
    simulate = {"outcome": "input-required", "inputWait": 0.1, "finalOutcome": "success"}
    extra = json.dumps({"simulate": simulate})
    result = await cli("submit", "go", "--wait", "--extra", extra, *QUICK, sim=sim)
    assert result.code == ExitCode.OK, result.err
    assert "input required" in result.err
    assert "status: success" in result.out.splitlines()


@pytest.mark.anyio
async def test_wait_tracks_mixed_outcomes_as_json_lines(sim: Simulator) -> None:
    ok = await _submit(sim, "success")
    failed = await _submit(sim, "error")
    stuck = await _submit(sim, "never")
    result = await cli(
        "wait", ok, failed, stuck, "req_unknown", "--json", "--deadline", "0.5", *QUICK, sim=sim
    )
    assert result.code == ExitCode.NOT_FOUND  # an unknown id says so, as `status` does
    kinds = {line["request_id"]: line["kind"] for line in result.json_lines()}
    assert kinds == {ok: "success", failed: "error", stuck: "timed-out", "req_unknown": "failed"}


@pytest.mark.anyio
async def test_wait_reads_ids_from_stdin_and_exits_0_when_all_succeed(sim: Simulator) -> None:
    ids = [await _submit(sim, "success") for _ in range(3)]
    stdin = "\n".join([ids[0], "", "# a comment", ids[1], ids[2], ids[0]]) + "\n"
    result = await cli("wait", "-", *QUICK, sim=sim, stdin=stdin)
    assert result.code == ExitCode.OK, result.err
    lines = result.out.splitlines()
    assert sorted(line.split("\t")[0] for line in lines[:-1]) == sorted(ids)
    assert lines[-1] == "3 tasks: success 3"


@pytest.mark.anyio
async def test_wait_on_a_terminal_draws_a_table(sim: Simulator) -> None:
    ok = await _submit(sim, "success")
    failed = await _submit(sim, "error")
    result = await cli("wait", ok, failed, *QUICK, sim=sim, tty=True)
    assert result.code == ExitCode.TASK_FAILED
    assert ok in result.out
    assert failed in result.out
    assert "2 tasks: success 1, error 1" in result.out


@pytest.mark.anyio
async def test_wait_with_empty_stdin_is_a_usage_error(sim: Simulator) -> None:
    result = await cli("wait", "-", sim=sim, stdin="\n")
    assert result.code == ExitCode.USAGE
    assert result.err.startswith("async-dispatch: error: no request ids")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "command", [["status", "req_x"], ["submit", "go", *QUICK], ["wait", "req_x", *QUICK]]
)
async def test_a_wrong_key_is_one_line_exit_3_and_never_printed(
    sim: Simulator, command: list[str]
) -> None:
    secret = "wrong-key-0123456789"
    result = await cli(*command, sim=sim, env={"DISPATCH_API_KEY": secret})
    assert result.code == ExitCode.AUTH
    assert result.err.count("\n") == 1
    assert "401" in result.err
    assert "Traceback" not in result.err
    assert secret not in result.out + result.err


@pytest.mark.anyio
async def test_a_missing_key_says_how_to_give_one(sim: Simulator) -> None:
    result = await cli("status", "req_x", sim=sim, env={"DISPATCH_API_KEY": " "})
    assert result.code == ExitCode.USAGE
    assert result.err == (
        "async-dispatch: error: no API key: pass --api-key or set DISPATCH_API_KEY\n"
    )


@pytest.mark.anyio
async def test_the_api_key_flag_wins_over_the_environment(sim: Simulator) -> None:
    result = await cli("status", "req_x", "--api-key", KEY, sim=sim, env={"DISPATCH_API_KEY": "x"})
    assert result.code == ExitCode.NOT_FOUND  # authenticated, then 404


@pytest.mark.anyio
async def test_an_unknown_id_is_exit_4(sim: Simulator) -> None:
    result = await cli("status", "req_000000000000", sim=sim)
    assert result.code == ExitCode.NOT_FOUND
    assert "does not know this request id" in result.err
    assert result.out == ""


@pytest.mark.anyio
async def test_a_malformed_id_is_a_usage_error(sim: Simulator) -> None:
    result = await cli("status", "..", sim=sim)
    assert result.code == ExitCode.USAGE
    assert "invalid request id" in result.err


@pytest.mark.anyio
async def test_an_unreachable_host_is_exit_5() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await cli(
        "status", "req_x", "--retries", "0", env={"DISPATCH_BASE_URL": f"http://127.0.0.1:{port}"}
    )
    assert result.code == ExitCode.UNREACHABLE
    assert result.err.startswith("async-dispatch: error: GET /remote-dispatch/responses/req_x")
    assert result.err.count("\n") == 1


@pytest.mark.anyio
async def test_plain_http_to_a_remote_host_is_refused() -> None:
    result = await cli("status", "req_x", env={"DISPATCH_BASE_URL": "http://example.com"})
    assert result.code == ExitCode.USAGE
    assert "refusing plain http://" in result.err


def _answer(status: int, body: bytes, **headers: str) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(status, content=body, headers=headers)
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("transport", "code"),
    [
        (_answer(403, b'{"detail": "no"}'), ExitCode.AUTH),
        (_answer(429, b"{}", **{"retry-after": "0"}), ExitCode.RATE_LIMITED),
        (_answer(200, b"<html>portal</html>"), ExitCode.INVALID_RESPONSE),
        (_answer(503, b'{"error": "down"}'), ExitCode.SERVER_ERROR),
        (_answer(422, b'{"detail": "bad"}'), ExitCode.BAD_REQUEST),
    ],
)
async def test_each_class_of_failure_has_its_exit_code(
    transport: httpx.MockTransport, code: ExitCode
) -> None:
    result = await cli("status", "req_x", "--retries", "0", transport=transport)
    assert result.code == code
    assert result.err.count("\n") == 1


@pytest.mark.anyio
async def test_a_submit_that_may_have_landed_is_exit_10() -> None:
    result = await cli("submit", "go", transport=_answer(502, b"bad gateway"))
    assert result.code == ExitCode.SUBMIT_UNCERTAIN
    assert "may have been created" in result.err


@pytest.mark.anyio
async def test_a_key_echoed_by_the_service_is_redacted() -> None:
    body = json.dumps(
        {
            "status": "success",
            "response": {"text": f"your key is {KEY}"},
            "createdAt": "2024-12-19T00:00:00.000000+00:00",
            "completedAt": "2024-12-19T00:01:00.000000+00:00",
        }
    ).encode()
    for extra in ([], ["--json"]):
        result = await cli("status", "req_x", *extra, transport=_answer(200, body))
        assert result.code == ExitCode.OK
        assert KEY not in result.out
        assert "your key is ***" in result.out


@pytest.mark.anyio
async def test_bad_extra_json_is_a_usage_error(sim: Simulator) -> None:
    result = await cli("submit", "go", "--extra", "[1]", sim=sim)
    assert result.code == ExitCode.USAGE
    assert "--extra must be a JSON object" in result.err


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wait"]) == ExitCode.USAGE
    assert "usage: async-dispatch wait" in capsys.readouterr().err
    assert main(["wait", "req_x", "--rate", "0"]) == ExitCode.USAGE
    assert "must be a number > 0" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "Exit codes: 0 ok, 1 task failed" in capsys.readouterr().out


@pytest.mark.anyio
async def test_connection_options_are_accepted_before_the_command(sim: Simulator) -> None:
    result = await cli(
        "--api-key", KEY, "--retries", "0", "status", "req_000000000000",
        sim=sim, env={"DISPATCH_API_KEY": "wrong"},
    )  # fmt: skip
    assert result.code == ExitCode.NOT_FOUND  # authenticated with the key given first
    after = await cli("--api-key", "wrong", "status", "req_x", "--api-key", KEY, sim=sim)
    assert after.code == ExitCode.NOT_FOUND  # given twice: the later one wins


@pytest.mark.anyio
async def test_plain_http_names_the_flag_that_allows_it() -> None:
    refused = await cli("status", "req_x", env={"DISPATCH_BASE_URL": "http://example.com"})
    assert refused.code == ExitCode.USAGE
    assert "--allow-insecure" in refused.err
    assert "allow_insecure=True" not in refused.err
    body = b'{"status": "pending", "createdAt": "2024-12-19T00:00:00.000000+00:00"}'
    allowed = await cli(
        "--allow-insecure",
        "status",
        "req_x",
        transport=_answer(200, body),
        env={"DISPATCH_BASE_URL": "http://example.com"},
    )
    assert allowed.code == ExitCode.OK, allowed.err


@pytest.mark.anyio
async def test_an_unreachable_host_says_what_to_check() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = await cli("status", "req_x", "--retries", "0", env={"DISPATCH_BASE_URL": url})
    assert result.code == ExitCode.UNREACHABLE
    assert f"Is the service running at {url}?" in result.err
    assert "DISPATCH_BASE_URL" in result.err
    assert "ssl:default" not in result.err
    assert result.err.count("\n") == 1


@pytest.mark.anyio
async def test_wait_prints_whole_labelled_lines_when_piped() -> None:
    text = "a long answer " * 20
    created = datetime.now(timezone.utc) - timedelta(seconds=90)
    body = json.dumps(
        {
            "status": "success",
            "response": {"text": text},
            "createdAt": created.isoformat(),
            "completedAt": datetime.now(timezone.utc).isoformat(),
        }
    ).encode()
    result = await cli("wait", "req_long", *QUICK, transport=_answer(200, body))
    assert result.code == ExitCode.OK, result.err
    fields = result.out.splitlines()[0].split("\t")
    assert fields[:2] == ["req_long", "success"]
    # The task's age, from the service's createdAt: not the fraction of a second tracked.
    label, _, seconds = fields[2].partition("=")
    assert label == "age"
    assert seconds.endswith("s")
    assert 89 <= float(seconds[:-1]) < 200
    assert fields[3] == "polls=1"
    assert fields[4] == text.strip()  # whole: a pipe has no width to respect


@pytest.mark.anyio
async def test_without_a_status_the_time_shown_is_labelled_tracked(sim: Simulator) -> None:
    result = await cli("wait", "req_000000000000", *QUICK, sim=sim)
    assert result.code == ExitCode.NOT_FOUND
    fields = result.out.splitlines()[0].split("\t")
    assert fields[1] == "failed"
    assert fields[2].startswith("tracked=")  # never told when the task was created


@pytest.mark.anyio
async def test_a_timed_out_submit_wait_says_what_happened(sim: Simulator) -> None:
    extra = json.dumps({"simulate": {"outcome": "never"}})
    result = await cli(
        "submit", "go", "--wait", "--deadline", "0.3", "--extra", extra, *QUICK, sim=sim
    )
    assert result.code == ExitCode.TASK_FAILED, result.err
    request_id, line = result.out.splitlines()
    prefix = f"{request_id}: timed-out: deadline passed at "
    assert line.startswith(prefix), line
    assert " UTC after 0." in line  # when, then how long it was tracked
    assert "s of tracking and " in line
    assert "; last status: pending (created 20" in line


@pytest.mark.anyio
@pytest.mark.parametrize("key", ["a", "as", "sim-k"])
async def test_a_key_too_short_to_be_real_is_refused_without_mangling(
    sim: Simulator, key: str
) -> None:
    result = await cli("status", "req_x", "--api-key", key, sim=sim)
    assert result.code == ExitCode.USAGE
    assert result.err.startswith("async-dispatch: error: the API key has ")
    assert "***" not in result.err  # the message is not mangled by masking the key
    assert "check --api-key or DISPATCH_API_KEY" in result.err
    assert result.err.count("\n") == 1
    assert sim.app.tasks == {}  # nothing was sent


@pytest.mark.anyio
async def test_the_simulators_default_key_is_long_enough(sim: Simulator) -> None:
    assert len(KEY) == 7
    result = await cli("status", "req_000000000000", sim=sim)
    assert result.code == ExitCode.NOT_FOUND  # accepted, authenticated, then 404


@pytest.mark.parametrize("command", [["wait", "req_x"], ["submit", "go", "--wait"]])
def test_intervals_out_of_order_are_a_usage_error_naming_both(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main([*command, "--interval", "5", "--max-interval", "0.1"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--max-interval (0.1) must be at least --interval (5)" in err


def test_a_long_interval_alone_raises_the_default_maximum() -> None:
    parsed = parse(
        ["wait", "req_x", "--interval", "30"], stdout=io.StringIO(), stderr=io.StringIO()
    )
    assert isinstance(parsed, argparse.Namespace)
    assert (parsed.interval, parsed.max_interval) == (30.0, 30.0)
    default = parse(["wait", "req_x"], stdout=io.StringIO(), stderr=io.StringIO())
    assert isinstance(default, argparse.Namespace)
    assert (default.interval, default.max_interval) == (2.0, 10.0)


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    assert main(["simulate", "--port", port]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "OverflowError" not in err
    assert err.splitlines()[-1].startswith("async-dispatch simulate: error: argument --port: ")


@pytest.mark.anyio
async def test_the_insecure_variable_allows_plain_http_as_the_flag_does() -> None:
    body = b'{"status": "pending", "createdAt": "2024-12-19T00:00:00.000000+00:00"}'
    remote = {"DISPATCH_BASE_URL": "http://example.com"}
    refused = await cli("status", "req_x", env=remote, transport=_answer(200, body))
    assert refused.code == ExitCode.USAGE
    assert "DISPATCH_ALLOW_INSECURE=1" in refused.err
    allowed = await cli(
        "status",
        "req_x",
        transport=_answer(200, body),
        env={**remote, "DISPATCH_ALLOW_INSECURE": "1"},
    )
    assert allowed.code == ExitCode.OK, allowed.err
    typo = await cli("status", "req_x", env={**remote, "DISPATCH_ALLOW_INSECURE": "ture"})
    assert typo.code == ExitCode.USAGE
    assert "DISPATCH_ALLOW_INSECURE must be 1 or 0" in typo.err


@pytest.mark.anyio
async def test_wait_reads_whitespace_separated_ids_from_stdin(sim: Simulator) -> None:
    ids = [await _submit(sim, "success") for _ in range(3)]
    stdin = f"{ids[0]} {ids[1]}\t{ids[2]}  # three on a line\n"
    result = await cli("wait", "-", "--json", *QUICK, sim=sim, stdin=stdin)
    assert result.code == ExitCode.OK, result.err
    assert sorted(line["request_id"] for line in result.json_lines()) == sorted(ids)


@pytest.mark.anyio
async def test_an_unknown_id_exits_4_from_wait_as_from_status(sim: Simulator) -> None:
    status = await cli("status", "req_000000000000", sim=sim)
    wait = await cli("wait", "req_000000000000", *QUICK, sim=sim)
    assert status.code == wait.code == ExitCode.NOT_FOUND


def test_simulate_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [
        ("--rate", "(default: no limit)"),
        ("--median", "(default 1)"),
        ("--time-scale", "(default 1)"),
        ("--fault-rate", "(default 0)"),
        ("--port", "(default 8000;"),
        ("--api-key", "(default sim-key)"),
    ]:
        assert option in text
        assert default in text


def test_version_names_the_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "async-dispatch (async-remote-dispatch) 0.1.0"


@pytest.mark.anyio
async def test_library_warnings_reach_stderr_only_while_the_command_runs(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = logging.getLogger("async_dispatch")
    handlers = list(library.handlers)
    seen: list[int] = []

    async def status_that_warns(*args: Any) -> int:
        logging.getLogger("async_dispatch.poller").warning("rate_limited pause=1.0")
        logging.getLogger("async_dispatch.client").warning("api_key_refused status=401")
        seen.append(len(library.handlers))
        return 0

    monkeypatch.setattr(cli_tasks, "status", status_that_warns)
    result = await cli("status", "req_x", sim=sim)
    assert result.code == ExitCode.OK
    assert seen == [len(handlers) + 1]
    assert library.handlers == handlers  # removed again: nothing global changed
    assert "rate_limited pause=1.0" in result.err
    assert "api_key_refused" not in result.err  # the CLI's own error line says it
    assert result.out == ""


@pytest.mark.anyio
async def test_a_base_url_that_is_not_the_api_is_its_own_exit_code(sim: Simulator) -> None:
    """A wrong path is not an unknown request id (exit 4) nor an uncertain submit (10)."""
    result = await cli("submit", "go", sim=sim, env={"DISPATCH_BASE_URL": "http://127.0.0.1/v9"})
    assert result.code == ExitCode.WRONG_ENDPOINT
    assert "check base_url" in result.err
    assert sim.stats.tasks_created == 0
