"""Where the client's key and base URL come from when the caller does not pass them.

The library and the ``async-dispatch`` command must agree on this to the letter: a user who
exports ``DISPATCH_BASE_URL`` for a script expects the command line to honour it the same
way. So the names and the order of precedence live here, once, and both import them.

The vendor's official SDK reads ``NARADA_API_KEY`` and ``NARADA_API_BASE_URL``; a user
coming from it has those set already, so they are fallbacks of ours: ``DISPATCH_*`` first
(the explicit choice for this library), then ``NARADA_*``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from ._errors import UsageError

__all__ = [
    "ALLOW_INSECURE_ENV",
    "API_KEY_ENV",
    "API_KEY_ENVS",
    "BASE_URL_ENV",
    "BASE_URL_ENVS",
    "BROWSER_WINDOW_ID_ENV",
    "DEFAULT_BASE_URL",
    "EXECUTION_MODE_ENV",
    "configured_allow_insecure",
    "configured_api_key",
    "configured_base_url",
    "configured_text",
]

#: The public service; every path of the API is relative to it.
DEFAULT_BASE_URL: Final = "https://api.narada.ai/fast/v2"
API_KEY_ENV: Final = "DISPATCH_API_KEY"
BASE_URL_ENV: Final = "DISPATCH_BASE_URL"
#: ``1`` allows plain ``http://`` to a host other than this machine (the key travels in
#: clear): for a simulator or a gateway on another machine of a trusted network.
ALLOW_INSECURE_ENV: Final = "DISPATCH_ALLOW_INSECURE"
_YES: Final = frozenset({"1", "true", "yes", "on"})
_NO: Final = frozenset({"", "0", "false", "no", "off"})
#: Where submits run when a call names neither a mode nor a window (see `DispatchClient`).
EXECUTION_MODE_ENV: Final = "DISPATCH_EXECUTION_MODE"
BROWSER_WINDOW_ID_ENV: Final = "DISPATCH_BROWSER_WINDOW_ID"
#: Where a key or base URL is looked up, in order: ours, then the official SDK's.
API_KEY_ENVS: Final = (API_KEY_ENV, "NARADA_API_KEY")
BASE_URL_ENVS: Final = (BASE_URL_ENV, "NARADA_API_BASE_URL")


def configured_api_key(api_key: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """`api_key` if given, else ``$DISPATCH_API_KEY``, else ``$NARADA_API_KEY``; None when
    none holds a key.

    An explicit value wins even when empty, so a caller who passes ``""`` by mistake gets
    "no API key" rather than a key they did not choose from the environment. The value is
    returned as found (blank counts as none): what whitespace or control characters inside
    it mean is for the client to judge, not for this lookup.
    """
    env = os.environ if environ is None else environ
    if api_key is not None:
        return api_key if api_key.strip() else None
    for name in API_KEY_ENVS:
        key = env.get(name)
        if key and key.strip():
            return key
    return None


def configured_base_url(base_url: str | None, environ: Mapping[str, str] | None = None) -> str:
    """`base_url` if given, else ``$DISPATCH_BASE_URL``, else ``$NARADA_API_BASE_URL``,
    else the public service.

    Empty values count as unset: ``DISPATCH_BASE_URL=`` in a shell means "no override".
    """
    env = os.environ if environ is None else environ
    if base_url:
        return base_url
    return next((env[name] for name in BASE_URL_ENVS if env.get(name)), DEFAULT_BASE_URL)


def configured_allow_insecure(
    allow_insecure: bool | None, environ: Mapping[str, str] | None = None
) -> bool:
    """`allow_insecure` if given, else ``$DISPATCH_ALLOW_INSECURE``, else False.

    The variable takes ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``
    (any case; empty is unset). Anything else is a `UsageError` rather than a guess: a
    typo must neither send the key in clear nor hide why plain http:// is refused.
    """
    if allow_insecure is not None:
        return allow_insecure
    env = os.environ if environ is None else environ
    value = env.get(ALLOW_INSECURE_ENV, "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise UsageError(f"{ALLOW_INSECURE_ENV} must be 1 or 0 (or true/false), got {value!r}")


def configured_text(
    value: str | None, name: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """`value` if given, else ``$name``; blank values count as unset."""
    env = os.environ if environ is None else environ
    found = value if value is not None else env.get(name)
    return found.strip() if found and found.strip() else None
