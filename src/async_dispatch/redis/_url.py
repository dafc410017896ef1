"""Redis URLs: which ones are usable, and how to show one without its password.

A password can sit in two places of a Redis URL, and coredis reads both: the userinfo
(``redis://user:PASSWORD@host``) and the query (``?password=PASSWORD``). Userinfo is
percent-decoded (coredis is called with ``decode_components=True``), so a password holding
``/``, ``#``, ``?`` or ``@`` is written ``%2F``, ``%23``, ``%3F``, ``%40``. Written raw,
those characters end the host part early and the URL means something else; such a URL is
refused with a message that shows no part of it (it may be mostly password).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

from .._errors import UsageError

__all__ = ["SCHEMES", "check_url", "redact", "scrub"]

SCHEMES = ("redis", "rediss", "unix")
_MASK = "***"
_RESERVED_HINT = (
    "percent-encode any '/', '#', '?', '@' or '%' in the user name or password "
    "(%2F, %23, %3F, %40, %25); the URL is not shown, as it may hold a password"
)


def check_url(url: str) -> frozenset[str]:
    """Check that `url` is a Redis URL coredis will read as written; answer its secrets.

    The secrets are every form in which a password of `url` may show up in a message:
    as written and percent-decoded, from the userinfo and from ``password=`` queries.

    Raises:
        UsageError: `url` is not a Redis URL, or one that a raw reserved character in its
            password broke; the message never contains the password.
    """
    if not isinstance(url, str):
        raise UsageError(f"the Redis URL must be a str, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when the "port" is part of a password
    except ValueError:
        raise UsageError(f"the Redis URL cannot be parsed: {_RESERVED_HINT}") from None
    if parts.scheme not in SCHEMES:
        raise UsageError(
            f"the Redis URL must start with redis://, rediss:// or unix://, got {redact(url)!r}"
        )
    if parts.fragment or "@" in parts.path or "@" in parts.query:
        raise UsageError(f"the Redis URL has a '#' or an '@' after its host: {_RESERVED_HINT}")
    secrets: set[str] = set()
    if parts.password:
        secrets |= {parts.password, unquote(parts.password)}
    for key, raw_value in _raw_query(parts.query):
        if _is_secret(key) and raw_value:
            secrets |= {raw_value, unquote(raw_value.replace("+", " "))}
    return frozenset(secret for secret in secrets if secret)


def redact(url: str) -> str:
    """`url` with every password in it (userinfo, ``password=`` queries) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{_MASK}@{host}"
    query = "&".join(
        f"{key}={_MASK}" if _is_secret(key) else (f"{key}={value}" if value is not None else key)
        for key, value in _raw_query(parts.query)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub(text: str, secrets: frozenset[str]) -> str:
    """`text` with each of `secrets` replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _is_secret(key: str) -> bool:
    return "password" in unquote(key).lower()


def _raw_query(query: str) -> list[tuple[str, str | None]]:
    """(name, value as written, or None without '=') of each query argument."""
    pairs: list[tuple[str, str | None]] = []
    for item in query.split("&") if query else []:
        key, sep, value = item.partition("=")
        pairs.append((key, value if sep else None))
    return pairs
