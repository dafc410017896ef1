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

The API is served under ``SimulatorConfig.base_path`` (``/fast/v2``, the public service's)
and every other path answers 404, so ``sim.base_url`` and ``running.base_url`` are the URLs
to hand out. Like the service, a submit in the default ``client`` execution mode needs a
``browserWindowId`` (422 without one; ``require_browser_window=False`` relaxes it), which is
why ``sim.client()`` and the pytest fixture submit with ``execution_mode="cloud"``.

A test can choose how its own task ends with an extra submit field::

    {"prompt": "...", "simulate": {"outcome": "input-required", "duration": 2,
                                   "inputWait": 1, "inputRequests": 2,
                                   "finalOutcome": "error"}}

More ``simulate`` keys shape input requests: ``"inputKind"`` (``prompt_for_user_input``,
``prompt_for_user_file`` or ``user_approval``; otherwise picked per request from the seed
among ``SimulatorConfig.input_kinds``), ``"inputResponse": "null"`` (``response`` is null
while waiting), ``"legacyInputField": true`` (the request arrives as ``activeInputRequest``,
the name used up to SDK 0.2.0, instead of ``hitlInputMetadata``) and ``"endsWaiting": true``
(the task ends at its last input request: ``completedAt`` set, status ``input-required``).
Each has a run-wide default in ``SimulatorConfig``. The random draws happen in a fixed order
whatever the overrides, so overriding one task does not change any other task of a seeded
run.

Files: ``POST /remote-dispatch/generate-file-upload-presigned-post`` answers a presigned
POST to the simulator's own ``/_uploads`` bucket, which takes the multipart form without an
API key (``sim.uploads`` records each file and whether a key was wrongly sent); a submit
whose ``attachment`` or file input variable names a key that was never uploaded is a 422.
``GET /sdk/config`` answers what the official SDK checks at start.

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

from ._config import (
    DEFAULT_BASE_PATH,
    INPUT_KINDS,
    Durations,
    Faults,
    InputKind,
    OutcomeMix,
    RateLimit,
    SimulatorConfig,
    Webhooks,
)
from ._harness import simulator
from ._server import RunningSimulator, bind_socket, run_forever, serve, serve_asgi
from ._simulator import Simulator
from ._stats import SimulatorStats
from ._uploads import Upload

__all__ = [
    "DEFAULT_BASE_PATH",
    "INPUT_KINDS",
    "Durations",
    "Faults",
    "InputKind",
    "OutcomeMix",
    "RateLimit",
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "Upload",
    "Webhooks",
    "bind_socket",
    "run_forever",
    "serve",
    "serve_asgi",
    "simulator",
]
