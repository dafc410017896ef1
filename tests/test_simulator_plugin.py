"""The pytest plugin's fixtures and the in-process harness, used as a library user would."""

from __future__ import annotations

import pytest

from async_dispatch import DispatchClient, Status
from async_dispatch.testing import Faults, Simulator, SimulatorConfig, simulator

pytest_plugins = ["async_dispatch.testing.pytest_plugin"]

DONE_AT_ONCE = {"simulate": {"outcome": "success", "duration": 0}}


@pytest.mark.anyio
async def test_dispatch_simulator_is_running(dispatch_simulator: Simulator) -> None:
    assert dispatch_simulator.running
    assert dispatch_simulator.seed == 0


@pytest.mark.anyio
async def test_dispatch_client_talks_to_dispatch_simulator(
    dispatch_client: DispatchClient, dispatch_simulator: Simulator
) -> None:
    request_id = await dispatch_client.submit("find jobs", extra=DONE_AT_ONCE)
    status = await dispatch_client.get_status(request_id)

    assert status.status is Status.SUCCESS
    assert status.completed_at is not None
    assert dispatch_simulator.stats.tasks_created == 1


class TestOverridingTheConfig:
    @pytest.fixture
    def dispatch_simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(api_keys={"mine"}, faults=Faults(unknown_status=1.0), seed=9)

    @pytest.mark.anyio
    async def test_the_fixtures_follow_it(
        self, dispatch_client: DispatchClient, dispatch_simulator: Simulator
    ) -> None:
        request_id = await dispatch_client.submit("x", extra=DONE_AT_ONCE)
        status = await dispatch_client.get_status(request_id)

        assert status.status is Status.UNKNOWN
        assert status.raw_status == "paused"
        assert dispatch_simulator.config.api_keys == {"mine"}


@pytest.mark.anyio
async def test_the_harness_builds_clients() -> None:
    simulate = {"outcome": "error", "duration": 0}
    async with simulator(seed=4) as sim, sim.client(timeout=5) as client:
        request_id = await client.submit("x", extra={"simulate": simulate})
        final = await client.get_status(request_id)

    assert final.status is Status.ERROR
    assert final.text
