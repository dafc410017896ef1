"""Running one command: the console script `main()`, the coroutine `run()`, and the one
place where an expected failure becomes a line on stderr and an exit code.

Every stream a command writes to is a `Redactor` that replaces the API key (for `fleet`,
the Redis password) with ``***``, in case the service echoes it back.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Final, TextIO

import anyio
import httpx

from .._config import BASE_URL_ENV, configured_api_key, configured_base_url
from .._errors import TransportError
from . import _fleet, _run, _simulate, _tasks
from ._connection import MIN_API_KEY_LENGTH, allow_insecure, check_api_key, open_client
from ._exit import CommandError, ExitCode, exit_code_for, expected_failure
from ._logging import library_logging
from ._output import Redactor, one_line
from ._parser import parse
from ._program import CLI_EXTRA_HINT, PROG

__all__ = ["main", "run"]

#: The commands that talk to the service, with a key.
_TALKING: Final = frozenset({"submit", "status", "wait", "run"})


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse `argv`, run the command, return the exit status."""
    args_or_code = parse(argv, stdout=sys.stdout, stderr=sys.stderr)
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
    ``simulate`` and ``demo`` need the asyncio backend. In the main thread, ``wait`` and
    ``submit --wait`` take SIGINT while they track (see `_interrupt`), and ``simulate``
    SIGINT and SIGTERM while it serves; each gives the previous handler back when done.
    """
    args_or_code = parse(argv, stdout=stdout, stderr=stderr)
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


def _secret(args: argparse.Namespace, key: str | None, environ: Mapping[str, str]) -> str | None:
    """What every output masks: the key (unless it is refused as too short, when masking
    it would only mangle the error that says so), or for `fleet` the Redis password."""
    if args.command == "fleet":
        return _fleet.redis_password(_fleet.redis_url(args, environ))
    return key if key is not None and len(key) >= MIN_API_KEY_LENGTH else None


async def _run_parsed(
    args: argparse.Namespace,
    *,
    stdout: TextIO,
    stderr: TextIO,
    stdin: TextIO,
    environ: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    key = configured_api_key(args.api_key, environ) if args.command in _TALKING else None
    key = key.strip() if key is not None else None
    base_url = configured_base_url(args.base_url, environ)
    secret = _secret(args, key, environ)
    out, err = Redactor(stdout, secret), Redactor(stderr, secret)
    try:
        with library_logging(err, quiet=args.command == "demo"):
            return await _dispatch(args, key, base_url, out, err, stdin, environ, transport)
    except Exception as exc:
        expected = expected_failure(exc)
        if expected is None:
            raise
        err.line(f"{PROG}: error: {_error_line(expected, base_url)}")
        return expected.code if isinstance(expected, CommandError) else exit_code_for(expected)


async def _dispatch(
    args: argparse.Namespace,
    key: str | None,
    base_url: str,
    out: Redactor,
    err: Redactor,
    stdin: TextIO,
    environ: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None,
) -> int:
    """Run the command `args` names, on streams already redacted."""
    if args.command == "simulate":
        _require_cli_extra("simulate")
        return await _simulate.simulate(args, out)
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
        return await _fleet.fleet(args, out, _fleet.redis_url(args, environ))
    insecure = allow_insecure(args, environ)
    async with open_client(
        args,
        check_api_key(key),
        base_url,
        insecure=insecure,
        transport=transport,
        environ=environ,
    ) as client:
        if args.command == "submit":
            return await _tasks.submit(args, client, out, err)
        if args.command == "status":
            return await _tasks.status(args, client, out)
        if args.command == "run":
            return await _run.run_batch(args, client, err, stdin)
        return await _tasks.wait(args, client, out, err, stdin)


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


def _require_cli_extra(command: str) -> None:
    """`simulate` and `demo` serve over HTTP with uvicorn, which only the extra installs."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise CommandError(f"`{PROG} {command}` needs the cli extra: {CLI_EXTRA_HINT}") from None
