"""Fixtures shared by the poller, bucket and reliability tests.

Time-dependent tests run twice: on asyncio in real time and on trio under a `MockClock`
that jumps to the next timer whenever every task is idle. Each test states its times in
*virtual seconds* and multiplies them by the `scale` fixture: 1.0 on trio (time is free),
a small factor on asyncio, so the same test stays fast in real time too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from _chaos import ChaosService, client_for
from async_dispatch import Outcome, Poller

__all__ = [
    "REAL_SCALE",
    "drain",
    "fast",
    "is_virtual",
    "running",
    "scale",
    "wait_until",
]

#: Real seconds per virtual second on asyncio.
REAL_SCALE = 0.02


def is_virtual(anyio_backend: Any) -> bool:
    return isinstance(anyio_backend, tuple)


@pytest.fixture
def scale(anyio_backend: Any) -> float:
    """Multiply virtual seconds by this to get the seconds a test should use."""
    return 1.0 if is_virtual(anyio_backend) else REAL_SCALE


async def wait_until(predicate: Any, *, timeout: float = 10.0, step: float = 0.001) -> None:
    """Sleep in small steps until `predicate()` is true (fails the test after `timeout`)."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 (a test helper; polling is the point)
            await anyio.sleep(step)


def fast(scale: float, **overrides: Any) -> dict[str, Any]:
    """Poller settings that check every half (virtual) second, scaled."""
    settings: dict[str, Any] = {
        "rate": 1000.0,
        "burst": 100,
        "deadline": 100 * scale,
        "initial_interval": 0.5 * scale,
        "max_interval": 0.5 * scale,
        "jitter": 0.0,
        "seed": 7,
    }
    settings.update(overrides)
    return settings


@contextlib.asynccontextmanager
async def running(service: ChaosService, **settings: Any) -> AsyncIterator[Poller]:
    """A poller over `service`, started."""
    service.start()
    async with client_for(service) as client, Poller(client, **settings) as poller:
        yield poller


async def drain(poller: Poller) -> list[Outcome]:
    """Every outcome until the iterator ends."""
    return [outcome async for outcome in poller]
