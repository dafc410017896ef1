"""The vendor's official SDK runs against our simulator, and our client beside it.

``narada`` 0.2.18 (Python 3.12+) is installed once into ``.venv-narada/`` (reused while the
version matches) from whichever Python 3.12+ this machine has, found the way ``.ci/run``
finds 3.10. Each scenario gets its own simulator over loopback TCP, configured for the
outcome it needs (the SDK sends only its own body fields, so no ``simulate`` override can
reach the simulator through it). ``tests/official_sdk_scenarios.py`` drives the SDK's public
``Agent.run()`` against them in that interpreter and prints what it saw; our client runs
the same scenarios against the same simulators at the same time.

Without a Python 3.12+ the test is skipped, saying so; with ``ASYNC_DISPATCH_REQUIRE_SDK=1``
(``.ci/run`` sets it where one exists) a skip is a failure. Marked ``sdk``: it costs about
15 s (the SDK polls every 3 s), so the 3.10 pass of ``.ci/run`` leaves it out.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from async_dispatch import DispatchClient, OutcomeKind, Poller, SubmitOptions
from async_dispatch.testing import (
    Durations,
    OutcomeMix,
    RunningSimulator,
    SimulatorConfig,
    serve,
)

pytestmark = pytest.mark.sdk

NARADA = "0.2.18"
ROOT = Path(__file__).resolve().parent.parent
#: Where the SDK's environment lives: ``.venv-narada/`` beside the checkout, or wherever
#: ``$ASYNC_DISPATCH_SDK_VENV`` says (CI keeps it across runs of fresh clones).
VENV = Path(os.environ.get("ASYNC_DISPATCH_SDK_VENV") or ROOT / ".venv-narada")
SCRIPT = Path(__file__).with_name("official_sdk_scenarios.py")
KEY = "sk-official-sdk-test"
REQUIRE = os.environ.get("ASYNC_DISPATCH_REQUIRE_SDK") == "1"

#: Each scenario's simulator. Input requests stay open 5 s: the SDK polls every 3 s.
CONFIGS: dict[str, SimulatorConfig] = {
    "plain": SimulatorConfig(outcomes=OutcomeMix.only("success"), durations=Durations.fixed(1)),
    "structured": SimulatorConfig(outcomes=OutcomeMix.only("success")),
    "error": SimulatorConfig(outcomes=OutcomeMix.only("error")),
    "inputs": SimulatorConfig(
        outcomes=OutcomeMix.only("input-required"),
        durations=Durations.fixed(0.6),
        input_wait=5.0,
        input_requests=2,
    ),
    "ends_waiting": SimulatorConfig(
        outcomes=OutcomeMix.only("input-required"),
        durations=Durations.fixed(0.4),
        end_waiting=True,
    ),
    "attachment": SimulatorConfig(outcomes=OutcomeMix.only("success")),
    "start": SimulatorConfig(),
    "validate": SimulatorConfig(),
}
PROMPTS = {  # what the script asks; the SDK's operator agent prefixes "/Operator "
    "plain": "find the weather in Lisbon",
    "structured": "find a flight",
    "error": "book the impossible",
    "inputs": "fill in the form",
    "ends_waiting": "wait for me",
}
FLIGHT_SCHEMA = {
    "properties": {
        "airline": {"title": "Airline", "type": "string"},
        "price": {"title": "Price", "type": "number"},
        "stops": {"title": "Stops", "type": "integer"},
    },
    "required": ["airline", "price", "stops"],
    "title": "Flight",
    "type": "object",
}


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the SDK's side costs ~15 s, and our client's side is the same code
    that every other test runs on both backends."""
    return "asyncio"


# -- the SDK's interpreter --------------------------------------------------------------


def _candidates() -> list[str]:
    home = os.path.expanduser("~")
    found = [c for c in ("python3.12", "python3.13") if shutil.which(c)]
    found += sorted(glob.glob(f"{home}/.pyenv/versions/3.1[2-9]*/bin/python3.1[2-9]"))
    return found


def find_python() -> str | None:
    """The first interpreter that runs and is 3.12 or newer (pyenv shims of versions that
    are not selected exit non-zero, and are passed over)."""
    for candidate in _candidates():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if done.returncode == 0:
                return candidate
    return None


def sdk_python() -> str:
    """``.venv-narada/bin/python`` with narada installed: built once, then reused while
    its stamp names the pinned version. Built aside and renamed into place, under a lock,
    so an interrupted install never leaves a half-built environment behind."""
    python = VENV / "bin" / "python"
    stamp = VENV / f"narada-{NARADA}.stamp"
    if stamp.exists() and python.exists():
        return str(python)
    base = find_python()
    if base is None:
        reason = "the official SDK needs Python 3.12+, and this machine has none"
        if REQUIRE:
            pytest.fail(f"{reason} (ASYNC_DISPATCH_REQUIRE_SDK=1)")
        pytest.skip(reason)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.with_name(VENV.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and python.exists():
            return str(python)
        building = VENV.with_name(f"{VENV.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        try:
            subprocess.run([base, "-m", "venv", str(building)], check=True, timeout=120)
            subprocess.run(
                [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", f"narada=={NARADA}"],
                check=True, timeout=600, capture_output=True,
            )  # fmt: skip
            (building / f"narada-{NARADA}.stamp").write_text(base + "\n")
            shutil.rmtree(VENV, ignore_errors=True)
            building.rename(VENV)
        except subprocess.CalledProcessError as exc:
            output = (exc.stderr or b"").decode(errors="replace")[-2000:]
            pytest.fail(f"installing narada=={NARADA} with {base} failed:\n{output}")
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return str(python)


async def run_sdk(python: str, urls: dict[str, str]) -> dict[str, Any]:
    env = {
        **os.environ,
        "NARADA_API_KEY": KEY,
        "NARADA_API_BASE_URL": urls["plain"],
        "PYTHONPATH": "",
    }
    done = await anyio.run_process([python, str(SCRIPT), json.dumps(urls)], env=env, check=False)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr
    assert KEY not in done.stdout.decode() + stderr
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


# -- our client, the same scenarios -----------------------------------------------------


async def run_ours(name: str, url: str) -> dict[str, Any]:
    """What our client sees for scenario ``name``, in the SDK script's vocabulary."""
    options = SubmitOptions(
        browser_window_id="win-ours",
        response_format=(
            {"type": "jsonSchema", "jsonSchema": FLIGHT_SCHEMA} if name == "structured" else None
        ),
    )
    calls: list[dict[str, Any]] = []
    async with (
        DispatchClient(api_key=KEY, base_url=url) as client,
        Poller(client, deadline=40, initial_interval=0.2, max_interval=0.5, jitter=0) as poller,
    ):
        await poller.submit(f"/Operator {PROMPTS[name]}", options=options)
        async for outcome in poller:
            status = outcome.status
            assert status is not None, outcome
            if outcome.kind is OutcomeKind.INPUT_REQUIRED:
                request = outcome.input_request
                assert request is not None
                calls.append({"input_id": request.input_id, "kind": request.kind.value})
                if not outcome.final:
                    continue  # a notification; a task that ended waiting is final here
                assert status.completed_at is not None
            response = status.response or {}
            usage = status.usage
            assert usage is not None
            return {
                "status": status.raw_status,
                "text": status.text,
                "output": response.get("output"),
                "structured": status.structured_output if name == "structured" else None,
                "usage_actions": usage.actions,
                "calls": calls,
                "completed": status.completed_at is not None,
            }
    return {"status": "input-required", "calls": calls, "completed": True}


# -- the test ---------------------------------------------------------------------------


def _with_defaults(config: SimulatorConfig, seed: int) -> SimulatorConfig:
    """``config`` with this module's key, a seed, and instant tasks unless it says otherwise."""
    changes: dict[str, Any] = {"api_keys": {KEY}, "seed": seed}
    if config.durations == SimulatorConfig().durations:
        changes["durations"] = Durations.fixed(0)
    return attrs.evolve(config, **changes)


@pytest.mark.anyio
async def test_the_official_sdk_and_our_client_agree_on_every_scenario() -> None:
    python = sdk_python()
    async with contextlib.AsyncExitStack() as stack:
        running: dict[str, RunningSimulator] = {}
        for seed, (name, config) in enumerate(CONFIGS.items(), start=1):
            running[name] = await stack.enter_async_context(serve(_with_defaults(config, seed)))
        urls = {name: server.base_url for name, server in running.items()}

        ours: dict[str, dict[str, Any]] = {}

        async def our_side() -> None:
            async def one(name: str) -> None:
                ours[name] = await run_ours(name, urls[name])

            async with anyio.create_task_group() as tg:
                for name in PROMPTS:
                    tg.start_soon(one, name)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(our_side)
                report = await run_sdk(python, urls)

    assert report["narada"] == NARADA
    assert report["warnings"] == []  # no warning at start (GET /sdk/config), nor later
    sdk = report["results"]
    for name, result in sdk.items():
        assert "exception" not in result, (name, result["exception"])

    # A plain success: text, a text output, usage.
    plain = sdk["plain"]
    assert plain["status"] == "success"
    assert plain["text"] == "Completed: /Operator find the weather in Lisbon"
    assert plain["output"] == {"type": "text", "content": plain["text"]}
    assert plain["usage_actions"] >= 1
    assert plain["usage_credits"] > 0

    # Structured: the SDK validates the content into the pydantic model it was given.
    structured = sdk["structured"]
    assert structured["status"] == "success"
    assert structured["structured_type"] == "Flight"
    assert structured["structured"] == {"airline": "example", "price": 1.5, "stops": 1}
    assert structured["output"] == {"type": "structured", "content": structured["structured"]}

    # A task error is not an exception: Agent.run returns status "error" with the text.
    error = sdk["error"]
    assert error["status"] == "error"
    assert error["text"] == "Failed to complete the task due to network timeout."
    assert error["output"] == {"type": "text", "content": error["text"]}

    # Two input requests: the callback ran once per inputId, then the task succeeded.
    inputs = sdk["inputs"]
    assert inputs["status"] == "success"
    assert len(inputs["calls"]) == 2
    assert len({call["input_id"] for call in inputs["calls"]}) == 2

    # Ending at an input request: completedAt stops the SDK there, without the callback.
    ends = sdk["ends_waiting"]
    assert ends["status"] == "input-required"
    assert ends["calls"] == []
    assert ends["output"]["type"] == "text"

    # The SDK's upload went to the simulator's bucket, without the key, then attached.
    attachment = sdk["attachment"]
    assert attachment["status"] == "success"
    [upload] = running["attachment"].simulator.uploads.values()
    assert upload.filename == attachment["filename"]
    assert upload.data == b"an attachment from the official SDK"
    assert upload.api_key_sent is False

    # The default (client) execution mode with no browser window is refused.
    assert sdk["start"] == {"started": True, "bare_submit": 422}
    assert running["start"].simulator.stats.requests["sdk_config"] == 1

    # The SDK's own models accept every body the simulator sends.
    assert sorted(sdk["validate"]["validated"]) == sorted(
        [
            "HitlInputMetadata:prompt_for_user_input",
            "HitlInputMetadata:prompt_for_user_file",
            "HitlInputMetadata:user_approval",
            "TextOutput:waiting-prompt_for_user_input",
            "TextOutput:waiting-prompt_for_user_file",
            "TextOutput:waiting-user_approval",
            "AgentResponse:success",
            "AgentResponse:error",
            "AgentResponse:structured",
            "AgentResponse:ends-waiting",
        ]
    )

    # Our client, side by side: the same answers.
    for name in ("plain", "structured", "error"):
        mine, theirs = ours[name], sdk[name]
        assert (mine["status"], mine["text"], mine["output"]) == (
            theirs["status"],
            theirs["text"],
            theirs["output"],
        ), name
        assert mine["completed"]
    assert ours["structured"]["structured"] == sdk["structured"]["structured"]
    assert ours["inputs"]["status"] == "success"
    assert len({call["input_id"] for call in ours["inputs"]["calls"]}) == 2
    assert len(ours["inputs"]["calls"]) == 2  # one notification per input request
    assert ours["ends_waiting"]["status"] == "input-required"
    assert ours["ends_waiting"]["completed"]
    for name in PROMPTS:  # every task ran in the window our client named
        assert {task.browser_window_id for task in running[name].simulator.app.tasks.values()} == {
            "win-official-sdk",
            "win-ours",
        }, name


def test_the_interpreter_search_passes_over_what_cannot_run() -> None:
    """Found the way ``.ci/run`` finds 3.10: only names of 3.12+, and one that answers."""
    assert all(re.search(r"python3\.1[2-9]$", c) for c in _candidates())
    found = find_python()
    if found is None:
        assert not REQUIRE, "ASYNC_DISPATCH_REQUIRE_SDK=1, but no Python 3.12+ runs here"
        return
    version = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info >= (3, 12))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert version.stdout.strip() == "True"
