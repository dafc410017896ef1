from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
import trio.testing

from redis_support import REQUIRE_ENV, RedisServer, delete_keys, unavailable_reason, unique_name

# --- The backends: one fixture, chosen per test by markers -----------------------------------
#
#   anyio_backend   asyncio and trio, in real time: the library promises both
#   @pytest.mark.virtual_clock   trio runs on a MockClock (waits cost no real time, exactly)
#   @pytest.mark.asyncio_only    asyncio alone (uvicorn, aiohttp: asyncio libraries)
#   @pytest.mark.trio_only       trio alone (with virtual_clock: a test of waits themselves)
#
# A module marks all its tests with ``pytestmark = [...]``; an explicit
# ``@pytest.mark.parametrize("anyio_backend", [...])`` still wins over the markers.

BACKEND_MARKERS = {
    "virtual_clock": "trio runs this test on trio.testing.MockClock (virtual time)",
    "asyncio_only": "run this async test on asyncio only",
    "trio_only": "run this async test on trio only",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in BACKEND_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "anyio_backend" in (names.split(",") if isinstance(names, str) else names):
            return  # parametrized explicitly
    backends = ["asyncio", "trio"]
    if metafunc.definition.get_closest_marker("asyncio_only"):
        backends = ["asyncio"]
    elif metafunc.definition.get_closest_marker("trio_only"):
        backends = ["trio"]
    virtual = metafunc.definition.get_closest_marker("virtual_clock") is not None
    ids = [f"{name}-virtual" if virtual and name == "trio" else name for name in backends]
    metafunc.parametrize("anyio_backend", backends, indirect=True, ids=ids)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """The backend of this run of the test (see the markers above)."""
    name = str(getattr(request, "param", "asyncio"))
    if name == "trio" and request.node.get_closest_marker("virtual_clock") is not None:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return name


# --- Redis, for the fleet tests (tests/test_redis_*.py) -------------------------------------
#
#   redis_url       the URL of a real Redis for the whole session ($REDIS_URL, else a private
#                   redis-server); skips, or fails under ASYNC_DISPATCH_REQUIRE_REDIS=1
#   redis_name      a fleet name of the test's own; its keys are deleted afterwards
#   private_redis   a RedisServer of the test's own, to stop() and start() at will


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the session: $REDIS_URL, or a private redis-server we start."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1 forbids skipping)")
        pytest.skip(reason)
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_name(redis_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fleet name no other test uses; every key under it is deleted after the test."""
    name = unique_name(request.node.name[:40].replace("{", "(").replace("}", ")"))
    yield name
    delete_keys(redis_url, name)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, running; the test may stop() and start() it."""
    if shutil.which("redis-server") is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"restart tests need redis-server ({REQUIRE_ENV}=1 forbids skipping)")
        pytest.skip("restart tests need the redis-server binary")
    with RedisServer() as server:
        yield server
