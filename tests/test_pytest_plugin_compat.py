"""The pytest fixtures work under anyio's plugin and under pytest-asyncio, strict and auto.

Each case writes a small test suite, as a user of that runner would, and runs it in a
pytest of its own (``pytester``, in a subprocess: plugins load from their entry points,
as in the user's project) with warnings as errors. The suite uses every fixture, runs
work while the simulator's background tasks are live (a webhook delivered during the
test), overrides the config, and checks that teardown left nothing behind.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

pytest.importorskip("pytest_asyncio")

CONFTEST = """
pytest_plugins = ["async_dispatch.testing.pytest_plugin"]
"""

#: The body of every suite: `{mark}` is the runner's marker (or nothing in auto mode).
SUITE = """
import httpx
import pytest

from async_dispatch import DispatchClient, Poller, Status
from async_dispatch.testing import Simulator, SimulatorConfig, Webhooks

DONE_AT_ONCE = {{"simulate": {{"outcome": "success", "duration": 0}}}}

{mark}
async def test_the_client_talks_to_the_simulator(
    dispatch_client: DispatchClient, dispatch_simulator: Simulator
) -> None:
    assert dispatch_simulator.running
    request_id = await dispatch_client.submit("find jobs", extra=DONE_AT_ONCE)
    status = await dispatch_client.get_status(request_id)
    assert status.status is Status.SUCCESS
    assert dispatch_simulator.stats.tasks_created == 1


{mark}
async def test_a_poller_on_the_fixture_client(dispatch_client: DispatchClient) -> None:
    async with Poller(dispatch_client, rate=50, initial_interval=0.01) as poller:
        await poller.submit("a", extra=DONE_AT_ONCE)
        outcomes = [outcome async for outcome in poller]
    assert len(outcomes) == 1


class TestOverridingTheConfig:
    @pytest.fixture
    def dispatch_simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(
            seed=3, webhooks=Webhooks(max_attempts=1, timeout=2)
        )

    {mark}
    async def test_background_webhooks_run_during_the_test(
        self, dispatch_client: DispatchClient, dispatch_simulator: Simulator
    ) -> None:
        assert dispatch_simulator.seed == 3
        await dispatch_client.submit(
            "hook", callback_url="http://127.0.0.1:9/hook", extra=DONE_AT_ONCE
        )
        await dispatch_simulator.wait_webhooks()  # the simulator's own task delivered it
        assert dispatch_simulator.stats.webhooks_sent == 1
"""


def write_suite(
    pytester: pytest.Pytester, *, ini: str, mark: str, pytest_asyncio: bool = True
) -> None:
    # Without the loop scope set, pytest-asyncio warns at start (an error here).
    scope = "asyncio_default_fixture_loop_scope = function" if pytest_asyncio else ""
    pytester.makeini(
        textwrap.dedent(
            f"""
            [pytest]
            filterwarnings = error
            {scope}
            {ini}
            """
        )
    )
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE.format(mark=mark))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *args, timeout=120)


def test_under_anyio_on_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    """anyio's plugin, with pytest-asyncio installed beside it (its default strict mode)."""
    write_suite(pytester, ini="", mark="@pytest.mark.anyio")
    pytester.makeconftest(
        CONFTEST
        + textwrap.dedent(
            """
            import pytest

            @pytest.fixture(params=["asyncio", "trio"])
            def anyio_backend(request):
                return request.param
            """
        )
    )
    run(pytester).assert_outcomes(passed=6)


def test_under_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    write_suite(pytester, ini="asyncio_mode = strict", mark="@pytest.mark.asyncio")
    run(pytester).assert_outcomes(passed=3)


def test_under_pytest_asyncio_auto_mode(pytester: pytest.Pytester) -> None:
    write_suite(pytester, ini="asyncio_mode = auto", mark="")
    run(pytester).assert_outcomes(passed=3)


@pytest.mark.parametrize("asyncio_plugin", ["with-pytest-asyncio", "without"])
def test_a_test_no_plugin_runs_is_told_what_to_do(
    pytester: pytest.Pytester, asyncio_plugin: str
) -> None:
    write_suite(pytester, ini="", mark="", pytest_asyncio=asyncio_plugin != "without")
    pytester.makepyfile(
        test_sync="""
        def test_it(dispatch_simulator):
            pass
        """
    )
    disable = ["-p", "no:asyncio"] if asyncio_plugin == "without" else []
    result = run(pytester, "test_sync.py", *disable)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*mark the test @pytest.mark.anyio*"])
