"""How the command line shows things: JSON for machines, plain lines for logs, rich for people.

Every renderer writes through a `Redactor`, so whatever the service echoes back (a task's
text, an error excerpt) can never put the API key on a terminal or into a CI log.

rich comes with the ``cli`` extra and is imported only when a terminal display is drawn:
with the core install alone, every command still works and prints plain lines.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Final, Protocol, TextIO, cast

import attrs

from .._models import TaskStatus
from .._outcome import Outcome, OutcomeKind

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ..redis import FleetView

__all__ = [
    "FINAL_KINDS",
    "Display",
    "Redactor",
    "RunProgress",
    "fleet_lines",
    "fleet_renderable",
    "fleet_rows",
    "have_rich",
    "make_display",
    "one_line",
    "outcome_detail",
    "percentile",
    "status_lines",
    "task_age",
    "timed_out_detail",
]

#: The kinds that end a task (every kind but the INPUT_REQUIRED notification), in the
#: order summaries list them: the enum's own order.
FINAL_KINDS: Final = tuple(kind for kind in OutcomeKind if kind is not OutcomeKind.INPUT_REQUIRED)
_TEXT_WIDTH: Final = 60
_KIND_STYLE: Final = {
    OutcomeKind.SUCCESS: "green",
    OutcomeKind.ERROR: "red",
    OutcomeKind.TIMED_OUT: "yellow",
    OutcomeKind.FAILED: "magenta",
    OutcomeKind.INPUT_REQUIRED: "cyan",
    OutcomeKind.SUBMIT_UNCERTAIN: "bold red",
}


def have_rich() -> bool:
    """True when rich (the ``cli`` extra) can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


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

    def console(self, width: int | None = None) -> Console:
        """A rich console on this stream (colour and live display only on a terminal)."""
        from rich.console import Console

        return Console(
            width=width,
            file=cast(IO[str], self),
            force_terminal=self.isatty(),
            highlight=False,
            soft_wrap=False,
        )


# -- values as text ---------------------------------------------------------------------------


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _short(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: width - 3] + "..."


def outcome_detail(outcome: Outcome, width: int | None = None) -> str:
    """What to show beside an outcome: the task's text, else the error, on one line.

    A timed-out task says what happened instead: the deadline passed, after how long and
    how many checks, and the last status the service gave (its last error too, if any).
    `width` cuts it, for a terminal table; logs and pipes get it whole (None).
    """
    if outcome.kind is OutcomeKind.TIMED_OUT:
        text = timed_out_detail(outcome)
    elif outcome.kind is OutcomeKind.FAILED and outcome.error is not None:
        text = str(outcome.error)
    elif outcome.status is not None and outcome.status.text:
        text = outcome.status.text
    else:
        text = str(outcome.error) if outcome.error is not None else ""
    return _short(one_line(text), width)


def timed_out_detail(outcome: Outcome, at: datetime | None = None) -> str:
    """``deadline passed at 16:40:02 UTC after 600.0s of tracking and 57 checks; last
    status: pending (created ...)``: why a TIMED_OUT outcome ended, and what was known."""
    when = f" at {at.astimezone(timezone.utc):%H:%M:%S} UTC" if at is not None else ""
    checks = "check" if outcome.polls == 1 else "checks"
    text = (
        f"deadline passed{when} after {outcome.elapsed:.1f}s of tracking "
        f"and {outcome.polls} {checks}; "
    )
    status = outcome.status
    if status is None:
        text += "no status was read"
    else:
        text += f"last status: {status.raw_status}"
        if status.created_at is not None:
            text += f" (created {status.created_at.isoformat()})"
    if outcome.error is not None:
        text += f"; last error: {outcome.error}"
    return text


def task_age(outcome: Outcome, now: datetime) -> tuple[str, float]:
    """How old the task was when its outcome arrived, labelled by what it counts from.

    ``("age", s)``: seconds since the service created the task (its ``createdAt``), when a
    status told it (the service need not send it). ``("tracked", s)`` otherwise: the
    seconds this command tracked it, which is all that is known (the task may be older).
    """
    created_at = outcome.status.created_at if outcome.status is not None else None
    if created_at is not None:
        return "age", max(0.0, (now - created_at).total_seconds())
    return "tracked", outcome.elapsed


def _age_text(outcome: Outcome, now: datetime) -> str:
    label, seconds = task_age(outcome, now)
    return f"{seconds:.1f}s" if label == "age" else f"{seconds:.1f}s ({label})"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def status_lines(status: TaskStatus) -> list[str]:
    """A status as ``name: value`` lines for people and logs."""
    lines = [f"request_id: {status.request_id}", f"status: {status.raw_status}"]
    if status.created_at is not None:
        lines.append(f"created_at: {status.created_at.isoformat()}")
    if status.completed_at is not None:
        lines.append(f"completed_at: {status.completed_at.isoformat()}")
    if status.text:
        lines.append(f"text: {one_line(status.text)}")
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
        self.out.json(outcome.as_dict())

    def stop(self) -> None:
        pass

    def finish(self, finals: Sequence[Outcome]) -> None:
        pass


@attrs.define
class PlainDisplay:
    """One tab-separated line per outcome as it arrives, then a one-line summary.

    Fields: request id, kind, ``age=<seconds>s`` (since the service created the task;
    ``tracked=<seconds>s`` when no status told when that was, see `task_age`),
    ``polls=<n>``, then the task's text or the error, whole: a log or a pipe has no width
    to respect.
    """

    out: Redactor

    def start(self, total: int) -> None:
        pass

    def outcome(self, outcome: Outcome) -> None:
        label, seconds = task_age(outcome, _utc_now())
        self.out.line(
            f"{outcome.request_id}\t{outcome.kind.value}\t{label}={seconds:.1f}s\t"
            f"polls={outcome.polls}\t{outcome_detail(outcome)}"
        )

    def stop(self) -> None:
        pass

    def finish(self, finals: Sequence[Outcome]) -> None:
        self.out.line(summary_line(finals))


class RichDisplay:
    """A live count of outcomes by kind on a terminal, then a table of every task."""

    def __init__(self, out: Redactor) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = out.console()
        self.progress = Progress(
            TextColumn("[bold]finished"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            console=self.console,
        )
        self.task = self.progress.add_task("finished", total=None, counts="", start=False)
        self.counts: Counter[OutcomeKind] = Counter()
        #: When each outcome arrived: the table, drawn at the end, shows each task's age
        #: at its own outcome.
        self.arrived: dict[str, datetime] = {}

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)
        self.progress.start_task(self.task)
        self.progress.start()

    def outcome(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        self.arrived[outcome.request_id] = _utc_now()
        if outcome.kind is OutcomeKind.INPUT_REQUIRED:
            from rich.text import Text

            detail = outcome_detail(outcome, _TEXT_WIDTH)
            line = Text.assemble(("input required", "cyan"), f" {outcome.request_id}: {detail}")
            self.progress.console.print(line)
        done = sum(self.counts[kind] for kind in FINAL_KINDS)
        self.progress.update(self.task, completed=done, counts=counts_markup(self.counts))

    def stop(self) -> None:
        self.progress.stop()

    def finish(self, finals: Sequence[Outcome]) -> None:
        from rich.table import Table

        table = Table(title=summary_line(finals), title_justify="left")
        for column in ("request id", "outcome", "polls", "age", "detail"):
            table.add_column(column, justify="right" if column in ("polls", "age") else "left")
        now = _utc_now()
        for outcome in finals:
            style = _KIND_STYLE[outcome.kind]
            table.add_row(
                outcome.request_id,
                f"[{style}]{outcome.kind.value}[/]",
                str(outcome.polls),
                _age_text(outcome, self.arrived.get(outcome.request_id, now)),
                outcome_detail(outcome, _TEXT_WIDTH),
            )
        self.console.print(table)


def counts_markup(counts: Mapping[OutcomeKind, int]) -> str:
    """The finished tasks by kind; input requests apart, as they are not an ending."""
    parts = [
        f"[{_KIND_STYLE[kind]}]{kind.value} {counts[kind]}[/]"
        for kind in FINAL_KINDS
        if counts.get(kind)
    ]
    asked = counts.get(OutcomeKind.INPUT_REQUIRED)
    if asked:
        parts.append(f"([cyan]asked for input {asked}[/])")
    return " ".join(parts)


def summary_line(finals: Iterable[Outcome]) -> str:
    """``3 tasks: success 2, error 1``."""
    finals = list(finals)
    counts = Counter(outcome.kind for outcome in finals)
    parts = [f"{kind.value} {counts[kind]}" for kind in FINAL_KINDS if counts[kind]]
    noun = "task" if len(finals) == 1 else "tasks"
    return f"{len(finals)} {noun}: " + (", ".join(parts) or "none")


def make_display(out: Redactor, *, json_lines: bool) -> Display:
    """JSON lines when asked, rich on a terminal (when installed), plain lines otherwise."""
    if json_lines:
        return JsonLinesDisplay(out)
    if out.isatty() and have_rich():
        return RichDisplay(out)
    return PlainDisplay(out)


# -- the progress of `run` --------------------------------------------------------------------


class RunProgress:
    """How far a ``run`` batch is, on stderr: one line redrawn in place on a terminal,
    plain lines every `interval` seconds elsewhere (a log, a pipe). Never on stdout.

    ``run: 1234/2000 done (success 1100, error 130, timed-out 4) | 1600 submitted |
    38.5/s | 0:42``: results written (earlier runs' included), submits made, results per
    second in this run, time since this run began.
    """

    def __init__(self, err: Redactor, total: int, *, interval: float, clock: Any) -> None:
        self.err = err
        self.total = total
        self.interval = interval
        self.clock = clock
        self.live = err.isatty()
        self.started = clock()
        self.kinds: Counter[str] = Counter()
        self.submitted = 0
        self.asked = 0
        self._written_here = 0
        self._drawn_at = -math.inf
        self._width = 0

    def result(self, kind: str, *, here: bool = True) -> None:
        """A prompt has its result line (`here`: written by this run, not read back)."""
        self.kinds[kind] += 1
        if here:
            self._written_here += 1
        self._redraw()

    def line(self) -> str:
        done = sum(self.kinds.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kinds.items()))
        seconds = max(self.clock() - self.started, 0.0)
        rate = self._written_here / seconds if seconds > 0 else 0.0
        minutes, secs = divmod(int(seconds), 60)
        text = f"run: {done}/{self.total} done"
        if kinds:
            text += f" ({kinds})"
        text += f" | {self.submitted} submitted"
        if self.asked:
            text += f" | asked for input {self.asked}"
        return text + f" | {rate:.1f}/s | {minutes}:{secs:02d}"

    def _redraw(self) -> None:
        """On a terminal, at most ten times a second; elsewhere `tick` prints."""
        if not self.live:
            return
        now = self.clock()
        if now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        text = self.line()
        pad = max(self._width - len(text), 0)
        self._width = len(text)
        self.err.write("\r" + text + " " * pad)
        self.err.flush()

    def tick(self) -> None:
        """Called every `interval` seconds (a terminal: more often, for the clock)."""
        if self.live:
            self._drawn_at = -math.inf
            self._redraw()
        else:
            self.err.line(self.line())

    def note(self, text: str) -> None:
        """A line of its own (a resume, a refused submit) above the live line."""
        if self.live and self._width:
            self.err.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.err.line(text)

    def stop(self) -> None:
        """End the live line (a terminal), or print the last plain one."""
        if self.live:
            self._drawn_at = -math.inf
            self._redraw()
            self.err.line()
        else:
            self.err.line(self.line())


# -- the fleet view ---------------------------------------------------------------------------

#: Replica names are ``host-pid-suffix``: long hosts are cut to keep the table in 80 columns.
_REPLICA_WIDTH: Final = 40


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s"


def _budget(view: FleetView) -> str:
    tokens = view.tokens_in_use
    text = f"{view.schedule_ahead:.3f}s ahead"
    if tokens is not None:
        text += f" ({tokens:.1f} tokens at {view.rate:g}/s)"
    return text


def fleet_rows(view: FleetView) -> list[tuple[str, str]]:
    """The fleet's figures as (label, value) pairs, in the order both views show them."""
    leased = str(view.leased)
    if view.stale_leases:
        leased += f" ({view.stale_leases} ran out: replica gone?)"
    if view.truncated:
        leased += f" (first {view.inspected} checks read)"
    submits = str(view.submits_in_flight)
    if view.oldest_submit_age is not None:
        submits += f" (oldest {_seconds(view.oldest_submit_age)})"
    outcomes = f"{view.outcomes_waiting} ({view.outcomes_pending} read, not yet acked)"
    dead = str(view.dead_letters)
    if view.dead_letters:
        dead += " (read them with XRANGE on the fleet's deadletter stream)"
    return [
        ("tasks tracked", str(view.tracked)),
        ("due now", str(view.due_now)),
        ("last checks pending", str(view.last_checks)),
        ("next check in", _seconds(view.next_check_in)),
        ("next deadline in", _seconds(view.next_deadline_in)),
        ("checks leased", leased),
        ("outcomes waiting", outcomes),
        ("dead letters", dead),
        ("submits in flight", submits),
        ("webhooks parked", str(view.parked_webhooks)),
        ("budget in use", _budget(view)),
        ("paused", f"{view.paused_for:.1f}s left" if view.paused_for > 0 else "no"),
        ("outcomes signed", _SIGNED[view.signed]),
    ]


#: `FleetView.signed`, as the view shows it.
_SIGNED: Final = {
    True: "yes (a fleet secret)",
    False: "no (no fleet secret: Redis is trusted)",
    None: "-",
}


def _replica_rows(view: FleetView) -> list[tuple[str, str, str]]:
    return [
        (
            _short(name or "?", _REPLICA_WIDTH),
            str(view.leases_by_replica.get(name, 0)),
            str(view.outcomes_pending_by_replica.get(name, 0)),
        )
        for name in view.replicas
    ]


def fleet_lines(view: FleetView, url: str) -> list[str]:
    """The fleet view as plain lines (logs, pipes). `url` must be the redacted one."""
    lines = [f"fleet {view.name} at {url}"]
    lines += [f"{label}: {value}" for label, value in fleet_rows(view)]
    for name, leases, pending in _replica_rows(view):
        lines.append(f"replica {name}: leases={leases} outcomes_pending={pending}")
    return lines


def fleet_renderable(view: FleetView, url: str) -> RenderableType:
    """The fleet view for a terminal: figures, then one row per replica; fits 80 columns."""
    from rich.console import Group
    from rich.table import Table

    figures = Table(
        title=f"fleet [bold]{view.name}[/] at {url}",
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 2, 0, 0),
    )
    figures.add_column("figure", style="bold", no_wrap=True)
    figures.add_column("value", overflow="fold")
    for label, value in fleet_rows(view):
        style = "yellow" if label == "paused" and view.paused_for > 0 else ""
        figures.add_row(label, f"[{style}]{value}[/]" if style else value)
    rows = _replica_rows(view)
    if not rows:
        return figures
    replicas = Table(title="by replica", title_justify="left")
    replicas.add_column("replica", overflow="ellipsis", no_wrap=True, max_width=_REPLICA_WIDTH)
    replicas.add_column("leases", justify="right")
    replicas.add_column("outcomes read, unacked", justify="right")
    for row in rows:
        replicas.add_row(*row)
    return Group(figures, replicas)
