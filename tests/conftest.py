from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from redis_support import REQUIRE_ENV, RedisServer, delete_keys, unavailable_reason, unique_name


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test on both backends: the library promises both."""
    return str(request.param)


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
