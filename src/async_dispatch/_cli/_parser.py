"""The argument parser of ``async-dispatch``: every command's options and their checks.

Values are checked here, where argparse can still answer with the usage line: a number
that must be positive, a port that must fit in 16 bits, two intervals that must be in
order. Each command's module then receives a namespace it can trust.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Final, TextIO

from .._config import ALLOW_INSECURE_ENV, API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from .._version import __version__
from ..testing._config import SimulatorConfig
from ._exit import ExitCode
from ._program import DISTRIBUTION, PROG

__all__ = ["FLEET_REDIS_URL_ENV", "SIM_DEFAULTS", "build_parser", "parse"]

#: Where `fleet` finds its Redis when --redis-url is not given (then $REDIS_URL).
FLEET_REDIS_URL_ENV: Final = "DISPATCH_REDIS_URL"
#: The simulator's defaults are the library's: `simulate`, `run_forever()` and the
#: pytest fixtures serve the same service unless told otherwise.
SIM_DEFAULTS: Final = SimulatorConfig()
_SIM_PORT: Final = 8000
#: The tracking commands' cadence when neither option is given.
_INTERVAL: Final = 2.0
_MAX_INTERVAL: Final = 10.0
_HIGHEST_PORT: Final = 65535


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


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > _HIGHEST_PORT:
        raise argparse.ArgumentTypeError(
            f"must be a port from 0 to {_HIGHEST_PORT} (0 picks a free one), got {text!r}"
        )
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
        help="allow plain http:// to a host other than this machine (sends the key in "
        f"clear; also: {ALLOW_INSECURE_ENV}=1)",
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
    """The cadence and budget of ``wait`` and ``submit --wait``. The command's parser
    travels in the namespace (as ``_cadence_of``) until `parse` has checked the intervals
    with it, so a usage error shows that command's usage line."""
    parser.set_defaults(_cadence_of=parser)
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
        help=f"seconds before a task's first check (default {_INTERVAL:g}); checks then "
        "slow down as the task ages",
    )
    parser.add_argument(
        "--max-interval",
        type=_positive,
        help=f"the longest gap between two checks of one task (default {_MAX_INTERVAL:g}, "
        "or --interval when that is longer); at least --interval",
    )


def _resolve_intervals(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in the cadence: two explicit intervals out of order are a usage error; a
    default is never the reason for one (``--interval 30`` alone raises the maximum)."""
    interval, longest = args.interval, args.max_interval
    if interval is not None and longest is not None and longest < interval:
        parser.error(
            f"--max-interval ({longest:g}) must be at least --interval ({interval:g}): "
            "the checks of a task never come closer together than its first one"
        )
    args.interval = _INTERVAL if interval is None else interval
    if longest is None:
        longest = max(_MAX_INTERVAL, args.interval) if interval is not None else _MAX_INTERVAL
    args.max_interval = longest


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
        "otherwise 1 if any task failed or timed out. On Ctrl-C, the ids still open are "
        f"listed on stderr and the exit status is {ExitCode.INTERRUPTED.value}.",
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

    _run_parser(talking)
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


def _run_parser(talking: Callable[..., argparse.ArgumentParser]) -> None:
    """``run``: a batch of prompts to a results file, resumable (see `_cli._run`)."""
    run = talking(
        "run",
        help="submit a batch of prompts and write one JSON line per outcome; resumable",
        description="Submit every prompt of PROMPTS and track them under one budget, "
        "writing one JSON line per prompt to RESULTS as each ends. Stopped by Ctrl-C, "
        "kill -9 or a reboot, the same command resumes from its state file (RESULTS.state "
        "beside RESULTS, or --state) and never submits a prompt twice: a submit whose "
        "answer was lost is reported as submit-uncertain. PROMPTS holds one prompt per "
        'line, or JSON Lines: {"prompt": ..., "options": {...}, "context": ..., '
        '"deadline": seconds}. Progress goes to stderr; stdout stays empty. Exit 0 when '
        f"every prompt succeeded, {ExitCode.SUBMIT_UNCERTAIN.value} when a submit is "
        f"uncertain, 1 when any other failed, {ExitCode.INTERRUPTED.value} when "
        "interrupted (run again to resume).",
    )
    run.add_argument(
        "prompts", metavar="PROMPTS", help="the prompts file; '-' reads them from stdin"
    )
    run.add_argument(
        "--out", "-o", required=True, metavar="RESULTS", help="the results file (JSON Lines)"
    )
    run.add_argument(
        "--state",
        metavar="PATH",
        help="the state file (SQLite; default: RESULTS.state beside RESULTS); removed "
        "when every prompt has its result",
    )
    run.add_argument(
        "--format",
        choices=("auto", "text", "jsonl"),
        default="auto",
        help="how PROMPTS is written (default auto: JSON Lines when its first non-blank "
        "line starts with '{', else one prompt per line)",
    )
    run.add_argument(
        "--execution-mode",
        choices=("client", "cloud", "cloud_browser"),
        help="for every prompt whose options do not say",
    )
    run.add_argument("--browser-window-id", help="for every prompt whose options do not say")
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="submits in flight at once (default 4); they share the --rate budget",
    )
    run.add_argument(
        "--fsync",
        action="store_true",
        help="sync each result line to the disk before going on (survives a power cut, "
        "at a cost per line; a crash or kill -9 loses nothing without it)",
    )
    run.add_argument(
        "--progress-interval",
        type=_positive,
        default=10.0,
        help="seconds between progress lines when stderr is not a terminal (default 10)",
    )
    _tracking_options(run)


def _simulate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``simulate``: every default is the library's `SimulatorConfig` default, and says so."""
    simulate = commands.add_parser(
        "simulate",
        help="run the Remote Dispatch simulator over HTTP until Ctrl-C",
        description="Serve the Remote Dispatch simulator (the one async_dispatch.testing "
        "runs in process) over HTTP until Ctrl-C. It prints the variables to export, for "
        "this library and for the official SDK.",
    )
    defaults = SIM_DEFAULTS
    simulate.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    simulate.add_argument(
        "--port",
        type=_port,
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
        "every interval). Exit 5 when Redis cannot be reached, "
        f"{ExitCode.NO_SUCH_FLEET.value} when nothing exists under --name.",
    )
    fleet.add_argument(
        "--redis-url",
        help=f"the fleet's Redis (default: ${FLEET_REDIS_URL_ENV}, then $REDIS_URL; prefer "
        "the variables when the URL holds a password). The password is never printed",
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


def parse(
    argv: Sequence[str] | None, *, stdout: TextIO, stderr: TextIO
) -> argparse.Namespace | int:
    """Parse, with argparse's own messages (help, usage errors) going to our streams;
    an int is the exit status when parsing already ended the command."""
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
            command: argparse.ArgumentParser | None = vars(args).pop("_cadence_of", None)
            if command is not None:
                _resolve_intervals(command, args)
            return args
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
