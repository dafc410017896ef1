"""One trace per task, across real processes: a task submitted from a FastAPI handler on
replica A, checked by replica B, resolved by a webhook on replica C, its outcome handled
by whichever replica reads it, all sharing one `RedisStore` on a real Redis.

Each replica (tests/trace_replica.py) exports its spans with the OpenTelemetry SDK to a
JSON-lines file; the test joins the files and follows the task from the request that
submitted it to the code that consumed its outcome, by parents and links only: ids that
crossed process boundaries through the store, and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from async_dispatch.instrumentation import (
    SPAN_CHECK,
    SPAN_DELIVER,
    SPAN_SUBMIT,
    SPAN_TASK,
    SPAN_TRACK,
)
from async_dispatch.testing import SimulatorConfig, serve
from async_dispatch.testing._config import OutcomeMix

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.asyncio_only]

REPLICA = Path(__file__).with_name("trace_replica.py")
SECRET = "whsec-TRACE-SECRET-0123456789"
PROMPT = "/Operator a PROMPT-THAT-MUST-NOT-LEAK"
ANSWER = "an ANSWER-THAT-MUST-NOT-LEAK"
#: Generous: three interpreters start on two shared cores.
PATIENCE = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replica:
    """One replica process: its JSON lines on stdout and its spans, each in a file."""

    def __init__(self, name: str, directory: Path, *args: str, port: int | None = None) -> None:
        self.name = name
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spans_path = directory / f"{name}.spans.jsonl"
        self._out = open(directory / f"{name}.out.jsonl", "w+")  # noqa: SIM115
        # A file, not a pipe: a chatty process can never block on a full pipe.
        self._err = open(directory / f"{name}.err.txt", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                *(sys.executable, str(REPLICA), "--port", str(self.port)),
                *("--spans", str(self.spans_path), *args),
            ],
            stdout=self._out,
            stderr=self._err,
        )

    def events(self) -> list[dict[str, Any]]:
        with open(self._out.name) as lines:
            return [json.loads(line) for line in lines if line.strip().startswith("{")]

    def spans(self) -> list[dict[str, Any]]:
        if not self.spans_path.exists():
            return []
        with open(self.spans_path) as lines:
            return [dict(json.loads(line), replica=self.name) for line in lines if line.strip()]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (only the one this test started). Idempotent."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._out.close()
        self._err.close()

    def stderr(self) -> str:
        with open(self._err.name) as text:
            return text.read()[-3000:]


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop(signal.SIGKILL)


async def until(predicate: Any, what: str, *watched: Replica) -> None:
    """Wait for `predicate`; a timeout says what was awaited and what the replicas said."""
    with anyio.move_on_after(PATIENCE):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.05)
        return
    said = "\n".join(f"{r.name}: {r.stderr()}" for r in watched)
    raise AssertionError(f"waited {PATIENCE:g} s for {what}\n{said}")


def named(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"] == name]


async def test_one_trace_from_request_to_consumer_across_three_replicas(
    redis_url: str, redis_name: str, replicas: list[Replica]
) -> None:
    config = SimulatorConfig(outcomes=OutcomeMix.only("never"))  # only the webhook resolves
    with tempfile.TemporaryDirectory(prefix="traces-") as tmp:
        directory = Path(tmp)
        async with serve(config, port=0) as simulator:
            common = ["--base-url", simulator.base_url, "--redis-url", redis_url]
            common += ["--name", redis_name, "--secret", SECRET]
            c_port = free_port()
            callback = f"http://127.0.0.1:{c_port}/webhooks/dispatch"
            a = Replica("a", directory, *common, "--callback-url", callback)
            replicas.append(a)
            await until(lambda: any(e.get("ready") for e in a.events()), "A ready", a)
            async with httpx.AsyncClient(timeout=PATIENCE) as http:
                # The caller's own trace, continued by A's server span.
                caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
                traceparent = f"00-{caller_trace}-00f067aa0ba902b7-01"
                answer = await http.post(
                    f"{a.url}/jobs", params={"prompt": PROMPT}, headers={"traceparent": traceparent}
                )
                answer.raise_for_status()
                request_id = answer.json()["request_id"]
                a.stop()  # A submitted; the others check and resolve

                b = Replica("b", directory, *common, "--callback-url", callback)
                replicas.append(b)
                await until(lambda: len(named(b.spans(), SPAN_CHECK)) >= 2, "B checks", b)

                # C serves the webhook route every replica asks the service to call.
                c = Replica("c", directory, *common, "--callback-url", callback, port=c_port)
                replicas.append(c)
                await until(lambda: any(e.get("ready") for e in c.events()), "C ready", c)
                payload = {
                    "requestId": request_id,
                    "status": "success",
                    "createdAt": datetime.now(timezone.utc).isoformat(),
                    "completedAt": datetime.now(timezone.utc).isoformat(),
                    "response": {"text": ANSWER},
                    "callbackSecret": SECRET,
                }
                delivered = await http.post(callback, json=payload)
                assert delivered.status_code < 300, delivered.text

            def consumed() -> bool:
                return any("outcome" in e for r in (b, c) for e in r.events())

            await until(consumed, "an outcome handled", b, c)
            await until(
                lambda: any(named(r.spans(), "handle outcome") for r in (b, c)),
                "handled span",
                b,
                c,
            )
            await until(lambda: any(named(r.spans(), SPAN_TASK) for r in (b, c)), "task span", b, c)
        spans = a.spans() + b.spans() + c.spans()
        outcome = next(e for r in (b, c) for e in r.events() if "outcome" in e)
        for replica in (a, b, c):
            replica.stop()
    assert outcome == {"outcome": request_id, "kind": "success", "via": "webhook"}
    check_one_trace(spans, caller_trace)


def check_one_trace(spans: list[dict[str, Any]], caller_trace: str) -> None:
    """Follow the task by parents and links from the request that submitted it."""
    by_id = {span["context"]["span_id"]: span for span in spans}
    (track,) = named(spans, SPAN_TRACK)
    task_trace = track["context"]["trace_id"]
    assert task_trace == "0x" + caller_trace  # the task's trace is the caller's

    def parent(span: dict[str, Any]) -> dict[str, Any] | None:
        return by_id.get(span["parent_id"]) if span.get("parent_id") else None

    def linked(span: dict[str, Any]) -> list[str]:
        return [link["context"]["span_id"] for link in span.get("links", ())]

    # A: the handler's server span, the track span in it, the submit request in that.
    server = parent(track)
    assert server is not None
    assert (server["name"], server["replica"]) == ("POST /jobs", "a")
    assert track["kind"] == "SpanKind.PRODUCER"
    (submit,) = named(spans, SPAN_SUBMIT)
    assert parent(submit) is track
    # B: checks of A's task, children of its track span (no parent lasting hours).
    checks = [s for s in named(spans, SPAN_CHECK) if s["replica"] == "b"]
    assert len(checks) >= 2
    for check in checks:
        assert parent(check) is track
        assert check["kind"] == "SpanKind.CLIENT"
        assert check["attributes"]["http.request.method"] == "GET"
    # C: the webhook's delivery, in the task's trace, linked to C's own request span.
    (deliver,) = named(spans, SPAN_DELIVER)
    assert deliver["replica"] == "c"
    assert parent(deliver) is track
    assert deliver["kind"] == "SpanKind.CONSUMER"
    (webhook_request,) = [by_id[i] for i in linked(deliver)]
    assert webhook_request["name"] == "POST /webhooks/dispatch"
    assert webhook_request["replica"] == "c"
    # The task's life, from A's track to the final outcome, by the replica handing it over.
    (life,) = named(spans, SPAN_TASK)
    assert parent(life) is track
    assert life["attributes"] == {
        "async_dispatch.kind": "success",
        "async_dispatch.via": "webhook",
        "async_dispatch.polls": life["attributes"]["async_dispatch.polls"],
        "async_dispatch.attempts": 1,
    }
    assert life["attributes"]["async_dispatch.polls"] >= 2
    # The consumer's own work, linked to the task.
    (handled,) = named(spans, "handle outcome")
    assert track["context"]["span_id"] in linked(handled)
    # One connected graph, through parents and links, from the handler's server span.
    edges: dict[str, set[str]] = {span_id: set() for span_id in by_id}
    for span in spans:
        me = span["context"]["span_id"]
        for other in [span.get("parent_id") or "", *linked(span)]:
            if other in by_id:
                edges[me].add(other)
                edges[other].add(me)
    reached, frontier = set(), [server["context"]["span_id"]]
    while frontier:
        here = frontier.pop()
        if here not in reached:
            reached.add(here)
            frontier.extend(edges[here])
    wanted = [track, submit, *checks, deliver, webhook_request, life, handled]
    assert {span["context"]["span_id"] for span in wanted} <= reached
    assert {s["replica"] for s in wanted} == {"a", "b", "c"}
    # Nothing secret or private in any span of any replica.
    text = json.dumps(spans)
    for private in (PROMPT, "PROMPT-THAT", "ANSWER-THAT", SECRET, "sim-key"):
        assert private not in text
