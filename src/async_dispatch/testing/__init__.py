"""A faithful local Remote Dispatch service, for tests, demos and benchmarks.

The simulator speaks the wire contract (submit, status, webhooks, 401/403/404/422/429)
and misbehaves on request (5xx, HTML pages, truncated JSON, dropped connections, slow
answers, unknown statuses), all from one seed so a failing run replays exactly. Task
status is computed from the clock when read, so 100,000 tasks cost only their records;
handlers read ``anyio.current_time()``, so tests on trio's ``MockClock`` run in virtual
time.

In process, no sockets::

    from async_dispatch.testing import simulator

    async with simulator(seed=1, time_scale=0.01) as sim:
        async with sim.client() as client:  # an async_dispatch.DispatchClient
            request_id = await client.submit("/Operator find ...")
        sim.stats.tasks_created, sim.task_completed_at(request_id)

A test can choose how its own task ends with an extra submit field::

    {"prompt": "...", "simulate": {"outcome": "input-required", "duration": 2,
                                   "inputWait": 1, "inputRequests": 2,
                                   "finalOutcome": "error"}}

Over real TCP (needs the ``simulator`` extra, i.e. uvicorn)::

    from async_dispatch.testing import SimulatorConfig, Faults, serve

    config = SimulatorConfig(faults=Faults(server_error=0.05, drop=0.01), seed=3)
    async with serve(config, port=0) as running:
        running.base_url, running.simulator.stats

or from a shell, ``async-dispatch simulate --port 8000`` (``run_forever``).

With pytest, enable the fixtures ``dispatch_simulator``, ``dispatch_client`` and
``dispatch_simulator_config`` (override the last one to change the config) in your
``conftest.py``::

    pytest_plugins = ["async_dispatch.testing.pytest_plugin"]

    @pytest.mark.anyio
    async def test_it(dispatch_client):
        request_id = await dispatch_client.submit("hello")

The API key of the default config is ``sim-key``.
"""

from __future__ import annotations

from ._config import Durations, Faults, OutcomeMix, RateLimit, SimulatorConfig, Webhooks
from ._harness import simulator
from ._server import RunningSimulator, bind_socket, run_forever, serve, serve_asgi
from ._simulator import Simulator
from ._stats import SimulatorStats

__all__ = [
    "Durations",
    "Faults",
    "OutcomeMix",
    "RateLimit",
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "Webhooks",
    "bind_socket",
    "run_forever",
    "serve",
    "serve_asgi",
    "simulator",
]
