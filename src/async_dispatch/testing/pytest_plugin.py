"""pytest fixtures for code that talks to the Remote Dispatch API.

Enable with ``pytest_plugins = ["async_dispatch.testing.pytest_plugin"]`` in your root
``conftest.py``. The fixtures need an async test runner, and work with either of the two
in use:

- anyio's plugin (installed with anyio): mark tests ``@pytest.mark.anyio``; asyncio and
  trio, through its ``anyio_backend`` fixture;
- pytest-asyncio, in strict mode (mark tests ``@pytest.mark.asyncio``) or auto mode.

To change the simulator's settings, override ``dispatch_simulator_config``::

    @pytest.fixture
    def dispatch_simulator_config() -> SimulatorConfig:
        return SimulatorConfig(faults=Faults(server_error=0.2), seed=1)

How: ``dispatch_simulator`` and ``dispatch_client`` are plain fixtures that hand the
request to an async fixture of the runner that drives the test. For anyio's plugin that
is an ordinary async fixture (anyio runs its setup and teardown in one task). For
pytest-asyncio it is one marked as pytest-asyncio's, so strict mode runs it too, and it
enters the simulator (and the client) in a task of its own, held open until teardown:
pytest-asyncio runs a fixture's setup and its teardown in two different tasks, and the
simulator's task group (its webhook deliveries) must be left from the task that entered
it (anyio's rule; otherwise "Attempted to exit cancel scope in a different task").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeVar, cast

import pytest

from ._config import SimulatorConfig
from ._simulator import Simulator

if TYPE_CHECKING:
    from async_dispatch import DispatchClient

__all__ = ["dispatch_client", "dispatch_simulator", "dispatch_simulator_config"]

_T = TypeVar("_T")

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio is optional
    _PYTEST_ASYNCIO = False
else:
    _PYTEST_ASYNCIO = True


@pytest.fixture
def dispatch_simulator_config() -> SimulatorConfig:
    """The config of ``dispatch_simulator``: defaults, with a fixed seed so tests repeat."""
    return SimulatorConfig(seed=0)


@pytest.fixture
def dispatch_simulator(request: pytest.FixtureRequest) -> Simulator:
    """A running in-process simulator, stopped after the test."""
    return cast(Simulator, request.getfixturevalue(_runner_fixture(request, "simulator")))


@pytest.fixture
def dispatch_client(request: pytest.FixtureRequest) -> DispatchClient:
    """A ``DispatchClient`` bound to ``dispatch_simulator`` in process.

    It submits with ``execution_mode="cloud"``: the service (and the simulator) refuse a
    submit in the default client mode that names no browser window.
    """
    return cast("DispatchClient", request.getfixturevalue(_runner_fixture(request, "client")))


def _runner_fixture(request: pytest.FixtureRequest, what: str) -> str:
    """The name of the async fixture making `what` under the runner of this test.

    anyio's plugin runs the tests that use its ``anyio_backend`` fixture (its ``anyio``
    marker adds it); pytest-asyncio marks every test it runs ``asyncio`` (auto mode adds
    the marker itself). Auto mode also takes over anyio-marked tests, on asyncio, whatever
    fixtures they use: mixing the two runners that way is not supported.
    """
    if "anyio_backend" in request.fixturenames:
        return f"_dispatch_{what}_anyio"
    if (
        _PYTEST_ASYNCIO
        and request.config.pluginmanager.has_plugin("asyncio")
        and request.node.get_closest_marker("asyncio") is not None
    ):
        return f"_dispatch_{what}_asyncio"
    raise pytest.UsageError(
        f"{request.fixturename} is async and needs an async test runner: mark the test "
        "@pytest.mark.anyio (anyio's plugin) or, with pytest-asyncio installed, "
        "@pytest.mark.asyncio (or its auto mode)"
    )


# -- under anyio's plugin: one task sets up and tears down ---------------------------------


@pytest.fixture
async def _dispatch_simulator_anyio(
    dispatch_simulator_config: SimulatorConfig,
) -> AsyncIterator[Simulator]:
    async with Simulator(dispatch_simulator_config) as sim:
        yield sim


@pytest.fixture
async def _dispatch_client_anyio(dispatch_simulator: Simulator) -> AsyncIterator[DispatchClient]:
    async with dispatch_simulator.client() as client:
        yield client


# -- under pytest-asyncio: setup and teardown run in different tasks -----------------------


@contextlib.asynccontextmanager
async def _in_a_task_of_its_own(
    manager: contextlib.AbstractAsyncContextManager[_T],
) -> AsyncIterator[_T]:
    """Enter `manager` in a new asyncio task and leave it from that task at the end,
    whichever tasks run this block's start and end."""
    loop = asyncio.get_running_loop()
    entered: asyncio.Future[_T] = loop.create_future()
    release = asyncio.Event()

    async def hold() -> None:
        try:
            async with manager as value:
                entered.set_result(value)
                await release.wait()
        except BaseException as exc:
            if not entered.done():  # it failed to enter: the setup raises it
                entered.set_exception(exc)
                return
            raise

    holder = loop.create_task(hold(), name="async_dispatch.fixture")
    try:
        value = await entered
    except BaseException:
        holder.cancel()
        with contextlib.suppress(BaseException):
            await holder
        raise
    try:
        yield value
    finally:
        release.set()
        await holder  # a failure of the background (or of the exit) fails the teardown


if _PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def _dispatch_simulator_asyncio(
        dispatch_simulator_config: SimulatorConfig,
    ) -> AsyncIterator[Simulator]:
        async with _in_a_task_of_its_own(Simulator(dispatch_simulator_config)) as sim:
            yield sim

    @pytest_asyncio.fixture
    async def _dispatch_client_asyncio(
        dispatch_simulator: Simulator,
    ) -> AsyncIterator[DispatchClient]:
        async with _in_a_task_of_its_own(dispatch_simulator.client()) as client:
            yield client
