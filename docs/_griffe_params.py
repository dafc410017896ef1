"""A griffe extension: the library's docstring habits, rendered as they read in the source.

- ``a, b: text`` in an ``Args:`` section documents each of a and b.
- A paragraph ending in ``::`` (reStructuredText's "a literal block follows") ends in
  ``:`` on the page; the indented block after it is already code in Markdown.

The library's docstrings document parameters that go together in one entry
(``initial_delay, max_delay, multiplier: The backoff curve.``), which reads well in the
source. Google style has no such form: left alone, the API reference shows one parameter
called ``"initial_delay, max_delay, multiplier"``, with no type and marked required. This
rewrites such an entry, before the docstring is parsed, into one entry per name with the
same text, so each parameter gets its own row, type and default.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(r"^(?P<indent>\s*)(Args|Arguments|Parameters|Attributes):\s*$")
_LITERAL = re.compile(r"(?<=\S)(\s*)::$")


def _colon(match: re.Match[str]) -> str:
    """``text::`` reads "text:"; ``text. ::`` reads "text." (reST's own rule)."""
    return "" if match[1] else ":"


_GROUPED = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:,\s*\w+)+):(?P<text>.*)$")


def split_grouped(docstring: str) -> str:
    """`docstring` with every grouped entry of its argument sections split."""
    lines = docstring.splitlines()
    out: list[str] = []
    in_section: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        section = _SECTION.match(line)
        if section:
            in_section = section["indent"]
        elif in_section is not None and line.strip() and not line.startswith(in_section + " "):
            in_section = None
        grouped = _GROUPED.match(line) if in_section is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        indent = grouped["indent"]
        block = [grouped["text"]]
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            if not lines[i].strip() and (i + 1 >= len(lines) or not lines[i + 1].strip()):
                break
            block.append(lines[i])
            i += 1
        for name in re.split(r",\s*", grouped["names"]):
            out.append(f"{indent}{name}:{block[0]}")
            out.extend(block[1:])
    return "\n".join(out)


class SplitGroupedParameters(griffe.Extension):
    """Applied to every object as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            lines = obj.docstring.value.splitlines()
            text = "\n".join(_LITERAL.sub(_colon, line) for line in lines)
            obj.docstring.value = split_grouped(text)
