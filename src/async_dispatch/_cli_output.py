"""How the command line shows things: JSON for machines, plain lines for logs, rich for people.

Every renderer writes through a `Redactor`, so whatever the service echoes back (a task's
text, an error excerpt) can never put the API key on a terminal or into a CI log.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, Final, Protocol, TextIO, cast

import attrs
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ._models import TaskStatus
from ._outcome import Outcome, OutcomeKind

__all__ = [
    "FINAL_KINDS",
    "Display",
    "Redactor",
    "make_display",
    "outcome_json",
    "percentile",
    "status_json",
]

#: The four kinds that end a task, in the order summaries list them.
FINAL_KINDS: Final = (
    OutcomeKind.SUCCESS,
    OutcomeKind.ERROR,
    OutcomeKind.TIMED_OUT,
    OutcomeKind.FAILED,
)
_TEXT_WIDTH: Final = 60
_KIND_STYLE: Final = {
    OutcomeKind.SUCCESS: "green",
    OutcomeKind.ERROR: "red",
    OutcomeKind.TIMED_OUT: "yellow",
    OutcomeKind.FAILED: "magenta",
    OutcomeKind.INPUT_REQUIRED: "cyan",
}


class Redactor:
    """A text stream that replaces one secret with ``***`` on its way to `target`.

    Writes are redacted one at a time; every writer in this package writes whole lines or
    whole rich frames, so a secret is never split across two writes.
    """

    __slots__ = ("__weakref__", "_secret", "target")

    def __init__(self, target: TextIO, secret: str | None) -> None:
        self.target = target
        self._secret = secret or None

    def write(self, text: str) -> int:
        if self._secret is not None and self._secret in text:
            text = text.replace(self._secret, "***")
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        isatty = getattr(self.target, "isatty", None)
        return bool(isatty()) if isatty is not None else False

    def line(self, text: str = "") -> None:
        """Write one line and flush it, so pipes see progress as it happens."""
        self.write(text + "\n")
        self.flush()

    def json(self, document: Any) -> None:
        self.line(json.dumps(document, separators=(",", ":"), ensure_ascii=False))

    def console(self) -> Console:
        """A rich console on this stream (colour and live display only on a terminal)."""
        return Console(
            file=cast(IO[str], self),
            force_terminal=self.isatty(),
            highlight=False,
            soft_wrap=False,
        )


# -- values as JSON ---------------------------------------------------------------------------


def status_json(status: TaskStatus) -> dict[str, Any]:
    """A `TaskStatus` as the CLI's JSON (snake_case, ISO timestamps, raw status string)."""
    usage = None
    if status.usage is not None:
        usage = {"actions": status.usage.actions, "credits": status.usage.credits}
    return {
        "request_id": status.request_id,
        "status": status.raw_status,
        "text": status.text,
        "created_at": status.created_at.isoformat(),
        "completed_at": status.completed_at.isoformat() if status.completed_at else None,
        "usage": usage,
        "browser_window_id": status.browser_window_id,
        "structured_output": status.structured_output,
        "hitl_input_metadata": _jsonable(status.hitl_input_metadata),
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """An `Outcome` as one JSON line of ``wait``."""
    return {
        "request_id": outcome.request_id,
        "kind": outcome.kind.value,
        "final": outcome.final,
        "status": status_json(outcome.status) if outcome.status is not None else None,
        "error": _one_line(str(outcome.error)) if outcome.error is not None else None,
        "polls": outcome.polls,
        "elapsed": round(outcome.elapsed, 3),
    }


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(text: str | None, width: int = _TEXT_WIDTH) -> str:
    text = _one_line(text or "")
    return text if len(text) <= width else text[: width - 3] + "..."


def outcome_detail(outcome: Outcome) -> str:
    """What to show beside an outcome: the task's text, else the error."""
    if outcome.kind in (OutcomeKind.TIMED_OUT, OutcomeKind.FAILED) and outcome.error is not None:
        return _short(str(outcome.error))
    if outcome.status is not None and outcome.status.text:
        return _short(outcome.status.text)
    return _short(str(outcome.error)) if outcome.error is not None else ""


def status_lines(status: TaskStatus) -> list[str]:
    """A status as ``name: value`` lines for people and logs."""
    lines = [f"request_id: {status.request_id}", f"status: {status.raw_status}"]
    lines.append(f"created_at: {status.created_at.isoformat()}")
    if status.completed_at is not None:
        lines.append(f"completed_at: {status.completed_at.isoformat()}")
    if status.text:
        lines.append(f"text: {_one_line(status.text)}")
    if status.usage is not None:
        lines.append(f"usage: actions={status.usage.actions} credits={status.usage.credits}")
    if status.structured_output is not None:
        lines.append(f"structured_output: {json.dumps(_jsonable(status.structured_output))}")
    return lines


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- live displays for `wait` -----------------------------------------------------------------


class Display(Protocol):
    """What `wait` (and `submit --wait`) tell about outcomes as they arrive, and at the end."""

    def start(self, total: int) -> None: ...

    def outcome(self, outcome: Outcome) -> None: ...

    def stop(self) -> None:
        """End any live rendering; called once tracking is over, whatever happened."""

    def finish(self, finals: Sequence[Outcome]) -> None:
        """Show the end result (`finals` in the order the ids were given)."""


@attrs.define
class JsonLinesDisplay:
    """One JSON document per outcome (input-required notifications included), nothing else."""

    out: Redactor

    def start(self, total: int) -> None:
        pass

    def outcome(self, outcome: Outcome) -> None:
        self.out.json(outcome_json(outcome))

    def stop(self) -> None:
        pass

    def finish(self, finals: Sequence[Outcome]) -> None:
        pass


@attrs.define
class PlainDisplay:
    """One tab-separated line per outcome as it arrives, then a one-line summary."""

    out: Redactor

    def start(self, total: int) -> None:
        pass

    def outcome(self, outcome: Outcome) -> None:
        self.out.line(
            f"{outcome.request_id}\t{outcome.kind.value}\t{outcome.elapsed:.1f}s\t"
            f"{outcome_detail(outcome)}"
        )

    def stop(self) -> None:
        pass

    def finish(self, finals: Sequence[Outcome]) -> None:
        self.out.line(summary_line(finals))


@attrs.define
class RichDisplay:
    """A live progress bar with counts by kind, then a table of every task."""

    out: Redactor
    console: Console = attrs.field(init=False)
    progress: Progress = attrs.field(init=False)
    task: TaskID | None = attrs.field(init=False, default=None)
    counts: Counter[OutcomeKind] = attrs.field(init=False, factory=Counter)

    def __attrs_post_init__(self) -> None:
        self.console = self.out.console()
        self.progress = progress_bar(self.console)

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("tracking", total=total, counts="")

    def outcome(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        assert self.task is not None
        if outcome.kind is OutcomeKind.INPUT_REQUIRED:
            self.progress.console.print(
                f"[cyan]input required[/] {outcome.request_id}: {outcome_detail(outcome)}",
                markup=True,
            )
        done = sum(self.counts[kind] for kind in FINAL_KINDS)
        self.progress.update(self.task, completed=done, counts=counts_markup(self.counts))

    def stop(self) -> None:
        self.progress.stop()

    def finish(self, finals: Sequence[Outcome]) -> None:
        table = Table(title=summary_line(finals), title_justify="left")
        for column in ("request id", "outcome", "polls", "elapsed", "detail"):
            table.add_column(column, justify="right" if column in ("polls", "elapsed") else "left")
        for outcome in finals:
            style = _KIND_STYLE.get(outcome.kind, "")
            table.add_row(
                outcome.request_id,
                f"[{style}]{outcome.kind.value}[/]",
                str(outcome.polls),
                f"{outcome.elapsed:.1f}s",
                outcome_detail(outcome),
            )
        self.console.print(table)


def progress_bar(console: Console) -> Progress:
    """The progress bar `wait` and the demo share; ``counts`` is a per-task field."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
        transient=False,
    )


def counts_markup(counts: Mapping[OutcomeKind, int]) -> str:
    parts = [
        f"[{_KIND_STYLE[kind]}]{kind.value} {counts[kind]}[/]"
        for kind in (*FINAL_KINDS, OutcomeKind.INPUT_REQUIRED)
        if counts.get(kind)
    ]
    return "  ".join(parts)


def summary_line(finals: Iterable[Outcome]) -> str:
    """``3 tasks: success 2, error 1``."""
    finals = list(finals)
    counts = Counter(outcome.kind for outcome in finals)
    parts = [f"{kind.value} {counts[kind]}" for kind in FINAL_KINDS if counts[kind]]
    noun = "task" if len(finals) == 1 else "tasks"
    return f"{len(finals)} {noun}: " + (", ".join(parts) or "none")


def make_display(out: Redactor, *, json_lines: bool) -> Display:
    """JSON lines when asked, rich on a terminal, plain lines otherwise."""
    if json_lines:
        return JsonLinesDisplay(out)
    if out.isatty():
        return RichDisplay(out)
    return PlainDisplay(out)
