"""``submit``, ``status`` and ``wait``: the commands that talk to the service about tasks.

``wait`` and ``submit --wait`` track through a `Poller`, as a program would; Ctrl-C ends
them with the ids still open listed on stderr (they go on at the service), so the user
can resume with ``async-dispatch wait``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TextIO

from .._client import DispatchClient
from .._outcome import Outcome, OutcomeKind
from .._poller import Poller
from ._exit import CommandError, ExitCode, exit_code_of
from ._interrupt import Interrupted, until_interrupted
from ._output import (
    Display,
    Redactor,
    make_display,
    outcome_detail,
    status_lines,
    timed_out_detail,
)
from ._program import PROG

__all__ = ["status", "submit", "wait"]


async def submit(
    args: argparse.Namespace, client: DispatchClient, out: Redactor, err: Redactor
) -> int:
    """Submit one task; print its id, and with ``--wait`` its outcome."""
    extra = None
    if args.extra is not None:
        try:
            extra = json.loads(args.extra)
        except ValueError as exc:
            raise CommandError(f"--extra is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise CommandError("--extra must be a JSON object")
    request_id = await client.submit(
        args.prompt,
        execution_mode=args.execution_mode,
        browser_window_id=args.browser_window_id,
        extra=extra,
    )
    if not args.wait:
        if args.json:
            out.json({"request_id": request_id})
        else:
            out.line(request_id)
        return ExitCode.OK

    async def track() -> Outcome:
        if not args.json:  # printed once Ctrl-C is ours: from then on, it lists the id
            out.line(request_id)
        return await _track_one(args, client, request_id, err)

    final = await until_interrupted(track)
    if isinstance(final, Interrupted):
        return _interrupted(err, [request_id])
    if args.json:
        out.json(final.as_dict())
    elif final.status is not None and final.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR):
        for line in status_lines(final.status):
            out.line(line)
    elif final.kind is OutcomeKind.TIMED_OUT:
        detail = timed_out_detail(final, at=datetime.now(timezone.utc))
        out.line(f"{final.request_id}: {final.kind.value}: {detail}")
    else:
        out.line(f"{final.request_id}: {final.kind.value}: {outcome_detail(final)}")
    return exit_code_of([final], expected=1)


async def _track_one(
    args: argparse.Namespace, client: DispatchClient, request_id: str, err: Redactor
) -> Outcome:
    """Poll one task to its final outcome, telling stderr about input requests on the way."""
    async with _poller(args, client) as poller:
        await poller.track(request_id)
        async for outcome in poller:
            if outcome.final:
                return outcome
            err.line(f"{request_id}: input required: {outcome_detail(outcome)}")
    raise AssertionError("the poller ended without a final outcome")  # pragma: no cover


async def status(args: argparse.Namespace, client: DispatchClient, out: Redactor) -> int:
    """Print one task's status."""
    reading = await client.get_status(args.request_id)
    if args.json:
        out.json(reading.as_dict())
    else:
        for line in status_lines(reading):
            out.line(line)
    return ExitCode.OK


async def wait(
    args: argparse.Namespace, client: DispatchClient, out: Redactor, err: Redactor, stdin: TextIO
) -> int:
    """Track every id given until each ends; the exit status sums up how they ended."""
    ids = _expand_ids(args.ids, stdin)
    display: Display = make_display(out, json_lines=args.json)
    finals: list[Outcome] = []
    still_open = dict.fromkeys(ids)

    async def track() -> None:
        async with _poller(args, client) as poller:
            await poller.track_many(ids)
            display.start(len(ids))
            try:
                async for outcome in poller:
                    display.outcome(outcome)
                    if outcome.final:
                        finals.append(outcome)
                        still_open.pop(outcome.request_id, None)
            finally:
                display.stop()

    if isinstance(await until_interrupted(track), Interrupted):
        return _interrupted(err, list(still_open))
    order = {request_id: n for n, request_id in enumerate(ids)}
    finals.sort(key=lambda outcome: order.get(outcome.request_id, len(order)))
    display.finish(finals)
    return exit_code_of(finals, expected=len(ids))


def _interrupted(err: Redactor, still_open: Sequence[str]) -> ExitCode:
    """Say which tasks Ctrl-C left open: they go on at the service, untracked."""
    if still_open:
        noun = "task" if len(still_open) == 1 else "tasks"
        err.line(
            f"{PROG}: interrupted; {len(still_open)} {noun} still open at the service "
            f"(resume with `{PROG} wait ID...`): {' '.join(still_open)}"
        )
    else:
        err.line(f"{PROG}: interrupted; no task was left open")
    return ExitCode.INTERRUPTED


def _expand_ids(ids: Sequence[str], stdin: TextIO) -> list[str]:
    """The ids of the command line, ``-`` replaced by the ids on stdin; duplicates dropped.

    Stdin is split on any whitespace, so ``echo req_1 req_2 | async-dispatch wait -``
    works as well as one id per line; ``#`` starts a comment up to the end of its line.
    """
    expanded: list[str] = []
    for request_id in ids:
        if request_id == "-":
            for line in stdin:
                expanded.extend(line.partition("#")[0].split())
        else:
            expanded.append(request_id)
    if not expanded:
        raise CommandError("no request ids given (stdin was empty)")
    return list(dict.fromkeys(expanded))


def _poller(args: argparse.Namespace, client: DispatchClient) -> Poller:
    """The poller of ``wait`` and ``submit --wait``; the parser put the intervals in order."""
    return Poller(
        client,
        rate=args.rate,
        burst=max(1, math.ceil(args.rate)),
        deadline=args.deadline,
        initial_interval=args.interval,
        max_interval=args.max_interval,
    )
