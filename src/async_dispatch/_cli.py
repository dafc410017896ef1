"""The ``async-dispatch`` command: submit, inspect and wait for tasks; run the simulator;
watch a fleet (``fleet``).

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
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final, TextIO
from urllib.parse import urlsplit

import anyio
import httpx

from ._cli_output import (
    Display,
    Redactor,
    fleet_lines,
    fleet_renderable,
    have_rich,
    make_display,
    one_line,
    outcome_detail,
    status_lines,
)
from ._client import DispatchClient
from ._config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    configured_api_key,
    configured_base_url,
)
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
from ._validation import check_base_url, is_loopback_host
from ._version import __version__
from .testing._config import Durations, SimulatorConfig

if TYPE_CHECKING:
    from .redis import FleetView

__all__ = ["ExitCode", "build_parser", "main", "run"]

PROG: Final = "async-dispatch"
DISTRIBUTION: Final = "async-remote-dispatch"
#: What to install for the commands that need more than the core (uvicorn, rich).
CLI_EXTRA_HINT: Final = f"pip install '{DISTRIBUTION}[cli]'"
REDIS_EXTRA_HINT: Final = f"pip install '{DISTRIBUTION}[redis]'"
#: Where `fleet` finds its Redis when --redis-url is not given (then $REDIS_URL).
REDIS_URL_ENV: Final = "DISPATCH_REDIS_URL"
#: The simulator's defaults are the library's: `simulate`, `run_forever()` and the
#: pytest fixtures serve the same service unless told otherwise.
_SIM_DEFAULTS: Final = SimulatorConfig()
_SIM_PORT: Final = 8000


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


def _add_connection_options(parser: argparse.ArgumentParser, *, with_defaults: bool) -> None:
    """The options every talking command takes, before or after the command's name.

    The top-level parser holds the defaults; each command's copy defaults to SUPPRESS so
    that ``async-dispatch --base-url URL status ID`` keeps the URL given first (argparse
    would otherwise overwrite it with the command's own default).
    """

    def default(value: object) -> object:
        return value if with_defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection (also accepted before the command)")
    group.add_argument(
        "--api-key",
        default=default(None),
        help=f"the service key (default: ${API_KEY_ENV}; prefer the variable: "
        "arguments are visible to other users of the machine)",
    )
    group.add_argument(
        "--base-url",
        default=default(None),
        help=f"the service's base URL (default: ${BASE_URL_ENV}, then {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        default=default(False),
        help="allow plain http:// to a host other than this machine (sends the key in clear)",
    )
    group.add_argument(
        "--timeout",
        type=_positive,
        default=default(30.0),
        help="seconds per HTTP request (default 30)",
    )
    group.add_argument(
        "--retries",
        type=_non_negative_int,
        default=default(3),
        help="retries of a failed request before giving up (default 3)",
    )


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
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s ({DISTRIBUTION}) {__version__}"
    )
    _add_connection_options(parser, with_defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def talking(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help, description=description)
        _add_connection_options(command, with_defaults=False)
        return command

    submit = talking("submit", help="submit a task and print its request id")
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

    status = talking("status", help="show a task's status")
    status.add_argument("request_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print one JSON document")

    wait = talking(
        "wait",
        help="track tasks until each ends",
        description="Track tasks until each ends. Exit 0 when every task succeeded; 4 when "
        "an id is unknown to the service and 2 when one is malformed (as for `status`); "
        "otherwise 1 if any task failed or timed out.",
    )
    wait.add_argument(
        "ids",
        nargs="+",
        metavar="ID",
        help="request ids; '-' reads them from stdin, separated by any whitespace "
        "('#' starts a comment)",
    )
    wait.add_argument("--json", action="store_true", help="print one JSON line per outcome")
    _tracking_options(wait)

    _simulate_parser(commands)
    _fleet_parser(commands)

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


def _simulate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``simulate``: every default is the library's `SimulatorConfig` default, and says so."""
    simulate = commands.add_parser(
        "simulate",
        help="run the Remote Dispatch simulator over HTTP until Ctrl-C",
        description="Serve the Remote Dispatch simulator (the one async_dispatch.testing "
        "runs in process) over HTTP until Ctrl-C. It prints the two variables to export.",
    )
    defaults = _SIM_DEFAULTS
    simulate.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    simulate.add_argument(
        "--port",
        type=_non_negative_int,
        default=_SIM_PORT,
        help=f"port (default {_SIM_PORT}; 0 picks a free one)",
    )
    simulate.add_argument("--seed", type=int, help="fix every random choice (default: random)")
    simulate.add_argument(
        "--api-key",
        "--key",
        dest="api_key",
        default=argparse.SUPPRESS,
        help=f"the API key it accepts (default {defaults.default_key})",
    )
    simulate.add_argument(
        "--rate",
        type=_positive,
        help="server-side limit in requests per second per key (default: no limit)",
    )
    simulate.add_argument("--burst", type=int, default=10, help="burst of that limit (default 10)")
    simulate.add_argument(
        "--fault-rate",
        type=_probability,
        default=0.0,
        help="share of status reads that fail: 5xx, HTML pages, truncated or dropped "
        "bodies (default 0)",
    )
    simulate.add_argument(
        "--time-scale",
        type=_positive,
        default=defaults.time_scale,
        help="real seconds per simulated second; 0.1 runs ten times faster "
        f"(default {defaults.time_scale:g})",
    )
    simulate.add_argument(
        "--median",
        type=_positive,
        default=defaults.durations.median,
        help=f"median task duration in simulated seconds (default {defaults.durations.median:g})",
    )
    simulate.add_argument("--json", action="store_true", help="print the address as JSON")


def _fleet_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``fleet``: a live view of one fleet's state in Redis (needs the ``redis`` extra)."""
    fleet = commands.add_parser(
        "fleet",
        help="show a fleet's state in Redis: tasks, claims, outcomes, budget, pause",
        description="Read the state that the replicas of one fleet share in Redis (fleet "
        "mode: RedisStore and RedisTokenBucket with the same name) and show it: tasks "
        "tracked and due, checks claimed and by which replica, outcomes waiting, submits "
        "in flight, the budget in use and any 429 pause. On a terminal the view refreshes "
        "every --interval seconds until Ctrl-C; elsewhere it prints once (--watch: again "
        "every interval). Exit 5 when Redis cannot be reached.",
    )
    fleet.add_argument(
        "--redis-url",
        help=f"the fleet's Redis (default: ${REDIS_URL_ENV}, then $REDIS_URL; prefer the "
        "variables when the URL holds a password). The password is never printed",
    )
    fleet.add_argument("--name", required=True, help="the fleet's name (RedisStore's name=)")
    fleet.add_argument(
        "--rate",
        type=_positive,
        help="the bucket's rate, to count the budget in tokens (default: shown in seconds)",
    )
    fleet.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (with --watch: one line per interval)",
    )
    fleet.add_argument(
        "--watch", action="store_true", help="print again every interval, also when piped"
    )
    fleet.add_argument(
        "--once", action="store_true", help="on a terminal: print once, no live view"
    )
    fleet.add_argument(
        "--interval", type=_positive, default=1.0, help="seconds between reads (default 1)"
    )
    fleet.add_argument(
        "--count",
        type=_non_negative_int,
        default=0,
        help="stop after this many reads (default 0: until Ctrl-C)",
    )


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
    talking = args.command in ("submit", "status", "wait")
    key = configured_api_key(args.api_key, environ) if talking else None
    key = key.strip() if key is not None else None
    base_url = configured_base_url(args.base_url, environ)
    secret = key
    if args.command == "fleet":
        secret = _redis_password(_redis_url(args, environ))
    out, err = Redactor(stdout, secret), Redactor(stderr, secret)
    try:
        with _library_logging(err, quiet=args.command == "demo"):
            if args.command == "simulate":
                _require_cli_extra("simulate")
                return await _simulate(args, out)
            if args.command == "demo":
                _require_cli_extra("demo")
                from ._demo import run_demo  # the demo pulls in the simulator

                return await run_demo(
                    tasks=args.tasks,
                    seed=args.seed,
                    rate=args.rate,
                    time_scale=args.time_scale,
                    json_output=args.json,
                    out=out,
                )
            if args.command == "fleet":
                return await _fleet(args, out, _redis_url(args, environ))
            async with _open_client(args, _require(key), base_url, transport) as client:
                if args.command == "submit":
                    return await _submit(args, client, out, err)
                if args.command == "status":
                    return await _status(args, client, out)
                return await _wait(args, client, out, stdin)
    except Exception as exc:
        expected = _expected_failure(exc)
        if expected is None:
            raise
        err.line(f"{PROG}: error: {_error_line(expected, base_url)}")
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


#: aiohttp names the TLS context it would use even for plain http://; noise to a user.
_SSL_DEFAULT: Final = re.compile(r"\s*ssl:default")


def _error_line(error: Exception, base_url: str) -> str:
    """The one line that reports `error`, with what to check when the host is unreachable."""
    text = one_line(str(error)) or "unknown error"
    if isinstance(error, TransportError):
        if base_url.startswith("http://"):
            text = _SSL_DEFAULT.sub("", text)
        text += f". Is the service running at {base_url}? Check --base-url or ${BASE_URL_ENV}"
    return text


def _require(key: str | None) -> str:
    if key is None:
        raise _CommandError(f"no API key: pass --api-key or set {API_KEY_ENV}")
    return key


def _require_cli_extra(command: str) -> None:
    """`simulate` and `demo` serve over HTTP with uvicorn, which only the extra installs."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise _CommandError(f"`{PROG} {command}` needs the cli extra: {CLI_EXTRA_HINT}") from None


#: Library events the CLI reports itself, as its one error line.
_REPORTED_EVENTS: Final = frozenset({"api_key_refused"})


def _not_reported_by_the_cli(record: logging.LogRecord) -> bool:
    """Drop the events that the command's own error line already tells."""
    message = record.msg
    event = message.get("event") if isinstance(message, dict) else str(message)
    return not any(name in str(event) for name in _REPORTED_EVENTS)


@contextlib.contextmanager
def _library_logging(err: Redactor, *, quiet: bool) -> Iterator[None]:
    """Show the library's warnings (errors only when `quiet`) on stderr for this command.

    A handler is attached to the ``async_dispatch`` logger for the command's duration
    and removed afterwards: nothing global is configured, so a program that embeds
    `run()` keeps its own logging exactly as it was.
    """
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.ERROR if quiet else logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler.addFilter(_not_reported_by_the_cli)
    library = logging.getLogger("async_dispatch")
    library.addHandler(handler)
    try:
        yield
    finally:
        library.removeHandler(handler)


@contextlib.asynccontextmanager
async def _open_client(
    args: argparse.Namespace,
    key: str,
    base_url: str,
    transport: httpx.AsyncBaseTransport | None,
) -> AsyncIterator[DispatchClient]:
    _check_base_url(base_url, allow_insecure=args.allow_insecure)
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
            allow_insecure=args.allow_insecure,
        )
        yield await stack.enter_async_context(client)


def _check_base_url(base_url: str, *, allow_insecure: bool) -> None:
    """The library's check, with the remedy a shell user has: a flag, not a keyword."""
    url = httpx.URL(base_url) if "://" in base_url else None
    if (
        url is not None
        and url.scheme == "http"
        and not allow_insecure
        and url.host
        and not is_loopback_host(url.host)
    ):
        raise _CommandError(
            f"refusing plain http:// to {url.host!r}: the API key would travel unencrypted. "
            "Use https://, or pass --allow-insecure if you really mean it"
        )
    check_base_url(base_url, allow_insecure=allow_insecure)


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
        out.json(final.as_dict())
    elif final.status is not None and final.kind in (OutcomeKind.SUCCESS, OutcomeKind.ERROR):
        for line in status_lines(final.status):
            out.line(line)
    else:
        out.line(f"{final.request_id}: {final.kind.value}: {outcome_detail(final)}")
    return _exit_code_of([final], expected=1)


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
        out.json(status.as_dict())
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
    return _exit_code_of(finals, expected=len(ids))


def _exit_code_of(finals: Sequence[Outcome], *, expected: int) -> ExitCode:
    """0 when all `expected` tasks succeeded; else what `status` would say about the first
    task that could not be tracked (4 unknown id, 2 malformed id); else 1."""
    if len(finals) == expected and all(o.kind is OutcomeKind.SUCCESS for o in finals):
        return ExitCode.OK
    for outcome in finals:
        if outcome.kind is OutcomeKind.FAILED and isinstance(outcome.error, DispatchError):
            return exit_code_for(outcome.error)
    return ExitCode.TASK_FAILED


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
    from .testing import Faults, RateLimit, serve

    key = args.api_key or _SIM_DEFAULTS.default_key
    fault = args.fault_rate
    try:
        config = SimulatorConfig(
            api_keys=key,
            seed=args.seed,
            time_scale=args.time_scale,
            durations=_durations(args.median),
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


def _redis_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    return args.redis_url or environ.get(REDIS_URL_ENV) or environ.get("REDIS_URL") or None


def _redis_password(url: str | None) -> str | None:
    """The password in `url`, to mask in every output: only when long enough that masking
    it cannot mangle ordinary figures (the view itself never prints it anyway)."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return password if password is not None and len(password) >= 4 else None


async def _fleet(args: argparse.Namespace, out: Redactor, url: str | None) -> int:
    """Read the fleet's state once, or every interval, and show it."""
    try:
        from .redis import CoordinationError, RedisConnection, read_fleet
    except ImportError:
        raise _CommandError(f"`{PROG} fleet` needs the redis extra: {REDIS_EXTRA_HINT}") from None
    if url is None:
        raise _CommandError(f"no Redis URL: pass --redis-url or set {REDIS_URL_ENV}")
    if "{" in args.name or "}" in args.name:
        raise _CommandError(f"--name must not contain braces: {args.name!r}")
    connection = RedisConnection(url)
    live = not args.json and not args.once and out.isatty() and have_rich()
    repeat = args.watch or live
    try:
        async with connection:
            reads = 0

            async def each(show: Callable[[FleetView], None]) -> None:
                nonlocal reads
                while True:
                    show(await read_fleet(connection, args.name, rate=args.rate))
                    reads += 1
                    if not repeat or (args.count and reads >= args.count):
                        return
                    await anyio.sleep(args.interval)

            if args.json:
                await each(lambda view: out.json(view.as_dict()))
            elif live:
                from rich.live import Live

                console = out.console()
                with Live(console=console, auto_refresh=False, transient=False) as screen:
                    await each(
                        lambda view: screen.update(
                            fleet_renderable(view, connection.url), refresh=True
                        )
                    )
            elif out.isatty() and have_rich():
                console = out.console()
                await each(lambda view: console.print(fleet_renderable(view, connection.url)))
            else:
                await each(lambda view: _print_lines(out, fleet_lines(view, connection.url)))
    except CoordinationError as exc:
        raise _CommandError(str(exc), ExitCode.UNREACHABLE) from None
    return ExitCode.OK


def _print_lines(out: Redactor, lines: Sequence[str]) -> None:
    for line in lines:
        out.line(line)


def _durations(median: float) -> Durations:
    """The library's default spread around `median`, with room above it for the tail."""
    default = _SIM_DEFAULTS.durations
    return Durations(
        median=median,
        sigma=default.sigma,
        minimum=min(default.minimum, median),
        maximum=max(default.maximum, median * 4),
    )


if __name__ == "__main__":
    sys.exit(main())
