"""Every log event, metric and exit code in the code is in the documentation.

The reference page's tables are generated from the code when the site is built
(docs/_reference.py, a MkDocs hook). These tests tie the generator to the code by a
second, independent reading (a plain text search, as a reviewer would grep), so an event
the generator's parser missed, a metric it did not see or an exit code without a meaning
fails here, with what to do.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "async_dispatch"
PAGE = ROOT / "docs" / "reference" / "events.md"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "docs" / "_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load()


def _grep(pattern: str, paths: list[Path]) -> set[str]:
    return {m[1] for path in paths for m in re.finditer(pattern, path.read_text())}


def test_every_log_event_in_the_code_is_documented() -> None:
    grepped = _grep(
        r"logger\.(?:warning|info|error|debug|exception)\(\s*\"(\w+)\"",
        sorted(SOURCE.rglob("*.py")),
    )
    assert {"budget_exhausted", "api_key_refused", "rate_limited"} <= grepped
    parsed = {event["event"] for event in reference.log_events()}
    assert grepped <= parsed, f"the generator misses {sorted(grepped - parsed)}"
    undocumented = parsed - set(reference.EVENT_NOTES)
    assert not undocumented, (
        f"log events without a note: {sorted(undocumented)}: say what each means and what "
        "to do about it in EVENT_NOTES (docs/_reference.py)"
    )
    stale = set(reference.EVENT_NOTES) - parsed
    assert not stale, f"EVENT_NOTES describes events the code no longer has: {sorted(stale)}"
    table = reference.events_table()
    assert all(f"| `{name}` |" in table for name in parsed)


def test_an_event_without_a_note_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    notes = dict(reference.EVENT_NOTES)
    del notes["budget_exhausted"]
    monkeypatch.setattr(reference, "EVENT_NOTES", notes)
    with pytest.raises(LookupError, match="budget_exhausted"):
        reference.expand("<!-- reference:log-events -->")


def test_every_prometheus_metric_is_documented() -> None:
    """Every row of the one metric table (`instrumentation._metrics.METRICS`, from which
    both hooks are built) is on the reference page, under its Prometheus name."""
    from async_dispatch.instrumentation._metrics import METRICS

    assert len(METRICS) >= 10
    table = reference.prometheus_table()
    for metric in METRICS:
        name = metric.prometheus_name
        assert re.search(rf"`async_dispatch_{name}(_total)?`", table), name


def test_every_opentelemetry_instrument_is_documented() -> None:
    from async_dispatch.instrumentation._metrics import METRICS

    table = reference.otel_table()
    missing = [m.otel_name for m in METRICS if f"`{m.otel_name}`" not in table]
    assert missing == []


def test_every_exit_code_is_documented_with_its_meaning() -> None:
    from async_dispatch._cli import ExitCode

    codes = {entry["name"]: entry for entry in reference.exit_codes()}
    assert set(codes) == {member.name for member in ExitCode}
    assert all(entry["meaning"] for entry in codes.values()), codes
    table = reference.exit_codes_table()
    assert all(f"| {int(m)} | `{m.name}` |" in table for m in ExitCode)


def test_the_reference_page_shows_every_table() -> None:
    text = PAGE.read_text()
    assert set(reference.MARKER.findall(text)) == set(reference.TABLES)
    expanded = reference.expand(text)
    assert "<!-- reference:" not in expanded
    assert "`budget_exhausted`" in expanded
    assert "`SUBMIT_UNCERTAIN`" in expanded


def test_grouped_parameters_are_split_for_the_api_reference() -> None:
    spec = importlib.util.spec_from_file_location(
        "docs_griffe_params", ROOT / "docs" / "_griffe_params.py"
    )
    assert spec is not None
    assert spec.loader is not None
    params = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(params)
    docstring = (
        "Summary, with a comma, b: not a parameter.\n\nArgs:\n"
        "    attempts: Tries.\n"
        "    initial_delay, max_delay: The backoff curve,\n        in seconds.\n"
        "    max_wait: The most.\n\nReturns:\n    x, y: not split here.\n"
    )
    assert params.split_grouped(docstring).splitlines() == [
        "Summary, with a comma, b: not a parameter.",
        "",
        "Args:",
        "    attempts: Tries.",
        "    initial_delay: The backoff curve,",
        "        in seconds.",
        "    max_delay: The backoff curve,",
        "        in seconds.",
        "    max_wait: The most.",
        "",
        "Returns:",
        "    x, y: not split here.",
    ]


@pytest.mark.parametrize(
    "page",
    sorted((ROOT / "docs").rglob("*.md")),
    ids=lambda p: str(p.relative_to(ROOT / "docs")),
)
def test_every_python_block_of_the_site_parses(page: Path) -> None:
    """A snippet with a syntax error is a guide that fails on first paste. (The README's
    blocks are type-checked and run, by test_readme.py; these at least parse, top-level
    ``await`` and ``async with`` allowed, as in a notebook or a test body.)"""
    for block in re.findall(r"(?ms)^```python\n(.*?)^```", page.read_text()):
        compile(block, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
