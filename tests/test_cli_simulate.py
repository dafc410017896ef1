"""``async-dispatch simulate`` end to end: a real process, real TCP, a real signal to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

CLI = [sys.executable, "-m", "async_dispatch._cli"]


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    with subprocess.Popen(
        [*CLI, "simulate", "--port", "0", "--json", "--seed", "3", "--time-scale", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # closes the pipes on the way out
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # printed once it accepts connections
            assert line, proc.stderr.read() if proc.stderr else ""
            yield proc, json.loads(line)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_simulate_serves_over_tcp_and_stops_cleanly_on_ctrl_c(
    served: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    proc, info = served
    assert info["base_url"].startswith("http://127.0.0.1:")
    assert info["api_key"].startswith("sim-")
    headers = {"x-api-key": info["api_key"]}
    with httpx.Client(base_url=info["base_url"], timeout=5) as http:
        bare = http.post("/remote-dispatch", json={"prompt": "hi"}, headers=headers)
        assert bare.status_code == 422  # the default mode needs a browser window
        body = {"prompt": "hi", "executionMode": "cloud"}
        submitted = http.post("/remote-dispatch", json=body, headers=headers)
        assert submitted.status_code == 202
        assert http.get("/remote-dispatch/responses/req_nope", headers=headers).status_code == 404
        assert http.get("/remote-dispatch/responses/req_nope").status_code == 401

    # The CLI as a user runs it, against the served simulator.
    env = {
        **os.environ,
        "DISPATCH_BASE_URL": info["base_url"],
        "DISPATCH_API_KEY": info["api_key"],
        "DISPATCH_EXECUTION_MODE": "cloud",
    }
    extra = json.dumps({"simulate": {"outcome": "success", "duration": 1}})
    done = subprocess.run(
        [*CLI, "submit", "go", "--wait", "--json", "--extra", extra, "--interval", "0.05"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "success"
    assert info["api_key"] not in done.stdout + done.stderr

    # A second simulator on the same port: one line, exit 2.
    assert info["base_url"].endswith("/fast/v2")  # the API's path, as the service has it
    port = str(httpx.URL(info["base_url"]).port)
    busy = subprocess.run(
        [*CLI, "simulate", "--port", port], capture_output=True, text=True, timeout=30, check=False
    )
    assert busy.returncode == 2
    assert busy.stderr.startswith(f"async-dispatch: error: cannot listen on 127.0.0.1:{port}")
    assert busy.stderr.count("\n") == 1

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


def _env(info: dict[str, Any]) -> dict[str, str]:
    """The environment `simulate` printed for its clients (mode included), as a user
    would export it."""
    return {**os.environ, **info["environment"]}


def _interrupt_after_first_line(command: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run `command`, send it SIGINT once it printed a line, and answer (code, out, err)."""
    with subprocess.Popen(
        [*CLI, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            first = proc.stdout.readline()
            assert first, proc.stderr.read()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=30)
            return code, first + proc.stdout.read(), proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_ctrl_c_during_submit_wait_lists_the_task_still_open(
    served: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    _, info = served
    never = json.dumps({"simulate": {"outcome": "never"}})
    code, out, err = _interrupt_after_first_line(
        ["submit", "go", "--wait", "--extra", never, "--interval", "0.05"], _env(info)
    )
    request_id = out.splitlines()[0]
    assert request_id.startswith("req_")
    assert code == 130, err
    assert err == (
        "async-dispatch: interrupted; 1 task still open at the service (resume with "
        f"`async-dispatch wait ID...`): {request_id}\n"
    )


def test_ctrl_c_during_wait_lists_only_the_tasks_still_open(
    served: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    _, info = served
    headers = {"x-api-key": info["api_key"]}
    ids: dict[str, list[str]] = {}
    with httpx.Client(base_url=info["base_url"], timeout=5) as http:
        for outcome in ("success", "never", "never"):
            body = {
                "prompt": "x",
                "executionMode": "cloud",
                "simulate": {"outcome": outcome, "duration": 0},
            }
            answer = http.post("/remote-dispatch", json=body, headers=headers)
            ids.setdefault(outcome, []).append(answer.json()["requestId"])
    every = [*ids["success"], *ids["never"]]
    code, out, err = _interrupt_after_first_line(["wait", *every, "--interval", "0.05"], _env(info))
    assert code == 130, err
    assert out.split("\t")[:2] == [ids["success"][0], "success"]  # the one that ended
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("async-dispatch: interrupted; 2 tasks still open at the service")
    assert line.endswith(": " + " ".join(ids["never"]))


def test_simulate_prints_a_usable_url_for_both_sdks() -> None:
    """Bound to every address, it names the loopback one, and the official SDK's names too."""
    with subprocess.Popen(
        [*CLI, "simulate", "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(6)]
            exports = dict(
                line.removeprefix("export ").strip().split("=", 1)
                for line in lines
                if line.startswith("export ")
            )
            assert set(exports) == {
                "DISPATCH_BASE_URL",
                "DISPATCH_API_KEY",
                "NARADA_API_BASE_URL",
                "NARADA_API_KEY",
                "DISPATCH_EXECUTION_MODE",  # the default mode needs a browser window
            }
            assert exports["DISPATCH_EXECUTION_MODE"] == "cloud"
            url = exports["DISPATCH_BASE_URL"]
            assert url.startswith("http://127.0.0.1:")
            assert exports["NARADA_API_BASE_URL"] == url
            assert exports["NARADA_API_KEY"] == exports["DISPATCH_API_KEY"] == "sim-key"
            env = {**os.environ, "DISPATCH_BASE_URL": url, "DISPATCH_API_KEY": "sim-key"}
            env.pop("DISPATCH_ALLOW_INSECURE", None)
            status = subprocess.run(
                [*CLI, "status", "req_000000000000", "--retries", "0"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
            assert status.returncode == 4, status.stderr  # accepted the URL, reached it: 404
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
