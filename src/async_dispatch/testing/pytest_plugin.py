"""pytest fixtures for code that talks to the Remote Dispatch API.

Enable with ``pytest_plugins = ["async_dispatch.testing.pytest_plugin"]`` in your root
``conftest.py``; the fixtures are async, so mark tests ``@pytest.mark.anyio`` (pytest's
anyio plugin, with its ``anyio_backend`` fixture, runs them). To change the simulator's
settings, override ``dispatch_simulator_config``::

    @pytest.fixture
    def dispatch_simulator_config() -> SimulatorConfig:
        return SimulatorConfig(faults=Faults(server_error=0.2), seed=1)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from ._config import SimulatorConfig
from ._simulator import Simulator

if TYPE_CHECKING:
    from async_dispatch import DispatchClient

__all__ = ["dispatch_client", "dispatch_simulator", "dispatch_simulator_config"]


@pytest.fixture
def dispatch_simulator_config() -> SimulatorConfig:
    """The config of ``dispatch_simulator``: defaults, with a fixed seed so tests repeat."""
    return SimulatorConfig(seed=0)


@pytest.fixture
async def dispatch_simulator(
    dispatch_simulator_config: SimulatorConfig,
) -> AsyncIterator[Simulator]:
    """A running in-process simulator, stopped after the test."""
    async with Simulator(dispatch_simulator_config) as sim:
        yield sim


@pytest.fixture
async def dispatch_client(dispatch_simulator: Simulator) -> AsyncIterator[DispatchClient]:
    """A ``DispatchClient`` bound to ``dispatch_simulator`` in process.

    It submits with ``execution_mode="cloud"``: the service (and the simulator) refuse a
    submit in the default client mode that names no browser window.
    """
    async with dispatch_simulator.client() as client:
        yield client
