"""The ``async-dispatch`` command: submit, inspect and wait for tasks; run the simulator.

Two promises shape this module. Expected failures (a bad or missing key, an unreachable
host, an unknown id) end in one line on stderr and an exit code that says which class of
failure it was, never a traceback. And the API key never reaches any output: it is not
echoed in errors, and every stream the commands write to replaces it with ``***`` in case
the service echoes it back.

`main()` is the console script; `run()` is the same command as a coroutine, for embedding
and for tests that talk to an in-process simulator through `transport`.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import logging
import math
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from typing import Any, Final, TextIO

import anyio
import httpx
import structlog

from ._cli_output import (
    Display,
    Redactor,
    make_display,
    outcome_detail,
    outcome_json,
    status_json,
    status_lines,
)
from ._client import DEFAULT_BASE_URL, DispatchClient
from ._errors import (
    AuthenticationError,
    BadRequestError,
    DispatchError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UsageError,
)
from ._outcome import Outcome, OutcomeKind
from ._poller import Poller
from ._retry import RetryPolicy

__all__ = ["ExitCode", "build_parser", "main", "run"]

PROG: Final = "async-dispatch"
API_KEY_ENV: Final = "DISPATCH_API_KEY"
BASE_URL_ENV: Final = "DISPATCH_BASE_URL"


class ExitCode(enum.IntEnum):
    """The process exit status: one value per class of failure, so scripts can branch."""

    OK = 0
    #: The command worked, but a task ended in error, timed out or could not be tracked.
    TASK_FAILED = 1
    #: Bad arguments or configuration (missing key, insecure URL, malformed id).
    USAGE = 2
    #: The service refused the key (401 or 403).
    AUTH = 3
    #: The service does not know the request id.
    NOT_FOUND = 4
    #: The service could not be reached (refused, reset, timed out).
    UNREACHABLE = 5
    #: Still rate limited after the allowed retries.
    RATE_LIMITED = 6
    #: The service answered with something that is not the documented JSON.
    INVALID_RESPONSE = 7
    #: The service kept answering 5xx.
    SERVER_ERROR = 8
    #: The service rejected the request as malformed (400/422).
    BAD_REQUEST = 9
    #: A submit failed after it was sent: the task may exist. Do not blindly resubmit.
    SUBMIT_UNCERTAIN = 10
    #: Any other error the service answered with.
    API_ERROR = 11
    INTERRUPTED = 130


#: Most specific first: the first matching class decides the exit code.
_EXIT_CODES: Final[tuple[tuple[type[Exception], ExitCode], ...]] = (
    (UsageError, ExitCode.USAGE),
    (AuthenticationError, ExitCode.AUTH),
    (PermissionDeniedError, ExitCode.AUTH),
    (NotFoundError, ExitCode.NOT_FOUND),
    (TransportError, ExitCode.UNREACHABLE),
    (RateLimitedError, ExitCode.RATE_LIMITED),
    (InvalidResponseError, ExitCode.INVALID_RESPONSE),
    (ServerError, ExitCode.SERVER_ERROR),
    (BadRequestError, ExitCode.BAD_REQUEST),
    (SubmitUncertainError, ExitCode.SUBMIT_UNCERTAIN),
    (DispatchError, ExitCode.API_ERROR),
)


def exit_code_for(exc: Exception) -> ExitCode:
    """The exit code for an error the library raised on purpose."""
    for cls, code in _EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return ExitCode.API_ERROR


class _CommandError(Exception):
    """A failure the command itself detected, with its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


# -- the parser -------------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--api-key",
        help=f"the service key (default: ${API_KEY_ENV}; prefer the variable: "
        "arguments are visible to other users of the machine)",
    )
    group.add_argument(
        "--base-url",
        help=f"the service's base URL (default: ${BASE_URL_ENV}, then {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--timeout", type=_positive, default=30.0, help="seconds per HTTP request (default 30)"
    )
    group.add_argument(
        "--retries",
        type=_non_negative_int,
        default=3,
        help="retries of a failed request before giving up (default 3)",
    )
    return parent


def _tracking_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--deadline",
        type=_positive,
        default=600.0,
        help="seconds each task may take before it counts as timed out (default 600)",
    )
    parser.add_argument(
        "--rate", type=_positive, default=10.0, help="status checks per second (default 10)"
    )
    parser.add_argument(
        "--interval",
        type=_positive,
        default=2.0,
        help="seconds before a task's first check (default 2); checks then slow down "
        "as the task ages",
    )
    parser.add_argument(
        "--max-interval",
        type=_positive,
        default=10.0,
        help="the longest gap between two checks of one task (default 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``async-dispatch``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Submit Remote Dispatch tasks, track them, and run a local simulator.",
        epilog="Exit codes: "
        + ", ".join(f"{code.value} {code.name.lower().replace('_', ' ')}" for code in ExitCode),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    connection = _connection_options()

    submit = commands.add_parser(
        "submit", parents=[connection], help="submit a task and print its request id"
    )
    submit.add_argument(
        "prompt", help="the instruction; prefix it with '/Operator ' for the web agent"
    )
    submit.add_argument("--wait", action="store_true", help="then wait for its outcome")
    submit.add_argument("--json", action="store_true", help="print one JSON document")
    submit.add_argument("--execution-mode", choices=("client", "cloud", "cloud_browser"))
    submit.add_argument("--browser-window-id")
    submit.add_argument(
        "--extra",
        metavar="JSON",
        help="a JSON object of further body fields, sent untouched",
    )
    _tracking_options(submit)

    status = commands.add_parser("status", parents=[connection], help="show a task's status")
    status.add_argument("request_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print one JSON document")

    wait = commands.add_parser(
        "wait",
        parents=[connection],
        help="track tasks until each ends; exit 1 if any failed or timed out",
    )
    wait.add_argument("ids", nargs="+", metavar="ID", help="request ids; '-' reads them from stdin")
    wait.add_argument("--json", action="store_true", help="print one JSON line per outcome")
    _tracking_options(wait)

    simulate = commands.add_parser(
        "simulate", help="run the Remote Dispatch simulator over HTTP until Ctrl-C"
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulate.add_argument(
        "--port", type=_non_negative_int, default=8080, help="port (0 picks a free one)"
    )
    simulate.add_argument("--seed", type=int, help="fix every random choice of the run")
    simulate.add_argument("--key", help="the API key it accepts (default: a new random one)")
    simulate.add_argument(
        "--rate", type=_positive, help="server-side limit in requests per second per key"
    )
    simulate.add_argument("--burst", type=int, default=10, help="burst of that limit (default 10)")
    simulate.add_argument(
        "--fault-rate",
        type=_probability,
        default=0.0,
        help="share of status reads that fail (5xx, HTML pages, truncated or dropped bodies)",
    )
    simulate.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="real seconds per simulated second (0.1 runs ten times faster)",
    )
    simulate.add_argument(
        "--median", type=float, default=30.0, help="median task duration, simulated seconds"
    )
    simulate.add_argument("--json", action="store_true", help="print the address as JSON")

    demo = commands.add_parser(
        "demo", help="the whole story in ~25 s: simulator, hundreds of tasks, a summary"
    )
    demo.add_argument("--tasks", type=int, default=300, help="how many tasks (default 300)")
    demo.add_argument("--seed", type=int, help="fix the simulator's and the mix's randomness")
    demo.add_argument(
        "--rate", type=_positive, default=100.0, help="client requests per second (default 100)"
    )
    demo.add_argument(
        "--time-scale",
        type=_positive,
        default=0.1,
        help="real seconds per simulated second (default 0.1); every timing scales with it",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


# -- running ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse `argv`, run the command, return the exit status."""
    args_or_code = _parse(argv, stdout=sys.stdout, stderr=sys.stderr)
    if isinstance(args_or_code, int):
        return args_or_code
    args = args_or_code
    try:
        return anyio.run(
            lambda: _run_parsed(
                args, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin, environ=os.environ
            ),
            backend="asyncio",  # uvicorn, for `simulate` and `demo`, needs asyncio
        )
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return ExitCode.INTERRUPTED


async def run(
    argv: Sequence[str],
    *,
    stdout: TextIO,
    stderr: TextIO,
    stdin: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Run one command on the current event loop and return its exit status.

    `transport`, when given, carries every request of the command (for example
    ``Simulator.transport()``); `environ` replaces ``os.environ`` for configuration.
    ``simulate`` and ``demo`` need the asyncio backend.
    """
    args_or_code = _parse(argv, stdout=stdout, stderr=stderr)
    if isinstance(args_or_code, int):
        return args_or_code
    return await _run_parsed(
        args_or_code,
        stdout=stdout,
        stderr=stderr,
        stdin=stdin if stdin is not None else sys.stdin,
        environ=environ if environ is not None else os.environ,
        transport=transport,
    )


def _parse(
    argv: Sequence[str] | None, *, stdout: TextIO, stderr: TextIO
) -> argparse.Namespace | int:
    """Parse, with argparse's own messages (help, usage errors) going to our streams."""
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            return parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE


async def _run_parsed(
    args: argparse.Namespace,
    *,
    stdout: TextIO,
    stderr: TextIO,
    stdin: TextIO,
    environ: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    key: str | None = None
    if args.command in ("submit", "status", "wait"):
        key = (args.api_key or environ.get(API_KEY_ENV) or "").strip() or None
    out, err = Redactor(stdout, key), Redactor(stderr, key)
    try:
        with _library_logging(err, quiet=args.command == "demo"):
            if args.command == "simulate":
                return await _simulate(args, out)
            if args.command == "demo":
                from ._demo import run_demo  # the demo pulls in the simulator

                return await run_demo(
                    tasks=args.tasks,
                    seed=args.seed,
                    rate=args.rate,
                    time_scale=args.time_scale,
                    json_output=args.json,
                    out=out,
                )
            async with _open_client(args, _require(key), environ, transport) as client:
                if args.command == "submit":
                    return await _submit(args, client, out, err)
                if args.command == "status":
                    return await _status(args, client, out)
                return await _wait(args, client, out, stdin)
    except Exception as exc:
        expected = _expected_failure(exc)
        if expected is None:
            raise
        err.line(f"{PROG}: error: {_one_line(str(expected))}")
        return expected.code if isinstance(expected, _CommandError) else exit_code_for(expected)


def _expected_failure(exc: BaseException) -> _CommandError | DispatchError | None:
    """The failure to report in one line, or None for a bug (which keeps its traceback).

    A task group (the poller's, for one) may wrap the error in an exception group; a
    group made only of expected failures is reported as its first one.
    """
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        found = [_expected_failure(member) for member in inner]
        if all(found):
            return found[0]
        return None
    if isinstance(exc, (_CommandError, DispatchError)):
        return exc
    return None


def _require(key: str | None) -> str:
    if key is None:
        raise _CommandError(f"no API key: pass --api-key or set {API_KEY_ENV}")
    return key


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


#: Library events the CLI reports itself, as its one error line.
_REPORTED_EVENTS: Final = frozenset({"api_key_refused"})


def _drop_reported_events(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    if event.get("event") in _REPORTED_EVENTS:
        raise structlog.DropEvent
    return event


@contextlib.contextmanager
def _library_logging(err: Redactor, *, quiet: bool) -> Any:
    """Send the library's structlog events to stderr (warnings only) for this command.

    structlog's default prints to stdout, which would corrupt ``--json`` output. The
    previous configuration is restored afterwards, so embedding the CLI changes nothing.
    """
    was_configured = structlog.is_configured()
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            _drop_reported_events,
            structlog.processors.add_log_level,
            structlog.processors.KeyValueRenderer(key_order=["level", "event"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.ERROR if quiet else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(file=err),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**previous)
        else:
            structlog.reset_defaults()


@contextlib.asynccontextmanager
async def _open_client(
    args: argparse.Namespace,
    key: str,
    environ: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None,
) -> AsyncIterator[DispatchClient]:
    base_url = args.base_url or environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    async with contextlib.AsyncExitStack() as stack:
        http = None
        if transport is not None:
            http = await stack.enter_async_context(httpx.AsyncClient(transport=transport))
        client = DispatchClient(
            api_key=key,
            base_url=base_url,
            http_client=http,
            timeout=args.timeout,
            retry=RetryPolicy(attempts=args.retries + 1),
        )
        yield await stack.enter_async_context(client)


# -- commands ---------------------------------------------------------------------------------


async def _submit(
    args: argparse.Namespace, client: DispatchClient, out: Redactor, err: Redactor
) -> int:
    extra = None
    if args.extra is not None:
        try:
            extra = json.loads(args.extra)
        except ValueError as exc:
            raise _CommandError(f"--extra is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise _CommandError("--extra must be a JSON object")
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
    if not args.json:
        out.line(request_id)
    final = await _track_one(args, client, request_id, err)
    if args.json:
        out.json(outcome_json(final))
    elif final.status is not None and final.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR):
        for line in status_lines(final.status):
            out.line(line)
    else:
        out.line(f"{final.request_id}: {final.kind.value}: {outcome_detail(final)}")
    return ExitCode.OK if final.kind is OutcomeKind.SUCCESS else ExitCode.TASK_FAILED


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


async def _status(args: argparse.Namespace, client: DispatchClient, out: Redactor) -> int:
    status = await client.get_status(args.request_id)
    if args.json:
        out.json(status_json(status))
    else:
        for line in status_lines(status):
            out.line(line)
    return ExitCode.OK


async def _wait(
    args: argparse.Namespace, client: DispatchClient, out: Redactor, stdin: TextIO
) -> int:
    ids = _expand_ids(args.ids, stdin)
    display: Display = make_display(out, json_lines=args.json)
    finals: list[Outcome] = []
    async with _poller(args, client) as poller:
        await poller.track_many(ids)
        display.start(len(ids))
        try:
            async for outcome in poller:
                display.outcome(outcome)
                if outcome.final:
                    finals.append(outcome)
        finally:
            display.stop()
    order = {request_id: n for n, request_id in enumerate(ids)}
    finals.sort(key=lambda outcome: order.get(outcome.request_id, len(order)))
    display.finish(finals)
    ok = len(finals) == len(ids) and all(o.kind is OutcomeKind.SUCCESS for o in finals)
    return ExitCode.OK if ok else ExitCode.TASK_FAILED


def _expand_ids(ids: Sequence[str], stdin: TextIO) -> list[str]:
    """The ids of the command line, ``-`` replaced by stdin's lines; duplicates dropped."""
    expanded: list[str] = []
    for request_id in ids:
        if request_id == "-":
            expanded.extend(
                line.strip() for line in stdin if line.strip() and not line.startswith("#")
            )
        else:
            expanded.append(request_id)
    if not expanded:
        raise _CommandError("no request ids given (stdin was empty)")
    return list(dict.fromkeys(expanded))


def _poller(args: argparse.Namespace, client: DispatchClient) -> Poller:
    return Poller(
        client,
        rate=args.rate,
        burst=max(1, math.ceil(args.rate)),
        deadline=args.deadline,
        initial_interval=args.interval,
        max_interval=max(args.max_interval, args.interval),
    )


async def _simulate(args: argparse.Namespace, out: Redactor) -> int:
    """Serve the simulator over TCP until SIGINT or SIGTERM."""
    from .testing import Durations, Faults, RateLimit, SimulatorConfig, serve

    key = args.key or f"sim-{secrets.token_hex(8)}"
    fault = args.fault_rate
    try:
        config = SimulatorConfig(
            api_keys=key,
            seed=args.seed,
            time_scale=args.time_scale,
            durations=Durations(median=args.median, sigma=0.5, maximum=max(args.median * 4, 1.0)),
            rate_limit=RateLimit(rate=args.rate, burst=args.burst) if args.rate else None,
            faults=Faults(
                server_error=fault * 0.4,
                html_error=fault * 0.15,
                truncated_json=fault * 0.15,
                drop=fault * 0.15,
                unknown_status=fault * 0.15,
            ),
        )
    except (ValueError, TypeError) as exc:
        raise _CommandError(f"bad simulator setting: {exc}") from None
    async with contextlib.AsyncExitStack() as stack:
        try:
            running = await stack.enter_async_context(serve(config, args.host, args.port))
        except OSError as exc:
            raise _CommandError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        seed = running.simulator.seed
        if args.json:
            out.json({"base_url": running.base_url, "api_key": key, "seed": seed})
        else:
            out.line(f"Remote Dispatch simulator on {running.base_url} (seed {seed})")
            out.line(f"export {BASE_URL_ENV}={running.base_url}")
            out.line(f"export {API_KEY_ENV}={key}")
            out.line("Press Ctrl-C to stop.")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
    if not args.json:
        out.line("simulator stopped")
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
