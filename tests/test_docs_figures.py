"""The performance figures in the Markdown come from the benchmark's results files.

Two rules, one test each:

1. Every ``<!-- figures:begin NAME -->`` ... ``<!-- figures:end -->`` region of README.md
   and benchmarks/README.md is exactly what ``python -m benchmarks.render`` writes from
   ``benchmarks/results/latest.json`` (and ``fleet.json``). Fix: run it.
2. Outside those regions, those files (and every page of the documentation site, under
   docs/) quote no measurement: no number followed by a unit
   of time, size, rate or ratio (``0.9 s``, ``12%``, ``440 bytes``, ``2.4x``, ``40
   requests/s``...), in the prose, tables or headings. Code (fenced blocks, inline code)
   and HTML comments are not prose and are not checked. What the text may still say with
   a unit is a *setting* of the benchmark or of the library (the simulated durations, a
   default interval), never a result: each such phrase is in `SETTINGS` below, by file,
   with the words around it, so a new one is a deliberate edit of this list.

CHANGELOG.md is history, and keeps the figures each release measured.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import render  # noqa: E402

#: A number, then a unit that makes it a measurement (or a setting, if allowed below).
MEASUREMENT = re.compile(
    r"(?<![\w.])(?!\d{3}s\b)[~≈]?\d[\d,]*(?:\.\d+)?\s?"
    r"(?:%|x\b|\u00d7|ms\b|µs\b|s\b|sec\b|seconds?\b|minutes?\b|hours?\b|[KMG]i?B\b|bytes?\b"
    r"|(?:requests?|reads|checks|req)/s\b|requests? (?:per|a) (?:task|check|second)"
    r"|round trips\b|CPUs?\b|cores?\b)"
)

#: Every Markdown file held to rule 2: the rendered ones and the documentation's pages.
PROSE = (*render.DOCUMENTS, *sorted((ROOT / "docs").rglob("*.md")))

#: Settings, not results: the phrases (with their context) that may keep a unit.
SETTINGS: dict[str, tuple[str, ...]] = {
    "docs/instrumentation.md": (
        "durations 5 ms to 60 s",
        "delay 100 ms to 10 min",
        "token wait 1 ms to 2 min",
    ),
    "README.md": (
        "(`safety_interval`, default 60 s)",
        "(`lease=`, 30 s by default",
        "after `outcome_idle` (60 s)",
        "`submit_timeout` (120 s by default; `timeout`, 30 s,",
        "at least 16 bytes",  # the shortest fleet secret accepted (_integrity.py)
    ),
    "benchmarks/README.md": (
        "a quarter of an hour",
        "20 requests per\n  simulated second per key, burst 20",
        "median 40 s, clamped to 5-180 s",
        "time scale 0.05 (20 simulated seconds per real second). 90% success, 10% error.",
        "sleep 3-5 s",
        "1.5x growing jittered intervals from 2 s to 10 s",
        "rate 10,\n  2-10 s",
        "5-10 s",
        "R = 40 requests/s",
        "over the first 30% of a\n15 s run",
        "checks every 50-100 ms wanted",
        "after 0.3-2.5 s",
        "within 180 simulated seconds and the deadline is 600",
        "The\n  budget is 20 requests per simulated second",
        "takes 500 simulated seconds",
    ),
}


def _prose(text: str) -> str:
    """`text` without generated regions, code, and comments (each blanked, lines kept)."""
    spans = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for first, end in render.regions_in(text).values():
        spans.append((offsets[first], offsets[end]))
    for pattern in (r"(?ms)^```.*?^```", r"(?s)<!--.*?-->", r"`[^`\n]+`"):
        spans += [m.span() for m in re.finditer(pattern, text)]
    chars = list(text)
    for start, stop in spans:
        for i in range(start, stop):
            if chars[i] != "\n":
                chars[i] = " "
    return "".join(chars)


@pytest.mark.parametrize("path", render.DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_figures_region_is_what_the_results_render(path: Path) -> None:
    text = path.read_text()
    assert render.regions_in(text), f"{path.name} has no figures region"
    expected = render.rendered_text(text, render.load_results())
    stale = [
        name
        for name, (first, end) in render.regions_in(text).items()
        if text.splitlines()[first:end] != expected.splitlines()[first:end]
    ]
    assert expected == text, (
        f"stale figures in {path.name} (regions {stale}): run `python -m benchmarks.render`"
    )


@pytest.mark.parametrize("path", PROSE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_measured_figure_outside_a_generated_region(path: Path) -> None:
    name = str(path.relative_to(ROOT))
    text = path.read_text()
    for setting in SETTINGS.get(name, ()):
        assert setting in text, f"allowed setting no longer in {name}: {setting!r}"
        text = text.replace(setting, re.sub(r"[^\n]", " ", setting))
    prose = _prose(text)
    found = [
        f"line {prose.count(chr(10), 0, m.start()) + 1}: {m.group()!r}"
        for m in MEASUREMENT.finditer(prose)
    ]
    assert not found, (
        f"{name} quotes figures outside a generated region: {found}. Render them from the "
        "results (benchmarks/render.py), or, for a setting that is not a measurement, add "
        "the phrase to SETTINGS in this test."
    )


def test_the_rule_catches_a_typed_figure() -> None:
    """The scanner itself: what it must catch, and what it must leave alone."""
    text = (
        "Fast: 23-35% less CPU, 440 bytes each, 2.4x less, 0.6 s, 40 requests/s.\n"
        "<!-- figures:begin readme-performance -->\n12% less\n<!-- figures:end -->\n"
        "`rate=10` and 429s\n```\n1.5 s\n```\n"
    )
    found = [m.group() for m in MEASUREMENT.finditer(_prose(text))]
    assert found == ["35%", "440 bytes", "2.4x", "0.6 s", "40 requests/s"]


def test_a_stale_region_is_rewritten_and_an_unknown_one_refused() -> None:
    results = render.load_results()
    text = "a\n<!-- figures:begin bench-machine -->\nold\n<!-- figures:end -->\nb\n"
    new = render.rendered_text(text, results)
    assert "old" not in new
    assert results["meta"]["machine"] in new.replace("\n", " ")
    assert render.rendered_text(new, results) == new
    with pytest.raises(ValueError, match="unknown figures region"):
        render.rendered_text("<!-- figures:begin nope -->\n<!-- figures:end -->\n", results)
    with pytest.raises(ValueError, match="never closed"):
        render.regions_in("<!-- figures:begin bench-machine -->\n")
