"""What the command line shares with the library, and what it needs beyond the core.

The CLI reads its configuration through the library's own lookups (`_config`), shapes
JSON with the models' own `as_dict()`, and runs with the core install alone: rich and
uvicorn come with the ``cli`` extra, and without them the commands that talk to the
service print plain lines while ``simulate`` and ``demo`` name the extra to install.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest

from async_dispatch import DispatchClient, Outcome, OutcomeKind, TaskStatus, UsageError
from async_dispatch._cli import ExitCode, run
from async_dispatch._cli._output import Redactor, counts_markup, make_display
from async_dispatch._cli._simulate import client_base_url
from async_dispatch._config import (
    ALLOW_INSECURE_ENV,
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    configured_allow_insecure,
    configured_api_key,
    configured_base_url,
)
from async_dispatch._models import Status, Usage
from async_dispatch.testing import Durations, Simulator, simulator

QUICK = ["--interval", "0.02", "--max-interval", "0.05", "--rate", "200"]
EXTRA_HINT = "pip install 'async-remote-dispatch[cli]'"


def test_explicit_values_win_then_the_environment_then_the_default() -> None:
    env = {API_KEY_ENV: "from-env", BASE_URL_ENV: "http://127.0.0.1:9"}
    assert configured_api_key("given", env) == "given"
    assert configured_api_key(None, env) == "from-env"
    assert configured_api_key(None, {}) is None
    assert configured_api_key("  ", env) is None  # explicit, even when blank
    assert configured_base_url("https://x.test", env) == "https://x.test"
    assert configured_base_url(None, env) == "http://127.0.0.1:9"
    assert configured_base_url(None, {BASE_URL_ENV: ""}) == DEFAULT_BASE_URL


def test_the_client_reads_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "k")
    monkeypatch.setenv(BASE_URL_ENV, "http://127.0.0.1:9/")
    assert DispatchClient().base_url == "http://127.0.0.1:9"


def _status() -> TaskStatus:
    return TaskStatus(
        request_id="req_1",
        status=Status.UNKNOWN,
        raw_status="paused",
        created_at=datetime(2024, 12, 19, tzinfo=timezone.utc),
        text="hi",
        response={"text": "hi", "extra": [1]},
        usage=Usage(actions=2, credits=0.5),
        hitl_input_metadata={"id": "in_1"},
    )


def test_models_shape_themselves_as_json() -> None:
    status = _status().as_dict()
    assert json.loads(json.dumps(status)) == status
    assert status["status"] == "paused"  # the raw string survives
    assert status["created_at"] == "2024-12-19T00:00:00+00:00"
    assert status["usage"] == {"actions": 2, "credits": 0.5}
    outcome = Outcome(
        request_id="req_1",
        kind=OutcomeKind.FAILED,
        status=_status(),
        error=ValueError("gone"),
        context=object(),  # not JSON: left out
        polls=3,
        elapsed=1.23456,
    ).as_dict()
    assert json.loads(json.dumps(outcome)) == outcome
    assert outcome["kind"] == "failed"
    assert outcome["error"] == "gone"
    assert outcome["elapsed"] == 1.235
    assert "context" not in outcome


@pytest.fixture
def without_cli_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if only the core were installed: rich and uvicorn cannot be imported."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("rich", "uvicorn"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "uvicorn", None)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with simulator(seed=5, durations=Durations.fixed(0.05)) as running:
        yield running


@pytest.mark.anyio
@pytest.mark.usefixtures("without_cli_extra")
async def test_without_rich_a_terminal_gets_plain_lines(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, err = _Terminal(), io.StringIO()
    environ = {API_KEY_ENV: "sim-key", BASE_URL_ENV: sim.base_url}
    environ["DISPATCH_EXECUTION_MODE"] = "cloud"  # passed on to the client by the CLI
    submitted = await run(
        ["submit", "go", "--wait", *QUICK], stdout=out, stderr=err,
        environ=environ, transport=sim.transport(),
    )  # fmt: skip
    assert submitted == ExitCode.OK, err.getvalue()
    request_id = out.getvalue().splitlines()[0]
    out = _Terminal()
    code = await run(
        ["wait", request_id, *QUICK], stdout=out, stderr=err,
        environ=environ, transport=sim.transport(),
    )  # fmt: skip
    assert code == ExitCode.OK, err.getvalue()
    assert out.getvalue().splitlines()[-1] == "1 task: success 1"


@pytest.mark.anyio
@pytest.mark.usefixtures("without_cli_extra")
@pytest.mark.parametrize("command", [["simulate", "--port", "0"], ["demo", "--tasks", "4"]])
async def test_without_the_extra_serving_commands_name_it(command: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await run(command, stdout=out, stderr=err, environ={})
    assert code == ExitCode.USAGE
    assert err.getvalue().count("\n") == 1
    assert EXTRA_HINT in err.getvalue()
    assert out.getvalue() == ""


#: Run the console script in a fresh interpreter where rich and uvicorn cannot be found.
_BLOCKED = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rich", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
from async_dispatch._cli import main
sys.exit(main(sys.argv[1:]))
"""


def _blocked(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_starts_without_the_cli_extra() -> None:
    helped = _blocked("--help")
    assert helped.returncode == 0, helped.stderr
    assert "usage: async-dispatch" in helped.stdout
    demo = _blocked("demo")
    assert demo.returncode == ExitCode.USAGE
    assert (
        demo.stderr
        == f"async-dispatch: error: `async-dispatch demo` needs the cli extra: {EXTRA_HINT}\n"
    )


def _outcome_of_kind(kind: OutcomeKind) -> Outcome:
    return Outcome(
        request_id=f"req_{kind.name.lower()}",
        kind=kind,
        status=None if kind is OutcomeKind.SUBMIT_UNCERTAIN else _status(),
        error=ValueError("why") if kind is not OutcomeKind.SUCCESS else None,
        context=None,
        polls=2,
        elapsed=1.5,
        final=kind is not OutcomeKind.INPUT_REQUIRED,
    )


def test_every_outcome_kind_renders_in_every_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind without a style (SUBMIT_UNCERTAIN was one) would raise KeyError here."""
    monkeypatch.setenv("COLUMNS", "200")  # rich's table: room for every cell on one line
    outcomes = [_outcome_of_kind(kind) for kind in OutcomeKind]
    finals = [outcome for outcome in outcomes if outcome.final]
    counts = Counter(outcome.kind for outcome in outcomes)
    markup = counts_markup(counts)
    for kind in OutcomeKind:
        assert kind.value in markup or kind is OutcomeKind.INPUT_REQUIRED
    assert "asked for input 1" in markup
    for tty in (True, False):
        out = _Terminal() if tty else io.StringIO()
        display = make_display(Redactor(out, None), json_lines=False)
        display.start(len(finals))
        for outcome in outcomes:
            display.outcome(outcome)
        display.stop()
        display.finish(finals)
        text = out.getvalue()
        for outcome in finals:
            assert outcome.request_id in text
            assert outcome.kind.value in text


def test_simulate_names_a_loopback_url_for_a_wildcard_address() -> None:
    assert client_base_url("http://0.0.0.0:8000/fast/v2") == (
        "http://127.0.0.1:8000/fast/v2",
        False,
    )
    assert client_base_url("http://[::]:8000") == ("http://[::1]:8000", False)
    assert client_base_url("http://127.0.0.1:8000") == ("http://127.0.0.1:8000", False)
    # Another machine-visible address: plain http:// to it needs the variable.
    assert client_base_url("http://192.0.2.7:8000") == ("http://192.0.2.7:8000", True)


def test_the_url_simulate_prints_is_one_the_client_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sim-key")
    monkeypatch.delenv(ALLOW_INSECURE_ENV, raising=False)
    url, _ = client_base_url("http://0.0.0.0:8000/fast/v2")
    assert DispatchClient(base_url=url).base_url == url
    remote, insecure = client_base_url("http://192.0.2.7:8000")
    assert insecure
    with pytest.raises(UsageError, match="refusing plain http://"):
        DispatchClient(base_url=remote)
    monkeypatch.setenv(ALLOW_INSECURE_ENV, "1")
    assert DispatchClient(base_url=remote).base_url == remote
    # An explicit argument wins over the variable.
    with pytest.raises(UsageError, match="refusing plain http://"):
        DispatchClient(base_url=remote, allow_insecure=False)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("off", False)],
)
def test_the_insecure_variable_reads_like_a_switch(value: str, allowed: bool) -> None:
    assert configured_allow_insecure(None, {ALLOW_INSECURE_ENV: value}) is allowed
    assert configured_allow_insecure(None, {}) is False
    assert configured_allow_insecure(True, {ALLOW_INSECURE_ENV: "0"}) is True


def test_a_typo_in_the_insecure_variable_is_refused() -> None:
    with pytest.raises(UsageError, match="DISPATCH_ALLOW_INSECURE must be 1 or 0"):
        configured_allow_insecure(None, {ALLOW_INSECURE_ENV: "ture"})
