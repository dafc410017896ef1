"""Issue #10: the library is a guest in the application's logging.

A script that configures no logging meets a 429 storm and a rejected webhook: its stdout
holds only what it printed, and the library's warnings reach stderr through `logging`'s
last-resort handler. An application that configured `logging` sees the events like any
other library's; one that renders with structlog gets the events' fields back as keys.

Each case runs in its own interpreter: logging configuration is process-wide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Runs a poller into a 429 storm (the simulator allows 1 request a second, the poller
#: tries 50; the ids are unknown to it, so the requests it admits answer 404) and feeds a
#: webhook with a wrong secret to a receiver. `CONFIGURE` is each case's logging setup.
SCRIPT = """
import anyio

from async_dispatch import Poller, RetryPolicy
from async_dispatch.testing import RateLimit, simulator
from async_dispatch.webhooks import WebhookReceiver

CONFIGURE


async def main() -> None:
    async with simulator(seed=1, time_scale=0.01, rate_limit=RateLimit(rate=1, burst=1)) as sim:
        ids = [f"req_{n}" for n in range(20)]
        async with (
            sim.client(retry=RetryPolicy(attempts=1)) as client,
            Poller(client, rate=50, burst=50, initial_interval=0.01, deadline=1) as poller,
        ):
            await poller.track_many(ids)
            async for _ in poller:
                pass
            receiver = WebhookReceiver(poller, secret="right-secret")
            answer = await receiver.handle(
                b'{"requestId": "req_0", "status": "success", "callbackSecret": "wrong"}', {}
            )
            assert answer.status_code == 401, answer
            assert poller.stats.rate_limited > 0, poller.stats
    print("the script's own line")


anyio.run(main)
"""


def run_script(configure: str) -> subprocess.CompletedProcess[str]:
    source = SCRIPT.replace("CONFIGURE", textwrap.dedent(configure))
    return subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=120, check=False
    )


def test_an_unconfigured_guest_keeps_stdout_to_the_script() -> None:
    result = run_script("")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the script's own line\n"
    # logging's last resort: WARNING and above, the message only, on stderr; a refused
    # webhook is said at info level, which an unconfigured application does not show.
    assert "rate_limited" in result.stderr
    assert "webhook_refused" not in result.stderr
    assert "sim-key" not in result.stderr + result.stdout


def test_a_basicconfig_application_sees_the_events() -> None:
    result = run_script(
        """
        import logging
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the script's own line\n"
    assert "WARNING async_dispatch rate_limited seconds=" in result.stderr
    assert "INFO async_dispatch webhook_refused reason='bad_secret'" in result.stderr


@pytest.mark.parametrize("renderer", ["KeyValueRenderer", "JSONRenderer"])
def test_a_structlog_application_gets_key_value_fields(renderer: str) -> None:
    result = run_script(
        f"""
        import logging
        import sys
        import structlog

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.{renderer}(sort_keys=True),
                ],
            )
        )
        logging.getLogger("async_dispatch").addHandler(handler)
        logging.getLogger("async_dispatch").setLevel(logging.INFO)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the script's own line\n"
    lines = [line for line in result.stderr.splitlines() if "webhook_refused" in line]
    assert lines, result.stderr
    if renderer == "KeyValueRenderer":
        assert "level='info'" in lines[0]
        assert "reason='bad_secret'" in lines[0]
        assert "status_code=401" in lines[0]
    else:
        import json

        event = json.loads(lines[0])
        assert event["reason"] == "bad_secret"
        assert event["status_code"] == 401
        assert event["level"] == "info"
    paused = [line for line in result.stderr.splitlines() if "rate_limited" in line]
    assert paused, result.stderr
    assert "source" in paused[0]
    assert "seconds" in paused[0]
