"""The README's blocking examples also run where a loop is already running (a notebook).

Jupyter runs each cell's code while its own asyncio loop runs in the same thread; a
blocking API that starts or nests a loop there fails ("event loop is running") or
deadlocks. Each README block that uses `SyncPoller` is run here a second time, as the
body of a coroutine under ``asyncio.run`` (no ``await`` in it: the cell is the script),
against the same simulator as tests/test_readme.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import attrs
import pytest

from test_readme import BLOCKS, Block, _run, simulator_url  # noqa: F401 (the fixture)

SYNC_BLOCKS = [block for block in BLOCKS if "SyncPoller(" in block.code]


def test_the_readme_has_a_blocking_example() -> None:
    assert SYNC_BLOCKS


def as_notebook_cell(block: Block) -> Block:
    code = (
        "import asyncio\n\n\nasync def cell() -> None:\n"
        "    asyncio.get_running_loop()  # a loop runs in this thread, as in Jupyter\n"
        + textwrap.indent(block.code, "    ")
        + "\n\nasyncio.run(cell())\n"
    )
    return attrs.evolve(block, code=code)


@pytest.mark.parametrize("block", SYNC_BLOCKS, ids=lambda block: block.name)
def test_a_blocking_block_runs_inside_a_running_loop(
    block: Block,
    tmp_path: Path,
    simulator_url: str,  # noqa: F811
) -> None:
    done = _run(as_notebook_cell(block), tmp_path, simulator_url)
    assert done.returncode == 0, f"README line {block.line}:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip()  # it got as far as printing outcomes
