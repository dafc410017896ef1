"""The RESULTS file of ``run``: one JSON line per prompt's final outcome, appended as
outcomes arrive, and read back on resume to know which prompts already have theirs.

A result line (one JSON object, keys in this order)::

    {"index": 0, "line": 1, "request_id": "req_...", "kind": "success",
     "status": "success", "response": "text of the answer", "output": null,
     "usage": {"actions": 7, "credits": 1.5}, "error": null, "timeout_cause": null,
     "polls": 3, "elapsed": 4.2, "via": "poll", "context": {"row": 7}}

- ``index``: the prompt's place among the prompts, from 0 (the key: one line each);
  ``line``: its line number in PROMPTS, from 1;
- ``request_id``: the task's id at the service; null when none is known (a submit
  that was refused, or that a crash or timeout left uncertain);
- ``kind``: how it ended: ``success``, ``error``, ``input-required`` (it ended waiting
  for a person), ``timed-out``, ``failed`` (it could not be tracked, or the service
  refused the submit), ``submit-uncertain`` (the submit may or may not have created a
  task: look before submitting it again; it is never resubmitted by ``run``);
- ``status``: the service's last status string; ``response``: its text; ``output``:
  structured output, if any; ``usage``: actions and credits, when the service said;
- ``error``: what went wrong, in one message; ``timeout_cause`` for ``timed-out``;
- ``polls``, ``elapsed``, ``via``: status requests spent, seconds tracked, and how the
  ending was learnt (``poll``, ``deadline``, ``other``);
- ``context``: the prompt's ``context`` from PROMPTS (null in text format).

Each line is written whole with one write and flushed before the state file is told
the outcome was taken, so a ``kill -9`` leaves at worst one partial last line, which
reading back cuts off (its outcome is still in the state file and is written again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from .._outcome import Outcome
from ._exit import CommandError
from ._prompts import Prompt, Prompts

__all__ = ["ResultsFile", "result_document"]


def result_document(outcome: Outcome, entry: Prompt) -> dict[str, Any]:
    """The result line of `entry`, from its final `outcome`."""
    status = outcome.status
    usage = None
    if status is not None and status.usage is not None:
        usage = {"actions": status.usage.actions, "credits": status.usage.credits}
    cause = outcome.timeout_cause
    return {
        "index": entry.index,
        "line": entry.line,
        "request_id": outcome.request_id or None,
        "kind": outcome.kind.value,
        "status": status.raw_status if status is not None else None,
        "response": status.text if status is not None else None,
        "output": status.structured_output if status is not None else None,
        "usage": usage,
        "error": str(outcome.error) if outcome.error is not None else None,
        "timeout_cause": cause.value if cause is not None else None,
        "polls": outcome.polls,
        "elapsed": round(outcome.elapsed, 3),
        "via": outcome.via,
        "context": entry.context,
    }


class ResultsFile:
    """RESULTS, open for appending, and the results it held when opened (by index)."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        #: The kind of every prompt's result, by index, as read and as appended.
        self.kinds: dict[int, str] = {}
        #: Partial last lines cut off, and repeated results ignored, when it was read.
        self.cut = 0
        self.repeated = 0
        self._file: IO[bytes] | None = None

    def open(self, prompts: Prompts) -> None:
        """Read what is there (cutting off a partial last line), check that it belongs
        to `prompts`, and open for appending."""
        try:
            handle = self.path.open("a+b")
        except OSError as exc:
            raise CommandError(f"cannot open {str(self.path)!r}: {exc.strerror}") from None
        try:
            handle.seek(0)
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):  # the line a kill -9 cut short: its outcome comes again
                handle.truncate(end)
                self.cut = 1
            for number, raw in enumerate(data[:end].splitlines(), start=1):
                self._take(raw, number, prompts)
        except BaseException:
            handle.close()
            raise
        handle.seek(0, os.SEEK_END)
        self._file = handle

    def _take(self, raw: bytes, number: int, prompts: Prompts) -> None:
        where = f"{self.path}, line {number}"
        try:
            document = json.loads(raw)
            index, line = document["index"], document["line"]
            kind = document["kind"]
        except (ValueError, TypeError, KeyError):
            raise CommandError(
                f"{where}: not a result line of `run`; give --out a new file "
                "(or the results of this same PROMPTS input, to resume)"
            ) from None
        entries = prompts.entries
        if not (isinstance(index, int) and 0 <= index < len(entries)) or (
            entries[index].line != line
        ):
            raise CommandError(
                f"{where}: a result for prompt {index} at line {line}, which this PROMPTS "
                "input does not have: these results belong to another input"
            )
        if index in self.kinds:
            self.repeated += 1
            return
        self.kinds[index] = str(kind)

    def append(self, document: dict[str, Any]) -> None:
        """Write one result line whole, and flush it (to the disk too with `fsync`)."""
        handle = self._file
        assert handle is not None, "the results file is not open"
        index = document["index"]
        data = json.dumps(document, ensure_ascii=False, default=repr, separators=(",", ":"))
        handle.write(data.encode() + b"\n")
        handle.flush()
        if self.fsync:
            os.fsync(handle.fileno())
        self.kinds[index] = document["kind"]

    def close(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()
