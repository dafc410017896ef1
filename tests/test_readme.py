"""Every ```python block of README.md type-checks under ``mypy --strict`` and runs.

The blocks are what a newcomer pastes first, so each one is checked as pasted: written to
a file of its own, type-checked in one mypy run (through ``mypy.api``, sharing the
project's cache), then run as a script in a fresh interpreter against a simulator served
on loopback, with ``DISPATCH_API_KEY`` and ``DISPATCH_BASE_URL`` pointing at it.

A block that needs something special says so in an HTML comment on the line just before
its fence (invisible on GitHub)::

    <!-- readme: no-run -->          type-check only (a server that runs forever, say)
    <!-- readme: requires-redis -->  run only when Redis answers at $REDIS_URL
                                     (default redis://127.0.0.1:6379); skipped otherwise
    <!-- readme: pytest -->          a test module: run it with pytest, not as a script

Several markers may share one comment, separated by commas. Use ``no-run`` sparingly: a
block that is never run is the one that rots.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import attrs
import pytest

from async_dispatch.testing import Durations, SimulatorConfig, serve

README = Path(__file__).parent.parent / "README.md"
MARKERS = frozenset({"no-run", "requires-redis", "pytest"})
_BLOCK = re.compile(
    r"(?:<!--\s*readme:\s*(?P<markers>[\w\s,-]+?)\s*-->\n)?```python\n(?P<code>.*?)```",
    re.DOTALL,
)


@attrs.frozen
class Block:
    line: int
    code: str
    markers: frozenset[str]

    @property
    def name(self) -> str:
        return f"readme_line_{self.line}"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        markers = frozenset(m.strip() for m in (match["markers"] or "").split(",") if m.strip())
        assert markers <= MARKERS, f"unknown readme marker(s): {sorted(markers - MARKERS)}"
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append(Block(line, match["code"], markers))
    return blocks


BLOCKS = readme_blocks()


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5


def test_every_block_type_checks_strictly(tmp_path: Path) -> None:
    from mypy import api

    files = []
    for block in BLOCKS:
        path = tmp_path / f"{block.name}.py"
        path.write_text(block.code, encoding="utf-8")
        files.append(str(path))
    root = README.parent
    out, err, status = api.run(
        ["--config-file", str(root / "pyproject.toml"), "--strict", "--no-error-summary", *files]
    )
    assert status == 0, out + err


def _redis_available() -> bool:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    match = re.match(r"rediss?://(?:[^@/]*@)?(?P<host>[^:/]+)(?::(?P<port>\d+))?", url)
    if match is None:
        return False
    try:
        with socket.create_connection((match["host"], int(match["port"] or 6379)), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    """A simulator on loopback whose tasks end in a tenth of a second."""
    config = SimulatorConfig(seed=7, durations=Durations.fixed(0.1))
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(config)) as running,
    ):
        yield running.base_url


def _run(block: Block, tmp_path: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"test_{block.name}.py"
    path.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "DISPATCH_API_KEY": "sim-key", "DISPATCH_BASE_URL": base_url}
    command = [sys.executable, str(path)]
    if "pytest" in block.markers:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_every_block_runs_against_the_simulator(
    block: Block, tmp_path: Path, simulator_url: str
) -> None:
    if "no-run" in block.markers:
        pytest.skip("marked no-run: type-checked only")
    if "requires-redis" in block.markers and not _redis_available():
        pytest.skip("needs Redis at $REDIS_URL")
    done = _run(block, tmp_path, simulator_url)
    assert done.returncode == 0, f"README line {block.line}:\n{done.stdout}\n{done.stderr}"
    assert "sim-key" not in done.stdout + done.stderr
