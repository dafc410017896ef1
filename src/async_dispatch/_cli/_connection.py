"""How the commands that talk to the service get their key, their URL and their client.

The lookups are the library's own (`_config`), so the command line honours exactly the
variables a script does; what this module adds is the remedy a shell user has (a flag or
a variable, not a keyword argument) and a floor on the key's length.

Why a floor: every stream the commands write to replaces the key with ``***`` wherever
it occurs, so that a service echoing it back cannot put it on a terminal or into a CI log.
Replacing every occurrence, not only whole words, is what makes that safe (a key glued to
other text, as in ``key%3D<key>``, is still caught). A one-letter key would then mangle
every message (``--api-key a`` printed ``***sync-disp***tch: error``), and such a key is
never a real one: the service's keys are long. So a key shorter than `MIN_API_KEY_LENGTH`
is refused as a usage error before anything is sent or printed.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Final

import httpx

from .._client import DispatchClient
from .._config import (
    ALLOW_INSECURE_ENV,
    API_KEY_ENV,
    BROWSER_WINDOW_ID_ENV,
    EXECUTION_MODE_ENV,
    configured_allow_insecure,
    configured_text,
)
from .._retry import RetryPolicy
from .._validation import check_base_url, is_loopback_host
from ._exit import CommandError

__all__ = [
    "MIN_API_KEY_LENGTH",
    "allow_insecure",
    "check_api_key",
    "check_service_url",
    "open_client",
]

#: The shortest key the commands accept. The simulator's default key, ``sim-key``, has 7
#: characters; the service's keys are long.
MIN_API_KEY_LENGTH: Final = 6


def check_api_key(key: str | None) -> str:
    """`key`, or a usage error saying how to give one, or why this one cannot be right."""
    if key is None:
        raise CommandError(f"no API key: pass --api-key or set {API_KEY_ENV}")
    if len(key) < MIN_API_KEY_LENGTH:
        raise CommandError(
            f"the API key has {len(key)} character{'s' if len(key) != 1 else ''}, too short "
            f"to be a key (at least {MIN_API_KEY_LENGTH}): check --api-key or {API_KEY_ENV}"
        )
    return key


def allow_insecure(args: argparse.Namespace, environ: Mapping[str, str]) -> bool:
    """``--allow-insecure``, else ``$DISPATCH_ALLOW_INSECURE`` (as the library reads it;
    a value that is not a switch is a `UsageError`, exit 2)."""
    return bool(args.allow_insecure) or configured_allow_insecure(None, environ)


def check_service_url(base_url: str, *, allow_insecure: bool) -> None:
    """The library's check, with the remedy a shell user has: a flag, not a keyword."""
    url = httpx.URL(base_url) if "://" in base_url else None
    if (
        url is not None
        and url.scheme == "http"
        and not allow_insecure
        and url.host
        and not is_loopback_host(url.host)
    ):
        raise CommandError(
            f"refusing plain http:// to {url.host!r}: the API key would travel unencrypted. "
            f"Use https://, or pass --allow-insecure (or set {ALLOW_INSECURE_ENV}=1) if you "
            "really mean it"
        )
    check_base_url(base_url, allow_insecure=allow_insecure)


@contextlib.asynccontextmanager
async def open_client(
    args: argparse.Namespace,
    key: str,
    base_url: str,
    *,
    insecure: bool,
    transport: httpx.AsyncBaseTransport | None,
    environ: Mapping[str, str],
) -> AsyncIterator[DispatchClient]:
    """The client the command talks through; `transport`, when given, carries it all."""
    check_service_url(base_url, allow_insecure=insecure)
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
            allow_insecure=insecure,
            execution_mode=configured_text(None, EXECUTION_MODE_ENV, environ),
            browser_window_id=configured_text(None, BROWSER_WINDOW_ID_ENV, environ),
        )
        yield await stack.enter_async_context(client)
