"""The PROMPTS input of ``run``: one prompt per line, or JSON Lines with options and a
context per task; read and checked whole before anything is submitted.

Two formats, told apart by the first line that is not blank (``--format`` forces one):

- text: every non-blank line is one prompt, as written (leading and trailing whitespace
  removed);
- JSON Lines, when that first line starts with ``{``: every non-blank line is one object::

      {"prompt": "/Operator find ...", "options": {"executionMode": "cloud"},
       "context": {"row": 7}, "deadline": 120}

  ``prompt`` (a non-empty string) is required. ``options`` holds submit fields, in the
  API's spelling (``executionMode``) or the library's (``execution_mode``); a name that
  is neither goes to the request body untouched, as ``SubmitOptions(extra=...)`` does.
  ``context`` is any JSON value, written back with the task's result. ``deadline`` is
  this task's seconds before it counts as timed out (default ``--deadline``). Any other
  key is an error, so a typo is not silently ignored.

A line that breaks these rules is a usage error naming its line number, before any
submit: a batch either starts whole or not at all.

The input's fingerprint (`Prompts.digest`) goes with every task into the state file, so
that resuming with a different input is refused instead of mixing two batches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import attrs

from .._errors import UsageError
from .._options import WIRE, SubmitOptions
from ._exit import CommandError

__all__ = ["Prompt", "Prompts", "parse_prompts"]

Format = Literal["auto", "text", "jsonl"]

_KEYS: Final = frozenset({"prompt", "options", "context", "deadline"})
_FIELDS: Final = attrs.fields(SubmitOptions)
#: An option's name, in either spelling, to SubmitOptions' field name.
_OPTION_NAMES: Final = {
    **{field.name: field.name for field in _FIELDS if field.name != "extra"},
    **{field.metadata[WIRE]: field.name for field in _FIELDS if WIRE in field.metadata},
}


@attrs.frozen(kw_only=True)
class Prompt:
    """One task of the batch."""

    #: Its place among the prompts, from 0: the key of its result line.
    index: int
    #: Its line number in the input, from 1 (blank lines count), for people.
    line: int
    prompt: str
    options: SubmitOptions = attrs.field(repr=False)
    context: Any = None
    deadline: float | None = None


@attrs.frozen
class Prompts:
    """Every task of the batch, and the fingerprint that ties a state file to them."""

    entries: list[Prompt]
    digest: str


def parse_prompts(lines: Iterable[str], *, fmt: Format = "auto", name: str) -> Prompts:
    """Read and check every line; `name` says where they come from, in errors."""
    entries: list[Prompt] = []
    chosen: Format = fmt
    fingerprint = hashlib.sha256()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if chosen == "auto":
            chosen = "jsonl" if text.startswith("{") else "text"
        if chosen == "text":
            entry = Prompt(index=len(entries), line=number, prompt=text, options=SubmitOptions())
        else:
            entry = _json_line(text, index=len(entries), number=number, name=name)
        entries.append(entry)
        # Secret-bearing option values stay out of the fingerprint (it is in the state
        # file): the prompt, the context and the deadline are what tell two batches apart.
        fingerprint.update(
            json.dumps([entry.prompt, entry.context, entry.deadline], sort_keys=True).encode()
        )
        fingerprint.update(b"\n")
    if not entries:
        raise CommandError(f"no prompts in {name}: every line is blank")
    return Prompts(entries, fingerprint.hexdigest()[:16])


def _json_line(text: str, *, index: int, number: int, name: str) -> Prompt:
    def error(message: str) -> CommandError:
        return CommandError(f"{name}, line {number}: {message}")

    try:
        document = json.loads(text)
    except ValueError as exc:
        raise error(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise error(f"expected a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise error(f"unknown key {unknown[0]!r} (the keys are prompt, options, context, deadline)")
    prompt = document.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise error('"prompt" must be a non-empty string')
    deadline = document.get("deadline")
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline <= 0
    ):
        raise error('"deadline" must be a number of seconds > 0')
    options = _options(document.get("options"), error)
    return Prompt(
        index=index,
        line=number,
        prompt=prompt,
        options=options,
        context=document.get("context"),
        deadline=float(deadline) if deadline is not None else None,
    )


def _options(value: object, error: Any) -> SubmitOptions:
    if value is None:
        return SubmitOptions()
    if not isinstance(value, Mapping):
        raise error('"options" must be a JSON object of submit fields')
    named: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, item in value.items():
        field = _OPTION_NAMES.get(key)
        if field is None:
            extra[key] = item
        elif field in named:
            raise error(f'"options" names {field} twice (in both spellings)')
        else:
            named[field] = item
    try:
        options = SubmitOptions(**named, extra=extra or None)
        options.body("-")  # an extra field that collides with a named one
    except (UsageError, TypeError, ValueError) as exc:
        # The message names the field, never its value (which may be a secret).
        raise error(f'bad "options": {exc}') from None
    return options
