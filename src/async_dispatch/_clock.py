"""The event loop's clock, looked up once instead of on every reading."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio

__all__ = ["loop_clock"]


def loop_clock() -> Callable[[], float]:
    """Return a function reading the running event loop's clock.

    `anyio.current_time()` finds out which backend is running on every call, which on a
    hot path (several readings per status check) costs more than reading the clock. Under
    asyncio the clock it reads is `loop.time`, so that is returned directly; under any
    other backend (trio, and so trio's virtual clock in tests), `anyio.current_time`.
    Call it from inside the loop whose clock you want.
    """
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time
