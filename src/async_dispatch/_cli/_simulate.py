"""``simulate``: serve the in-process simulator over HTTP until Ctrl-C or SIGTERM.

It prints the variables that point a client at it, for this library and for the official
SDK, with a base URL the client accepts: bound to every address (``0.0.0.0``, ``::``), it
names the loopback one, where the key may travel over plain http://; bound to another
machine-visible address, it adds the variable that allows plain http:// there.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import anyio

from .._config import ALLOW_INSECURE_ENV, API_KEY_ENV, BASE_URL_ENV, EXECUTION_MODE_ENV
from .._validation import is_loopback_host
from ..testing._config import Durations, SimulatorConfig
from ._exit import CommandError, ExitCode
from ._output import Redactor
from ._parser import SIM_DEFAULTS

__all__ = ["client_base_url", "simulate"]

#: The official SDK's names for the same two settings.
SDK_API_KEY_ENV: Final = "NARADA_API_KEY"
SDK_BASE_URL_ENV: Final = "NARADA_API_BASE_URL"
#: Where a client on this machine reaches a server bound to every address.
_LOOPBACK_FOR: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def client_base_url(served: str) -> tuple[str, bool]:
    """The base URL a client should use for a server at `served`, and whether plain
    http:// to it needs `DISPATCH_ALLOW_INSECURE`.

    A wildcard address is not one to connect to (and the client's loopback check does not
    count it as this machine): the loopback address of the same family replaces it.
    """
    parts = urlsplit(served)
    host = parts.hostname or ""
    loopback = _LOOPBACK_FOR.get(host)
    if loopback is not None:
        shown = f"[{loopback}]" if ":" in loopback else loopback
        port = f":{parts.port}" if parts.port is not None else ""
        return urlunsplit(parts._replace(netloc=f"{shown}{port}")), False
    return served, parts.scheme == "http" and not is_loopback_host(host)


def _environment(base_url: str, key: str, *, insecure: bool) -> dict[str, str]:
    variables = {
        BASE_URL_ENV: base_url,
        API_KEY_ENV: key,
        SDK_BASE_URL_ENV: base_url,
        SDK_API_KEY_ENV: key,
    }
    if insecure:
        variables[ALLOW_INSECURE_ENV] = "1"
    # The default execution mode needs a browser window (the simulator enforces it, as
    # the service does): a client configured from these variables submits in the cloud.
    variables[EXECUTION_MODE_ENV] = "cloud"
    return variables


async def simulate(args: argparse.Namespace, out: Redactor) -> int:
    """Serve the simulator over TCP until SIGINT or SIGTERM."""
    from ..testing import Faults, RateLimit, serve

    key = args.api_key or SIM_DEFAULTS.default_key
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
        raise CommandError(f"bad simulator setting: {exc}") from None
    async with contextlib.AsyncExitStack() as stack:
        try:
            running = await stack.enter_async_context(serve(config, args.host, args.port))
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise CommandError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
        seed = running.simulator.seed
        base_url, insecure = client_base_url(running.base_url)
        variables = _environment(base_url, key, insecure=insecure)
        if args.json:
            out.json(
                {
                    "base_url": base_url,
                    "listening_on": running.base_url,
                    "api_key": key,
                    "seed": seed,
                    "environment": variables,
                }
            )
        else:
            out.line(f"Remote Dispatch simulator on {running.base_url} (seed {seed})")
            for name, value in variables.items():
                out.line(f"export {name}={shlex.quote(value)}")
            out.line("Press Ctrl-C to stop.")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
    if not args.json:
        out.line("simulator stopped")
    return ExitCode.OK


def _durations(median: float) -> Durations:
    """The library's default spread around `median`, with room above it for the tail."""
    default = SIM_DEFAULTS.durations
    return Durations(
        median=median,
        sigma=default.sigma,
        minimum=min(default.minimum, median),
        maximum=max(default.maximum, median * 4),
    )
