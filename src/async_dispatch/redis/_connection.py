"""One Redis connection pool per URL, shared by the fleet objects of one process.

`RedisConnection` owns a coredis client: it opens it on the outermost ``async with`` and
closes it on the last exit, so a client, its pollers and a task store can all enter the
same connection. It also knows the three things every fleet object needs from Redis:

- keys: everything of one fleet ``name`` lives under ``async_dispatch:{name}:``; the braces
  are a Redis Cluster hash tag, so one name's keys share a slot and one script may touch
  them all;
- scripts: Lua files shipped in this package, run with EVALSHA (and EVAL when Redis
  answers NOSCRIPT: a first run, or a restarted Redis);
- errors: whatever goes wrong on the way to Redis becomes one `CoordinationError` naming
  the URL (never its password) and what to check.

coredis runs each pool's connections in an anyio task group, so the outermost entry and
the last exit must happen in the same task and the same cancel scope (as with any task
group). Enter the connection, or the bucket that uses it, with ``async with`` around your
`DispatchClient`: the client's own entry is then a nested one, and its exit (which the
client makes inside a shielded cancel scope of its own) only counts down.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import anyio

from .._errors import UsageError
from ._errors import CoordinationError

try:
    import coredis
    import coredis.exceptions
    from coredis.commands import Script
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("fleet mode needs coredis: pip install 'async-dispatch[redis]'") from exc

__all__ = ["KEY_PREFIX", "RedisConnection", "ScriptArg"]

KEY_PREFIX = "async_dispatch"
"""The first part of every key fleet mode writes."""

ScriptArg = str | bytes | int | float
"""What a Lua script's ARGV entries may be given as."""

# What "Redis could not be used" looks like from inside coredis and anyio: coredis's own
# errors, a socket error, a timeout, or a stream broken under a pending read.
_FAILURES: tuple[type[BaseException], ...] = (
    coredis.exceptions.RedisError,
    OSError,
    TimeoutError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
_SCHEMES = ("redis", "rediss", "unix")


class RedisConnection:
    """A coredis client for one Redis URL, opened while anybody is inside ``async with``.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
            ``unix:///path/to/socket``.
        timeout: Seconds to connect, and to wait for each answer, before the call fails
            with `CoordinationError`.
    """

    __slots__ = ("_client", "_depth", "_password", "_timeout", "_url", "url")

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        if not isinstance(url, str):
            raise UsageError(f"the Redis URL must be a str, got {type(url).__name__}")
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise UsageError(
                f"the Redis URL must start with redis://, rediss:// or unix://, got "
                f"{_redact(url)!r}"
            )
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(f"timeout must be a finite number > 0, got {timeout!r}")
        self._url = url
        self._password = parts.password or ""
        self.url = _redact(url)
        """The URL with its password masked: safe to log."""
        self._timeout = float(timeout)
        self._client: coredis.Redis[bytes] | None = None
        self._depth = 0

    def __repr__(self) -> str:
        state = "open" if self._client is not None else "closed"
        return f"RedisConnection({self.url!r}, {state})"

    async def __aenter__(self) -> RedisConnection:
        if self._depth == 0:
            client: coredis.Redis[bytes] = coredis.Redis.from_url(
                self._url,
                connect_timeout=self._timeout,
                stream_timeout=self._timeout,
            )
            with self.translate_errors("connecting"):
                await client.__aenter__()
            self._client = client
        self._depth += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0 and self._client is not None:
            client, self._client = self._client, None
            # Closing cancels the pool's connection tasks; a connection that was already
            # broken has nothing left to say, so its error is not worth raising here.
            try:
                with contextlib.suppress(*_FAILURES):
                    await client.__aexit__(None, None, None)
            except RuntimeError as exc:  # anyio: a task group left from the wrong scope
                raise UsageError(
                    f"{self!r} was closed from another task or cancel scope than the one "
                    "that opened it: enter it (or the bucket using it) with `async with` "
                    "in the task that opens your DispatchClient, around the client"
                ) from exc

    @property
    def client(self) -> coredis.Redis[bytes]:
        """The coredis client; only while the connection is entered."""
        if self._client is None:
            raise UsageError(
                f"{self!r} is not open: use it (or the object using it) inside `async with`"
            )
        return self._client

    @staticmethod
    def key(name: str, suffix: str) -> str:
        """The key `suffix` of fleet `name`: ``async_dispatch:{name}:suffix``."""
        return f"{KEY_PREFIX}:{{{name}}}:{suffix}"

    async def run_script(
        self, filename: str, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> list[object]:
        """Run the packaged Lua script `filename` and answer its (array) reply."""
        client = self.client
        script = _script(filename)
        with self.translate_errors(f"running {filename}"):
            # EVALSHA, and EVAL when the server does not know the script yet (a first run,
            # or a restarted Redis). Not coredis's Script fallback, which sends SCRIPT LOAD:
            # that needs a right a fleet's ACL user has no other use for.
            try:
                reply: object = await client.evalsha(script.sha, keys=keys, args=args)
            except coredis.exceptions.NoScriptError:
                reply = await client.eval(script.script, keys=keys, args=args)
        if not isinstance(reply, list):  # pragma: no cover - our scripts answer arrays
            raise CoordinationError(f"{filename} answered {type(reply).__name__}, not an array")
        return reply

    async def server_time(self) -> float:
        """The Redis server's clock: seconds since the epoch, to the microsecond.

        Raises:
            CoordinationError: Redis could not be reached or failed.
        """
        # Workaround: not `client.time()`. coredis 6.9's TimeCallback builds
        # `fromtimestamp(sec) + timedelta(microseconds=usec / 1000)`, dividing the
        # microseconds by 1000, so its answer is short by the server's sub-second fraction
        # (up to 1 s). We parse TIME's raw reply ourselves; drop this once coredis is fixed.
        reply = await self.run_script("server_time.lua", [], [])
        try:
            seconds, micros = (int(_decoded(part)) for part in reply)
        except (TypeError, ValueError) as exc:  # pragma: no cover - TIME's reply is fixed
            raise CoordinationError(f"Redis answered TIME with {reply!r}") from exc
        return seconds + micros / 1e6

    @contextlib.contextmanager
    def translate_errors(self, doing: str) -> Iterator[None]:
        """Turn a Redis failure raised in the block into `CoordinationError`.

        Exception groups (as coredis raises from its task groups) are translated when
        everything in them is a Redis failure; anything else, cancellation included,
        passes through untouched.
        """
        try:
            yield
        except CoordinationError:
            raise
        except BaseException as exc:
            failure = _redis_failure(exc)
            if failure is None:
                raise
            raise CoordinationError(self._describe(failure, doing)) from exc

    def _describe(self, failure: BaseException, doing: str) -> str:
        detail = str(failure) or type(failure).__name__
        if self._password:
            detail = detail.replace(self._password, "***")
        where = f"Redis at {self.url}"
        if isinstance(failure, TimeoutError):
            return (
                f"{where} did not answer within {self._timeout:g} s while {doing}: check "
                "that it is running and not overloaded, and the network to it"
            )
        if isinstance(
            failure,
            coredis.exceptions.AuthenticationError | coredis.exceptions.AuthorizationError,
        ):
            return (
                f"{where} refused the login while {doing} ({detail}): check the user name "
                "and password in the URL, and the user's ACL"
            )
        if isinstance(failure, coredis.exceptions.ResponseError):
            return f"{where} rejected a command while {doing}: {detail}"
        return (
            f"cannot reach {where} while {doing} ({detail}): check that Redis is running "
            "and listening there, and the URL's host, port and scheme"
        )


def _redis_failure(exc: BaseException) -> BaseException | None:
    """The first Redis failure in `exc` if that is all `exc` is made of, else None."""
    nested = getattr(exc, "exceptions", None)
    if isinstance(exc, BaseException) and isinstance(nested, tuple) and nested:
        leaves = [_redis_failure(inner) for inner in nested]
        if any(leaf is None for leaf in leaves):
            return None
        return leaves[0]
    return exc if isinstance(exc, _FAILURES) else None


def _decoded(value: object) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _redact(url: str) -> str:
    """`url` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@functools.cache
def _script(filename: str) -> Script[bytes]:
    """The packaged Lua script `filename`, read once per process."""
    text = (
        resources.files("async_dispatch.redis")
        .joinpath("lua")
        .joinpath(filename)
        .read_text("utf-8")
    )
    return Script(script=text)
