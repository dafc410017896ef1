"""Shared by the webhook, FastAPI, aiohttp and example tests: serve apps on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

from async_dispatch import DeliveryResult
from async_dispatch.testing import bind_socket

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the examples are scripts, not a package)."""
    module_name = f"_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def bound_socket() -> Iterator[tuple[socket.socket, int]]:
    """A listening-ready TCP socket on 127.0.0.1 and its port, closed afterwards.

    Bound before the app is built, so the app's own callback URL can name the port.
    """
    sock = bind_socket()
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


async def wait_until(
    predicate: Callable[[], object], *, timeout: float = 5.0, step: float = 0.01
) -> None:
    """Sleep in small steps until `predicate()` is true; fail the test after `timeout`."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state that has no event
            await anyio.sleep(step)


def other_tasks() -> set[asyncio.Task[Any]]:
    """Every asyncio task except the caller's: what must be gone after a shutdown."""
    return asyncio.all_tasks() - {asyncio.current_task()}


class RecordingDeliverer:
    """Stands in for a `Poller`: records payloads and answers what it is told to."""

    def __init__(self, answer: DeliveryResult = DeliveryResult.ACCEPTED) -> None:
        self.answer = answer
        self.payloads: list[Mapping[str, Any]] = []

    async def deliver(self, payload: Mapping[str, Any]) -> DeliveryResult:
        self.payloads.append(payload)
        return self.answer
