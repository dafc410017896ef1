"""``fleet``: what one fleet's replicas share in Redis, read once or every interval.

A name that holds nothing is not shown as an idle fleet (all zeros, which is what it
reads as): the command says that no fleet of that name exists there, names a few that
do, and exits with `ExitCode.NO_SUCH_FLEET`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from ._exit import CommandError, ExitCode
from ._output import Redactor, fleet_lines, fleet_renderable, have_rich
from ._parser import FLEET_REDIS_URL_ENV
from ._program import PROG, REDIS_EXTRA_HINT

if TYPE_CHECKING:
    from ..redis import FleetView, RedisConnection

__all__ = ["fleet", "redis_password", "redis_url"]


def redis_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """``--redis-url``, else ``$DISPATCH_REDIS_URL``, else ``$REDIS_URL``."""
    return args.redis_url or environ.get(FLEET_REDIS_URL_ENV) or environ.get("REDIS_URL") or None


def redis_password(url: str | None) -> str | None:
    """The password in `url`, to mask in every output: only when long enough that masking
    it cannot mangle ordinary figures (the view itself never prints it anyway)."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return password if password is not None and len(password) >= 4 else None


async def fleet(args: argparse.Namespace, out: Redactor, url: str | None) -> int:
    """Read the fleet's state once, or every interval, and show it."""
    try:
        from ..redis import CoordinationError, RedisConnection, read_fleet
    except ImportError:
        raise CommandError(f"`{PROG} fleet` needs the redis extra: {REDIS_EXTRA_HINT}") from None
    if url is None:
        raise CommandError(f"no Redis URL: pass --redis-url or set {FLEET_REDIS_URL_ENV}")
    if "{" in args.name or "}" in args.name:
        raise CommandError(f"--name must not contain braces: {args.name!r}")
    connection = RedisConnection(url)
    live = not args.json and not args.once and out.isatty() and have_rich()
    repeat = args.watch or live
    try:
        async with connection:
            first = await read_fleet(connection, args.name, rate=args.rate)
            if not first.found:
                await _no_such_fleet(connection, args.name)
            reads = 0

            async def each(show: Callable[[FleetView], None]) -> None:
                nonlocal reads
                view = first
                while True:
                    show(view)
                    reads += 1
                    if not repeat or (args.count and reads >= args.count):
                        return
                    await anyio.sleep(args.interval)
                    view = await read_fleet(connection, args.name, rate=args.rate)

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
        raise CommandError(str(exc), ExitCode.UNREACHABLE) from None
    return ExitCode.OK


async def _no_such_fleet(connection: RedisConnection, name: str) -> None:
    """Raise the error for a name that holds nothing, with a few names that do."""
    from ..redis._fleet_view import fleet_names

    names = await fleet_names(connection)
    hint = f"fleets there: {', '.join(names)}" if names else "no fleet keys found there"
    raise CommandError(
        f"no fleet named {name!r} in {connection.url}; check --name ({hint})",
        ExitCode.NO_SUCH_FLEET,
    )


def _print_lines(out: Redactor, lines: Sequence[str]) -> None:
    for line in lines:
        out.line(line)
