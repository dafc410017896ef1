"""``run PROMPTS --out RESULTS.jsonl``: a batch of prompts, submitted and tracked under
one budget, one result line each, resumable after Ctrl-C, ``kill -9`` or a reboot.

The promise: no prompt is submitted twice, and every prompt ends with exactly one line
in RESULTS, however many times the run is stopped and started again. It rests on two
files, each the truth for one thing:

- the state file (a `SQLiteStore`; ``RESULTS.state`` beside RESULTS unless ``--state``
  says where) knows every submit in flight, every task tracked and every outcome not
  yet written to RESULTS. Each submit is named with its prompt's index
  (`SQLiteStore.submitting`), so each of those is tied to one prompt;
- RESULTS knows every prompt whose outcome was written (`_results`).

One prompt goes through these steps, each durable before the next begins::

    intent (state: "submitting prompt i")        crash here: SUBMIT_UNCERTAIN for i
      -> POST /remote-dispatch                   (the answer is lost with the process)
      -> task tracked (state: id and i, in the write that ends the intent)
      -> ... status checks ...
      -> final outcome (state: the outcome, in the write that ends the task)
      -> result line appended and flushed (RESULTS)
      -> outcome acknowledged (state: the outcome deleted)

On start, a prompt is *accounted for* when RESULTS has its line or the state file knows
it (a task, an outcome, an intent: `SQLiteStore.resumed_contexts`); only the others are
submitted. So a crash at any point either leaves the prompt unsubmitted and unknown
(submitted once, now), or known (never submitted again). An outcome written but not yet
acknowledged is handed over again and skipped (RESULTS has the line); a partial last
line is cut off and written again. A submit whose answer a crash lost is reported as
``submit-uncertain``, never resubmitted: the task may exist at the service.

When every prompt has its line, the state file is removed: RESULTS alone says the batch
is complete, and running the same command again does nothing.
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import anyio
import anyio.abc
import attrs

from .._client import DispatchClient
from .._errors import BadRequestError, SubmitUncertainError
from .._outcome import Outcome, OutcomeKind
from .._poller import Poller
from ..sqlite import SQLiteStore
from ._exit import CommandError, ExitCode
from ._output import Redactor, RunProgress
from ._program import PROG
from ._prompts import Prompt, Prompts, parse_prompts
from ._results import ResultsFile, result_document

__all__ = ["run_batch", "state_path"]

#: The key of a task's context in the state file: its prompt's index, and the input's
#: fingerprint (a state file of another input is refused).
_INDEX: Final = "i"
_DIGEST: Final = "d"
_STATE_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")


def state_path(args: argparse.Namespace) -> Path:
    """``--state``, else RESULTS with ``.state`` added, in the same directory."""
    if args.state is not None:
        return Path(args.state)
    out = Path(args.out)
    return out.with_name(out.name + ".state")


def _read_prompts(args: argparse.Namespace, stdin: TextIO) -> Prompts:
    if args.prompts == "-":
        return parse_prompts(stdin, fmt=args.format, name="stdin")
    try:
        with open(args.prompts, encoding="utf-8") as lines:
            return parse_prompts(lines, fmt=args.format, name=args.prompts)
    except OSError as exc:
        raise CommandError(f"cannot read {args.prompts!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{args.prompts!r} is not UTF-8 text: {exc}") from None


def _with_defaults(entry: Prompt, args: argparse.Namespace) -> Prompt:
    """The command's --execution-mode and --browser-window-id where a line sets none."""
    options = entry.options
    if args.execution_mode is not None and options.execution_mode is None:
        options = attrs.evolve(options, execution_mode=args.execution_mode)
    if args.browser_window_id is not None and options.browser_window_id is None:
        options = attrs.evolve(options, browser_window_id=args.browser_window_id)
    return attrs.evolve(entry, options=options) if options is not entry.options else entry


def _index_of(context: Any, digest: str) -> int | None:
    """The prompt a state-file context names, if it is one of this input's."""
    if isinstance(context, dict) and context.get(_DIGEST) == digest:
        index = context.get(_INDEX)
        if isinstance(index, int):
            return index
    return None


@attrs.define
class _Batch:
    """One run of the batch: what it submits, what it writes, how far it is."""

    prompts: Prompts
    results: ResultsFile
    store: SQLiteStore
    poller: Poller
    progress: RunProgress
    todo: list[Prompt] = attrs.Factory(list)
    #: Set by the first Ctrl-C (or SIGTERM): submit no more, then stop.
    stopping: anyio.Event = attrs.Factory(anyio.Event)
    interrupted: bool = False
    #: Submits in flight now.
    in_submit: int = 0
    repeats: int = 0

    @property
    def complete(self) -> bool:
        return len(self.results.kinds) == len(self.prompts.entries)

    async def submit_all(self, scope: anyio.CancelScope, concurrency: int) -> None:
        """Submit every prompt left, `concurrency` at a time, in order of their lines,
        under the poller's one budget. After a Ctrl-C, the submits in flight finish (so
        each has a known answer) and no other starts; then `scope` is cancelled."""
        todo = iter(self.todo)
        async with anyio.create_task_group() as submitters:
            for _ in range(concurrency):
                submitters.start_soon(self._submit_from, todo)
        if self.stopping.is_set():
            scope.cancel()

    async def _submit_from(self, todo: Iterator[Prompt]) -> None:
        digest = self.prompts.digest
        for entry in todo:
            if self.stopping.is_set():
                return
            context = {_INDEX: entry.index, _DIGEST: digest}
            self.in_submit += 1
            try:
                async with self.store.submitting(context):
                    await self.poller.submit(
                        entry.prompt, entry.options, deadline=entry.deadline, context=context
                    )
            except SubmitUncertainError:
                pass  # the store made it this prompt's SUBMIT_UNCERTAIN outcome
            except BadRequestError as exc:
                # This prompt's request was refused (400/422): no task, one FAILED line.
                await self.store.reject(_refused(exc, context))
            finally:
                self.in_submit -= 1
            self.progress.submitted += 1

    async def write_results(self) -> None:
        """Write one line per final outcome, until every prompt has one."""
        entries, digest = self.prompts.entries, self.prompts.digest
        async for outcome in self.poller.results(forever=True):
            if not outcome.final:
                self.progress.asked += 1
                continue
            index = _index_of(outcome.context, digest)
            if index is None or index >= len(entries):
                self.progress.note(
                    f"{PROG}: ignoring an outcome that names no prompt of this input "
                    f"({outcome.kind.value} {outcome.request_id or '(no id)'})"
                )
                continue
            if index in self.results.kinds:
                self.repeats += 1  # written before a crash, not acknowledged: skip
                continue
            self.results.append(result_document(outcome, entries[index]))
            self.progress.result(outcome.kind.value)
            if self.complete:
                return

    async def watch_signals(self, scope: anyio.CancelScope) -> None:
        """First Ctrl-C or SIGTERM: finish the submit in flight, then stop (every submit
        then has a known answer). A second one: stop now."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.interrupted:
                    scope.cancel()
                    return
                self.interrupted = True
                self.stopping.set()
                if not self.in_submit:
                    scope.cancel()
                    return
                self.progress.note(
                    f"{PROG}: stopping after the submits in flight (again to stop now)"
                )

    async def tick(self) -> None:
        while True:
            await anyio.sleep(self.progress.interval)
            self.progress.tick()


def _refused(error: BadRequestError, context: dict[str, Any]) -> Outcome:
    return Outcome(
        request_id="",
        kind=OutcomeKind.FAILED,
        status=None,
        error=error,
        context=context,
        polls=0,
        elapsed=0.0,
    )


def _accounted(batch: _Batch, state: Path) -> set[int]:
    """The prompts the state file knows (tracked, outcome waiting, submit cut short)."""
    known: set[int] = set()
    digest, total = batch.prompts.digest, len(batch.prompts.entries)
    for context in batch.store.resumed_contexts:
        index = _index_of(context, digest)
        if index is None or index >= total:
            raise CommandError(
                f"the state file {str(state)!r} holds tasks of another PROMPTS input (or of "
                "another program): resume with the input it was made from, or give --state "
                "a new path"
            )
        known.add(index)
    return known


def exit_code_of_results(kinds: Sequence[str]) -> ExitCode:
    """0 when every prompt succeeded; 10 when a submit is uncertain (look before
    resubmitting); else 1."""
    if all(kind == OutcomeKind.SUCCESS.value for kind in kinds):
        return ExitCode.OK
    if OutcomeKind.SUBMIT_UNCERTAIN.value in kinds:
        return ExitCode.SUBMIT_UNCERTAIN
    return ExitCode.TASK_FAILED


async def run_batch(
    args: argparse.Namespace, client: DispatchClient, err: Redactor, stdin: TextIO
) -> int:
    """The ``run`` command: everything but the results goes to stderr."""
    prompts = _read_prompts(args, stdin)
    prompts = Prompts([_with_defaults(e, args) for e in prompts.entries], prompts.digest)
    results, state = _open_files(args, prompts)
    try:
        return await _run(args, client, err, prompts, results, state)
    finally:
        results.close()


def _open_files(args: argparse.Namespace, prompts: Prompts) -> tuple[ResultsFile, Path]:
    """RESULTS, read back and open for appending; and where the state file is."""
    out_path, state = Path(args.out), state_path(args)
    if state.resolve() == out_path.resolve():
        raise CommandError("--state must not be the --out file")
    if state.exists() and not out_path.exists():
        raise CommandError(
            f"the state file {str(state)!r} exists but {str(out_path)!r} does not: the "
            "results written so far are gone, and resuming would submit their prompts "
            "again. Restore the results file, or remove the state file to start afresh"
        )
    results = ResultsFile(out_path, fsync=args.fsync)
    results.open(prompts)
    return results, state


async def _run(
    args: argparse.Namespace,
    client: DispatchClient,
    err: Redactor,
    prompts: Prompts,
    results: ResultsFile,
    state: Path,
) -> int:
    total = len(prompts.entries)
    progress = RunProgress(
        err,
        total,
        interval=args.progress_interval if not err.isatty() else 0.5,
        clock=anyio.current_time,
    )
    for kind in results.kinds.values():
        progress.result(kind, here=False)
    if len(results.kinds) == total:
        _remove_state(state)
        progress.note(f"{PROG}: all {total} prompts already have results in {args.out}")
        return exit_code_of_results(list(results.kinds.values()))
    store = SQLiteStore(state)
    poller = Poller(
        client,
        store=store,
        rate=args.rate,
        burst=max(1, math.ceil(args.rate)),
        deadline=args.deadline,
        initial_interval=args.interval,
        max_interval=args.max_interval,
    )
    async with poller:
        batch = _Batch(prompts, results, store, poller, progress)
        known = _accounted(batch, state)
        accounted = known | results.kinds.keys()
        batch.todo = [e for e in prompts.entries if e.index not in accounted]
        progress.submitted = total - len(batch.todo)
        if results.kinds or known:
            progress.note(
                f"{PROG}: resuming: {len(results.kinds)} results in {args.out}, "
                f"{len(known - results.kinds.keys())} prompts in the state file, "
                f"{len(batch.todo)} to submit"
                + (" (a partial last line was cut off)" if results.cut else "")
            )
        try:
            async with anyio.create_task_group() as group:
                if threading.current_thread() is threading.main_thread():
                    group.start_soon(batch.watch_signals, group.cancel_scope)
                group.start_soon(batch.tick)
                group.start_soon(batch.submit_all, group.cancel_scope, args.concurrency)
                await batch.write_results()
                group.cancel_scope.cancel()
        finally:
            progress.stop()
    if batch.interrupted or not batch.complete:
        left = total - len(results.kinds)
        err.line(
            f"{PROG}: interrupted; {len(results.kinds)} of {total} prompts have results, "
            f"{left} to go: run the same command again to resume (state in {state})"
        )
        return ExitCode.INTERRUPTED
    _remove_state(state)
    kinds = list(results.kinds.values())
    uncertain = kinds.count(OutcomeKind.SUBMIT_UNCERTAIN.value)
    if uncertain:
        err.line(
            f"{PROG}: {uncertain} submit{'s' if uncertain != 1 else ''} may or may not have "
            "created a task (kind submit-uncertain): look at the service before "
            "submitting those prompts again"
        )
    return exit_code_of_results(kinds)


def _remove_state(state: Path) -> None:
    """RESULTS is complete: the state file has nothing left to resume."""
    for suffix in _STATE_SUFFIXES:
        state.with_name(state.name + suffix).unlink(missing_ok=True)
