"""``async-dispatch simulate`` end to end: a real process, real TCP, a real signal to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

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
