"""The example apps, served for real on loopback, against the simulator over TCP.

Each example runs under its real server (uvicorn for FastAPI, aiohttp's own for aiohttp)
on a port of its own; the simulator runs under uvicorn on another and delivers webhooks to
the app over TCP (on our own TCP_NODELAY sockets: see `bound_socket`). Both servers are
asyncio programs, so these tests run on asyncio only; the FastAPI integration is covered
on trio, in process, by test_fastapi.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from _webhooks_helpers import (
    bound_socket,
    load_example,
    other_tasks,
    wait_until,
)
from async_dispatch import DispatchClient
from async_dispatch.instrumentation.prometheus import PrometheusHook
from async_dispatch.testing import (
    Durations,
    OutcomeMix,
    Simulator,
    SimulatorConfig,
    SimulatorStats,
    Webhooks,
    serve_asgi,
)

FRAMEWORKS = ["fastapi", "aiohttp"]
SECRET = "example-secret-" + "q" * 30
CREATED = "2024-12-19T00:00:00.000000+00:00"


pytestmark = pytest.mark.asyncio_only  # uvicorn and aiohttp run on asyncio only


class Served:
    """A running example app: its URL, an HTTP client to it, and the simulator's stats."""

    def __init__(self, url: str, http: httpx.AsyncClient, stats: SimulatorStats) -> None:
        self.url = url
        self.http = http
        self.stats = stats

    async def post_batch(self, prompts: list[str]) -> str:
        response = await self.http.post("/batches", json={"prompts": prompts})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["size"] == len(prompts)
        return str(body["batch_id"])

    async def batch(self, batch_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/batches/{batch_id}")
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    async def wait_complete(self, batch_id: str, timeout: float = 8.0) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            while not (batch := await self.batch(batch_id))["complete"]:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        return batch

    async def submitted(self, batch_id: str, index: int = 0, timeout: float = 8.0) -> str:
        """The request id of one prompt of a batch, once the app has submitted it (the
        FastAPI example submits in the background, after answering)."""
        with anyio.fail_after(timeout):
            while True:
                request_id = (await self.batch(batch_id))["results"][index]["request_id"]
                if request_id is not None:
                    return str(request_id)
                await anyio.sleep(0.02)

    async def poller_stats(self) -> dict[str, Any]:
        data: dict[str, Any] = (await self.http.get("/healthz")).json()["poller"]
        return data


@contextlib.asynccontextmanager
async def serve_app(framework: str, sock: socket.socket, app: Any) -> AsyncIterator[None]:
    if framework == "fastapi":
        async with serve_asgi(app, sock):
            yield
        return
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_example(
    framework: str,
    *,
    webhooks: Webhooks,
    safety_interval: float = 30.0,
    rate: float = 10.0,
) -> AsyncIterator[Served]:
    """The simulator over TCP, then the example app over TCP, wired to each other."""
    config = SimulatorConfig(
        seed=11,
        durations=Durations.fixed(0.1),
        outcomes=OutcomeMix.only("success"),
        webhooks=webhooks,
    )
    module = load_example(f"{framework}_app")
    with bound_socket() as (sim_sock, sim_port):
        async with Simulator(config) as sim, serve_asgi(sim.app, sim_sock):
            before = other_tasks()
            with bound_socket() as (sock, port):
                url = f"http://127.0.0.1:{port}"
                settings = module.Settings(
                    callback_url=f"{url}{module.WEBHOOK_PATH}",
                    callback_secret=SECRET,
                    safety_interval=safety_interval,
                    rate=rate,
                )
                client = DispatchClient(
                    api_key="sim-key", base_url=sim.base_url_on(sim_port), execution_mode="cloud"
                )
                app = module.create_app(settings, client=client)
                async with httpx.AsyncClient(base_url=url) as http, serve_app(framework, sock, app):
                    yield Served(url, http, sim.stats)
            # Shut down: the app's poller, consumer and client are gone, no task left behind.
            await wait_until(lambda: other_tasks() <= before, timeout=3)
            assert client._http is None


@pytest.mark.anyio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_results_arrive_by_webhook_and_duplicates_change_nothing(framework: str) -> None:
    hooks = Webhooks(duplicate=1.0)
    async with running_example(framework, webhooks=hooks) as app:
        batch_id = await app.post_batch([f"/Operator task {n}" for n in range(5)])
        batch = await app.wait_complete(batch_id, timeout=5)
        assert batch["counts"] == {"success": 5}
        assert [r["polls"] for r in batch["results"]] == [0] * 5  # pushed, never polled
        assert all(r["text"] for r in batch["results"])
        await wait_until(lambda: app.stats.webhooks_delivered == 10)
        stats = await app.poller_stats()
        assert app.stats.requests["status"] == 0
        assert app.stats.webhooks_failed == 0  # every duplicate got a 2xx
        assert stats["deliveries"] == 5
        assert stats["duplicate_deliveries"] == 5
        assert stats["outcomes"]["success"] == 5  # one outcome per task, not two


@pytest.mark.serial  # measures elapsed time: runs alone (see Makefile)
@pytest.mark.anyio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_dropped_webhooks_are_caught_by_the_safety_poll(framework: str) -> None:
    hooks = Webhooks(drop=0.5)
    async with running_example(framework, webhooks=hooks, safety_interval=0.35) as app:
        batch_id = await app.post_batch([f"/Operator task {n}" for n in range(6)])
        batch = await app.wait_complete(batch_id)
        assert batch["counts"] == {"success": 6}
        dropped = app.stats.webhooks_dropped
        assert 0 < dropped < 6  # seeded: some of each
        polled = sum(1 for r in batch["results"] if r["polls"] > 0)
        pushed = sum(1 for r in batch["results"] if r["polls"] == 0)
        assert polled >= dropped
        assert pushed >= 1
        assert app.stats.requests["status"] >= dropped


@pytest.mark.anyio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_forged_and_malformed_requests_are_refused(framework: str) -> None:
    hooks = Webhooks(drop=1.0)  # only our own deliveries reach the app
    async with running_example(framework, webhooks=hooks) as app:
        batch_id = await app.post_batch(["/Operator real task"])
        request_id = await app.submitted(batch_id)
        forged = {
            "requestId": request_id,
            "status": "success",
            "response": {"text": "forged result"},
            "createdAt": CREATED,
            "completedAt": CREATED,
        }
        hook = "/webhooks/dispatch"
        for secret in ("wrong", None, SECRET[:-1]):
            response = await app.http.post(hook, json={**forged, "callbackSecret": secret})
            assert response.status_code == 401
            assert response.json() == {"ok": False, "reason": "bad_secret"}
        assert (await app.http.post(hook, content=b"{not json")).status_code == 400
        assert (await app.http.post(hook, content=b"x" * (2 << 20))).status_code == 413
        unknown = {**forged, "requestId": "req_nobody", "callbackSecret": SECRET}
        assert (await app.http.post(hook, json=unknown)).status_code == 404
        result = (await app.batch(batch_id))["results"][0]
        assert result["state"] == "pending"  # nothing forged got through
        # The genuine secret is accepted once; the repeat is a harmless duplicate.
        genuine = {**forged, "callbackSecret": SECRET, "response": {"text": "real"}}
        first = await app.http.post(hook, json=genuine)
        second = await app.http.post(hook, json=genuine)
        assert (first.status_code, first.json()["reason"]) == (200, "accepted")
        assert (second.status_code, second.json()["reason"]) == (200, "duplicate")
        result = (await app.batch(batch_id))["results"][0]
        assert (result["state"], result["text"]) == ("success", "real")
        # And the app's own API refuses what it cannot take.
        bodies: list[dict[str, Any]] = [
            {"prompts": []},
            {"prompts": [""]},
            {"prompts": ["x"] * 101},
            {"prompts": "not a list"},
            {},
        ]
        for body in bodies:
            assert (await app.http.post("/batches", json=body)).status_code == 422
        assert (await app.http.get("/batches/nope")).status_code == 404


@pytest.mark.anyio
async def test_the_fastapi_app_answers_a_batch_at_once_and_submits_it_within_the_budget() -> None:
    """``POST /batches`` returns before the submits, which the app's one budget paces.

    At 2 requests a second (burst 2), 12 prompts take about 5 s to submit: the answer
    comes back with all 12 still ``submitting``, a read just after it still finds some
    waiting for the budget, and the batch completes in the background.
    """
    prompts = [f"/Operator paced {n}" for n in range(12)]
    async with running_example("fastapi", webhooks=Webhooks(), rate=2.0) as app:
        started = anyio.current_time()
        response = await app.http.post("/batches", json={"prompts": prompts})
        answered = anyio.current_time() - started
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["counts"] == {"submitting": 12}
        assert "submitting" in (await app.batch(body["batch_id"]))["counts"]
        batch = await app.wait_complete(body["batch_id"], timeout=30)
        submitted = anyio.current_time() - started
        assert batch["counts"] == {"success": 12}
        assert answered < submitted / 2  # generous: about 5 s of submits, a ms to answer
        assert app.stats.requests["submit"] == 12


@pytest.mark.anyio
async def test_the_fastapi_app_shuts_down_mid_batch_within_its_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Leaving while a batch is still being submitted: the lifespan gives the submits
    ``SHUTDOWN_GRACE`` seconds, then cancels the rest; nothing is left running (the
    fixture checks the event loop's tasks and that the client is closed)."""
    module = load_example("fastapi_app")
    monkeypatch.setattr(module, "SHUTDOWN_GRACE", 0.2)
    prompts = [f"/Operator cut short {n}" for n in range(20)]
    async with running_example("fastapi", webhooks=Webhooks(), rate=2.0) as app:
        response = await app.http.post("/batches", json={"prompts": prompts})
        assert response.status_code == 202
        leaving = anyio.current_time()
    left = anyio.current_time() - leaving
    assert left < 6.0  # about 9 s of submits were still queued behind the budget
    assert app.stats.requests["submit"] < len(prompts)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_CALLBACK_URL", "https://my.app/webhooks/dispatch")
    monkeypatch.setenv("DISPATCH_CALLBACK_SECRET", SECRET)
    monkeypatch.setenv("DISPATCH_SAFETY_INTERVAL", "45")
    monkeypatch.setenv("DISPATCH_RATE", "2.5")
    assert load_example("fastapi_app").Settings.from_env().rate == 2.5
    for framework in FRAMEWORKS:
        settings = load_example(f"{framework}_app").Settings.from_env()
        assert settings.callback_url == "https://my.app/webhooks/dispatch"
        assert settings.callback_secret == SECRET
        assert settings.safety_interval == 45.0
        assert SECRET not in repr(settings)


@pytest.mark.anyio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_an_app_whose_submits_all_fail_says_so(framework: str) -> None:
    module = load_example(f"{framework}_app")
    with bound_socket() as (sim_sock, sim_port):
        async with Simulator(SimulatorConfig(seed=2)) as sim, serve_asgi(sim.app, sim_sock):
            with bound_socket() as (sock, port):
                client = DispatchClient(
                    api_key="not-the-key",
                    base_url=sim.base_url_on(sim_port),
                    execution_mode="cloud",
                )
                app = module.create_app(module.Settings(), client=client)
                url = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=url) as http, serve_app(framework, sock, app):
                    posted = await http.post("/batches", json={"prompts": ["a", "b"]})
                    if framework == "fastapi":  # answers at once, submits in the background
                        assert posted.status_code == 202
                        served = Served(url, http, sim.stats)
                        batch = await served.wait_complete(posted.json()["batch_id"])
                        assert batch["counts"] == {"submit-failed": 2}
                    else:  # answers once every submit is done
                        assert posted.status_code == 502
                        assert posted.json()["counts"] == {"submit-failed": 2}
                    health = await http.get("/healthz")
                    assert health.status_code == 503
                    assert health.json()["ok"] is False
                    assert "401" in health.json()["error"]
                    assert "not-the-key" not in posted.text + health.text


@pytest.mark.anyio
async def test_the_fastapi_app_serves_its_metrics() -> None:
    """``GET /metrics``: what the app's client did, in Prometheus' text format, no key."""
    module = load_example("fastapi_app")
    config = SimulatorConfig(
        seed=4, durations=Durations.fixed(0.1), outcomes=OutcomeMix.only("success")
    )
    registry = CollectorRegistry()
    with bound_socket() as (sim_sock, sim_port):
        async with Simulator(config) as sim, serve_asgi(sim.app, sim_sock):
            with bound_socket() as (sock, port):
                url = f"http://127.0.0.1:{port}"
                settings = module.Settings(
                    callback_url=f"{url}{module.WEBHOOK_PATH}", callback_secret=SECRET
                )
                client = DispatchClient(
                    api_key="sim-key",
                    base_url=sim.base_url_on(sim_port),
                    hooks=[PrometheusHook(registry)],
                    execution_mode="cloud",
                )
                app = module.create_app(settings, client=client, registry=registry)
                async with httpx.AsyncClient(base_url=url) as http, serve_app("fastapi", sock, app):
                    served = Served(url, http, sim.stats)
                    batch_id = await served.post_batch(["/Operator one", "/Operator two"])
                    await served.wait_complete(batch_id)
                    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("async_dispatch_submits_total", (("result", "accepted"),))] == 2
    assert samples[("async_dispatch_outcomes_total", (("kind", "success"),))] == 2
    assert samples[("async_dispatch_webhook_answers_total", (("reason", "accepted"),))] == 2
    assert samples[("async_dispatch_tracked_tasks", ())] == 0
    assert "sim-key" not in response.text
    assert SECRET not in response.text
    assert "req_" not in response.text


class _SlowRuntime:
    """Stands in for a `DispatchRuntime`: each submit waits until all of them have started."""

    def __init__(self, expected: int) -> None:
        self.in_flight = 0
        self.most = 0
        self.all_started = anyio.Event()
        self.expected = expected

    async def submit(self, prompt: str, **options: Any) -> str:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.most >= self.expected:
            self.all_started.set()
        with anyio.fail_after(5):  # a one-at-a-time loop would never get past this
            await self.all_started.wait()
        self.in_flight -= 1
        return f"req_{prompt}"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])  # the bookkeeping is framework-free
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_batch_is_submitted_concurrently(framework: str, backend: str) -> None:
    module = load_example(f"{framework}_app")
    batches = module.Batches()
    batch = batches.new([str(n) for n in range(module.SUBMIT_CONCURRENCY)])
    runtime = _SlowRuntime(module.SUBMIT_CONCURRENCY)
    accepted = anyio.run(batches.submit, runtime, batch, None, backend=backend)
    assert accepted == module.SUBMIT_CONCURRENCY
    assert runtime.most == module.SUBMIT_CONCURRENCY
    assert {item.state for item in batch.items} == {"pending"}


def _recipe(framework: str) -> tuple[list[str], dict[str, str]]:
    """The simulator's command line and the app's environment, from the example's docstring."""
    doc = load_example(f"{framework}_app").__doc__ or ""
    simulate = next(line.split() for line in doc.splitlines() if "async-dispatch simulate" in line)
    env = dict(re.findall(r"(DISPATCH_[A-Z_]+)=(\S+)", doc))
    return simulate[2:], env


@pytest.mark.anyio
@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_the_docstring_recipe_works_as_pasted(framework: str) -> None:
    """`async-dispatch simulate ...` as written, then the app with the documented key."""
    args, env = _recipe(framework)
    assert env["DISPATCH_API_KEY"] == "sim-key"
    port_at = args.index("--port")
    args[port_at + 1] = "0"  # the documented port may be taken on this machine
    command = [sys.executable, "-m", "async_dispatch._cli", "simulate", *args, "--json"]
    command += ["--time-scale", "0.05"]  # same service, ten seconds down to half a second
    module = load_example(f"{framework}_app")
    async with await anyio.open_process(command, stderr=None) as proc:
        try:
            info = json.loads(await _first_line(proc))
            with bound_socket() as (sock, port):
                url = f"http://127.0.0.1:{port}"
                settings = module.Settings(callback_url=f"{url}{module.WEBHOOK_PATH}")
                # The documented URL carries the API's base path, and a mode the service accepts.
                assert env["DISPATCH_BASE_URL"].endswith(httpx.URL(info["base_url"]).path)
                client = DispatchClient(
                    api_key=env["DISPATCH_API_KEY"],
                    base_url=info["base_url"],
                    execution_mode=env["DISPATCH_EXECUTION_MODE"],
                )
                app = module.create_app(settings, client=client)
                async with httpx.AsyncClient(base_url=url) as http, serve_app(framework, sock, app):
                    served = Served(url, http, SimulatorStats())
                    batch_id = await served.post_batch(["/Operator find flights", "summarise"])
                    batch = await served.wait_complete(batch_id, timeout=20)
                    assert "submit-failed" not in batch["counts"]
                    assert (await http.get("/healthz")).status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(15):
                await proc.wait()


async def _first_line(proc: anyio.abc.Process) -> str:
    """What the simulator prints once it accepts connections."""
    assert proc.stdout is not None
    data = b""
    with anyio.fail_after(30):
        while b"\n" not in data:
            data += await proc.stdout.receive()
    return data.decode().splitlines()[0]


# -- fleet mode: the FastAPI example under `uvicorn --workers 4` ------------------------------

FLEET_WORKERS = 4


class _UvicornFleet:
    """``uvicorn --workers 4`` running the FastAPI example in fleet mode, as documented.

    Stops only what it started: SIGTERM to the uvicorn process (which stops its workers),
    then, if it hangs, SIGKILL to its worker processes (its children) and to it, by PID.
    """

    def __init__(self, port: int, env: dict[str, str]) -> None:
        root = Path(__file__).resolve().parent.parent
        command = [sys.executable, "-m", "uvicorn", "--factory", "examples.fastapi_app:create_app"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(FLEET_WORKERS)]
        command += ["--log-level", "warning"]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            command, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        import psutil

        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for child in children:  # the workers this uvicorn started, if it left any behind
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self._log.close()


@pytest.mark.redis
@pytest.mark.anyio
async def test_fleet_mode_four_uvicorn_workers_one_outcome_per_task(
    anyio_backend: str, redis_url: str, redis_name: str
) -> None:
    """Four workers, one key, webhooks on any worker: each task has exactly one outcome."""
    from async_dispatch.redis import RedisConnection, read_fleet
    from redis_support import free_port

    hooks = Webhooks(duplicate=0.3)  # duplicates must change nothing, whichever worker
    config = SimulatorConfig(
        seed=12,
        durations=Durations.fixed(0.3),
        outcomes=OutcomeMix.only("success"),
        webhooks=hooks,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with bound_socket() as (sim_sock, sim_port):
        async with Simulator(config) as sim, serve_asgi(sim.app, sim_sock):
            env = {
                **os.environ,
                "DISPATCH_API_KEY": "sim-key",
                "DISPATCH_BASE_URL": sim.base_url_on(sim_port),
                "DISPATCH_EXECUTION_MODE": "cloud",
                "DISPATCH_CALLBACK_URL": f"{url}/webhooks/dispatch",
                "DISPATCH_CALLBACK_SECRET": SECRET,
                "DISPATCH_REDIS_URL": redis_url,
                "DISPATCH_FLEET_NAME": redis_name,
            }
            fleet = _UvicornFleet(port, env)
            try:
                async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                    with anyio.fail_after(60):  # four interpreters starting on busy cores
                        while True:
                            with contextlib.suppress(httpx.TransportError):
                                if (await http.get("/healthz")).status_code == 200:
                                    break
                            assert fleet.process.poll() is None, fleet.log()
                            await anyio.sleep(0.2)
                    served = Served(url, http, sim.stats)
                    batch_ids = [
                        await served.post_batch([f"/Operator fleet {b}.{n}" for n in range(8)])
                        for b in range(4)
                    ]
                    batches = [await served.wait_complete(b, timeout=60) for b in batch_ids]
                    async with RedisConnection(redis_url) as connection:
                        with anyio.fail_after(10):
                            while (await read_fleet(connection, redis_name)).tracked:  # noqa: ASYNC110
                                await anyio.sleep(0.1)
                    worker_log = fleet.log()
            finally:
                fleet.stop()
    results = [r for batch in batches for r in batch["results"]]
    assert len(results) == 32
    assert all(r["state"] == "success" for r in results), results
    # Exactly one, fleet-wide.
    extra = [(r["request_id"], r["outcomes"], r["replica"]) for r in results if r["outcomes"] != 1]
    assert extra == [], (extra, worker_log)  # the workers' logs say why
    assert len({r["request_id"] for r in results}) == 32
    replicas = {r["replica"] for r in results}
    print(f"32 tasks, outcomes recorded by {len(replicas)} of {FLEET_WORKERS} workers")
    assert sim.stats.webhooks_delivered >= 32
    assert sim.stats.webhooks_failed == 0  # every worker accepts the shared secret
