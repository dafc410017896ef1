"""Starting and talking to the benchmark server process (see `_serve`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx

__all__ = ["ServerHandle", "serving"]

_ROOT = Path(__file__).resolve().parent.parent


class ServerHandle:
    """A running server: where it listens, and its control routes."""

    def __init__(self, port: int, control: httpx.AsyncClient) -> None:
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        #: Where clients point: both kinds serve the API under the public service's path.
        self.base_url = f"{self.origin}/fast/v2"
        self._control = control

    async def create(self, n: int) -> tuple[list[str], float]:
        """Make `n` tasks (no rate limit spent); returns their ids and the server's time."""
        answer = await self._control.post(f"{self.origin}/_bench/create", json={"n": n})
        answer.raise_for_status()
        data = answer.json()
        return data["ids"], data["now"]

    async def finished(self, ids: list[str]) -> dict[str, float | None]:
        """When each task finishes (or finished) on the server's clock; None if never."""
        answer = await self._control.post(f"{self.origin}/_bench/finished", json={"ids": ids})
        answer.raise_for_status()
        times: dict[str, float | None] = answer.json()["finished"]
        return times

    async def stats(self, since: float = 0.0) -> dict[str, Any]:
        answer = await self._control.post(f"{self.origin}/_bench/stats", json={"since": since})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result


@contextlib.asynccontextmanager
async def serving(spec: dict[str, Any]) -> AsyncIterator[ServerHandle]:
    """Run a server process for the block; it is terminated (and reaped) on the way out."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), str(_ROOT / "src")])}
    process = await anyio.open_process(
        [sys.executable, "-m", "benchmarks._serve", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=None,
        cwd=_ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = b""
        with anyio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive(1)
                line += chunk
        port = int(json.loads(line)["port"])
        async with httpx.AsyncClient(timeout=120) as control:
            yield ServerHandle(port, control)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with anyio.move_on_after(5, shield=True) as scope:
            await process.wait()
        if scope.cancelled_caught:
            process.kill()
        await process.aclose()
