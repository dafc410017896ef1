"""The wheel that ``make dist`` builds holds what an installed library needs, and no more.

Until the distribution is on PyPI, the README tells users to install a built wheel, so
what it contains is what they get: the type marker (without it, mypy ignores the
library's annotations), the Lua scripts of fleet mode (loaded from the package at run
time: a wheel without them fails only in production, on first use of Redis), and none of
the test suite. The build uses hatchling in this environment (``--no-isolation``): a
couple of seconds, no network.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    pytest.importorskip("build", reason="make dist's set-up (the dev extra) installs build")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("async_remote_dispatch-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_has_the_type_marker_and_every_lua_script(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "async_dispatch/py.typed" in names
    scripts = sorted(p.name for p in (ROOT / "src/async_dispatch/redis/lua").glob("*.lua"))
    assert scripts, "no Lua scripts in the source tree"
    shipped = sorted(
        Path(n).name
        for n in names
        if n.startswith("async_dispatch/redis/lua/") and n.endswith(".lua")
    )
    assert shipped == scripts


def test_the_wheel_holds_the_library_and_no_tests(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"async_dispatch"}
    assert not [n for n in names if "/tests/" in n or Path(n).name.startswith("test_")]
    assert not [n for n in names if n.endswith((".pyc", "conftest.py"))]
    assert "async_dispatch/testing/__init__.py" in names  # the simulator is public API
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "Name: async-remote-dispatch" in text
    assert "Provides-Extra: redis" in text
