"""Checks on what callers hand us, done before anything reaches the network."""

from __future__ import annotations

import ipaddress
import math
import re

import httpx

from ._errors import InvalidRequestIdError, UsageError

__all__ = [
    "MAX_REQUEST_ID_LENGTH",
    "check_base_url",
    "check_int",
    "check_number",
    "check_request_id",
    "check_seconds",
    "is_loopback_host",
]

#: Longest request id accepted. Ids have no documented format (the SDK's fixtures use
#: ``req-1``; UUIDs and base64 appear elsewhere): the bound only keeps URLs sane.
MAX_REQUEST_ID_LENGTH = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_SHOWN = 40


def check_request_id(request_id: object) -> str:
    """Return `request_id` if it can be sent, else raise `InvalidRequestIdError`.

    Request ids have no documented format, so any non-empty string the service hands out
    is accepted (the client percent-encodes it as one path segment); refused is only what
    cannot be sent: an empty id, ``.`` or ``..`` (which URL normalisation turns into a
    different path), control characters, or more than `MAX_REQUEST_ID_LENGTH` characters.
    """
    if not isinstance(request_id, str):
        raise InvalidRequestIdError(f"request id must be a string, got {type(request_id).__name__}")
    problem = None
    if not request_id:
        problem = "it is empty"
    elif request_id in (".", ".."):
        problem = "'.' and '..' cannot name a path segment"
    elif _CONTROL.search(request_id):
        problem = "it contains a control character"
    elif len(request_id) > MAX_REQUEST_ID_LENGTH:
        problem = f"it is longer than {MAX_REQUEST_ID_LENGTH} characters"
    if problem is not None:
        shown = request_id if len(request_id) <= _MAX_SHOWN else request_id[:_MAX_SHOWN] + "..."
        raise InvalidRequestIdError(
            f"invalid request id {shown!r}: {problem} (ids come from submit(), e.g. "
            "'req_abc123def456')"
        )
    return request_id


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and addresses in 127.0.0.0/8 or ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, *, allow_insecure: bool) -> str:
    """Validate the service's base URL and return it without a trailing slash.

    Plain `http://` would send the API key in clear text, so it is refused for any host
    but loopback unless the caller opts in with `allow_insecure=True`.
    """
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UsageError(f"base_url is not a valid URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(
            f"base_url must be an absolute http(s) URL such as "
            f"'https://api.narada.ai/fast/v2', got scheme {url.scheme!r}"
        )
    if url.userinfo:
        raise UsageError("base_url must not contain credentials; pass api_key instead")
    if url.query or url.fragment:
        raise UsageError("base_url must not contain a query string or fragment")
    if url.scheme == "http" and not allow_insecure and not is_loopback_host(url.host):
        raise UsageError(
            f"refusing plain http:// to {url.host!r}: the API key would travel unencrypted. "
            "Use https://, or pass allow_insecure=True if you really mean it"
        )
    return str(url).rstrip("/")


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return `value` if it is a real integer >= `minimum`, else raise `UsageError`.

    Floats are refused even when whole: `nan`, `inf` and `1.5` all compare in surprising
    ways (``nan < 1`` is false), which is how a limit or a count silently switches off.
    `bool` is refused too: ``True`` is an int to Python, but never a count on purpose.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_seconds(
    name: str, value: object, *, maximum: float | None = None, allow_zero: bool = False
) -> float:
    """Return `value` as float seconds if it is a finite number in range, else raise.

    The range is ``0 < value <= maximum`` (``0 <= value`` with `allow_zero`). Infinite and
    absurd durations are refused rather than trusted: event loops overflow on them
    (asyncio's timers raise `OverflowError` for ``inf``), far from where they were given.
    """
    return check_number(name, value, unit="seconds", maximum=maximum, allow_zero=allow_zero)


def check_number(
    name: str,
    value: object,
    *,
    unit: str = "",
    maximum: float | None = None,
    allow_zero: bool = False,
) -> float:
    """Return `value` as a float if it is a finite number in range, else `UsageError`.

    `check_seconds` for any other quantity (a rate, a fraction): the same range rule, and
    the message names the `unit` (``rate must be a finite number of requests per second
    > 0, got 'ten'``). `bool` is refused, as by `check_int`.
    """
    low = ">= 0" if allow_zero else "> 0"
    high = f" and <= {maximum:g}" if maximum is not None else ""
    of_unit = f" of {unit}" if unit else ""
    expected = f"{name} must be a finite number{of_unit} {low}{high}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(expected[:300])
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    in_range = number >= 0 if allow_zero else number > 0
    if not (in_range and math.isfinite(number)) or (maximum is not None and number > maximum):
        raise UsageError(expected[:300])
    return number
