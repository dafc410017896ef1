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
  the URL (never its password) and what to check;
- clusters: the server tells whether it is a Redis Cluster (``CLUSTER SLOTS``, asked once
  when the connection opens); if it is, the connection uses coredis's `RedisCluster`,
  which sends each command to the node owning its keys' slot and follows MOVED and ASK
  while a slot migrates. The URL may name any node of the cluster.

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
import ssl
import warnings
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any

import anyio

from .._errors import UsageError
from .._log import logger
from ._errors import CoordinationError
from ._url import check_url, redact, scrub

try:
    import coredis
    import coredis.exceptions
    from coredis.commands import Script
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "fleet mode needs coredis: pip install 'async-remote-dispatch[redis]'"
    ) from exc

__all__ = [
    "CLUSTER_ACL",
    "FLEET_ACL",
    "KEY_PREFIX",
    "RedisConnection",
    "ScriptArg",
    "check_fleet_name",
]

KEY_PREFIX = "async_dispatch"
"""The first part of every key fleet mode writes."""

FLEET_ACL = "~async_dispatch:* +@read +@write +eval +evalsha +time"
"""The ACL rules a fleet's Redis user needs (the README's fleet section says why)."""

CLUSTER_ACL = "+cluster|slots"
"""What a fleet's user needs besides `FLEET_ACL` on a Redis Cluster: reading the slot map."""

ScriptArg = str | bytes | int | float
"""What a Lua script's ARGV entries may be given as."""

Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]
"""A single server's client, or a cluster's."""

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


class RedisConnection:
    """A coredis client for one Redis URL, opened while anybody is inside ``async with``.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
            ``unix:///path/to/socket``. User name and password are percent-decoded:
            write a ``/``, ``#``, ``?``, ``@`` or ``%`` in them as ``%2F``, ``%23``,
            ``%3F``, ``%40``, ``%25``. coredis's query arguments work too
            (``?password=``, ``ssl_ca_certs=``, ``ssl_certfile=``, ``ssl_keyfile=``).
        timeout: Seconds to connect, and to wait for each answer, before the call fails
            with `CoordinationError`.

    A Redis Cluster is recognised by itself (see the module's docstring): give the URL
    of any of its nodes. Its user then also needs ``+cluster|slots`` (coredis reads the
    slot map with it); without that right the connection takes the server for a single
    one (as it does when Redis cannot be reached as it opens), and a command for a slot
    another node owns fails with a message saying so.
    """

    __slots__ = ("_client", "_depth", "_secrets", "_timeout", "_url", "cluster", "url")

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self._secrets = check_url(url)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(f"timeout must be a finite number > 0, got {timeout!r}")
        self._url = url
        self.url = redact(url)
        """The URL with every password in it (userinfo, ``password=``) masked: safe to log."""
        self._timeout = float(timeout)
        self._client: Client | None = None
        self._depth = 0
        #: Whether the server is a Redis Cluster (known once the connection is open).
        self.cluster = False

    def __repr__(self) -> str:
        state = "open" if self._client is not None else "closed"
        return f"RedisConnection({self.url!r}, {state})"

    async def __aenter__(self) -> RedisConnection:
        if self._depth == 0:
            client: Client = self._new_client(cluster=False)
            with self.translate_errors("connecting"):
                await client.__aenter__()
                try:
                    cluster = await _is_cluster(client)
                except BaseException:
                    await _close(client)
                    raise
                if cluster:
                    await _close(client)
                    client = self._new_client(cluster=True)
                    await client.__aenter__()
            self._client, self.cluster = client, cluster
        self._depth += 1
        return self

    def _new_client(self, *, cluster: bool) -> Client:
        options: dict[str, Any] = {
            "decode_components": True,
            "connect_timeout": self._timeout,
            "stream_timeout": self._timeout,
        }
        try:
            if not cluster:
                return coredis.Redis.from_url(self._url, **options)
            with warnings.catch_warnings():
                # coredis 6.9's RedisCluster.from_url builds its startup node with the
                # deprecated `Node` itself (and warns about it): nothing for us to change.
                warnings.filterwarnings("ignore", "Use coredis.connection.TCPLocation")
                # Not its full-coverage check: that needs CONFIG GET, which a fleet's user
                # lacks, and only the fleet's own slot matters here.
                return coredis.RedisCluster.from_url(
                    self._url, skip_full_coverage_check=True, **options
                )
        except (ValueError, KeyError, OSError) as exc:  # a query argument, a TLS file
            detail = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
            raise UsageError(f"cannot use the Redis URL {self.url!r}: {detail}") from None

    async def __aexit__(self, *exc_info: object) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0 and self._client is not None:
            client, self._client = self._client, None
            # Closing cancels the pool's connection tasks; a connection that was already
            # broken has nothing left to say, so its error is not worth raising here.
            try:
                await _close(client)
            except RuntimeError as exc:  # anyio: a task group left from the wrong scope
                raise UsageError(
                    f"{self!r} was closed from another task or cancel scope than the one "
                    "that opened it: enter it (or the bucket using it) with `async with` "
                    "in the task that opens your DispatchClient, around the client"
                ) from exc

    @property
    def client(self) -> Client:
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

    async def server_time(self, route: str | None = None) -> float:
        """The Redis server's clock: seconds since the epoch, to the microsecond.

        Args:
            route: A key of the fleet: on a Redis Cluster, the clock is then read on the
                node that owns the fleet's slot, which is the clock its scripts use (each
                node has its own).

        Raises:
            CoordinationError: Redis could not be reached or failed.
        """
        # Workaround: not `client.time()`. coredis 6.9's TimeCallback builds
        # `fromtimestamp(sec) + timedelta(microseconds=usec / 1000)`, dividing the
        # microseconds by 1000, so its answer is short by the server's sub-second fraction
        # (up to 1 s). We parse TIME's raw reply ourselves; drop this once coredis is fixed.
        reply = await self.run_script("server_time.lua", [route] if route else [], [])
        try:
            seconds, micros = (int(_decoded(part)) for part in reply)
        except (TypeError, ValueError) as exc:  # pragma: no cover - TIME's reply is fixed
            raise CoordinationError(f"Redis answered TIME with {reply!r}") from exc
        return seconds + micros / 1e6

    async def bind_key(self, name: str, fingerprint: str) -> None:
        """Bind fleet `name` to the API key whose `DispatchClient.key_fingerprint` this is.

        The first caller binds it (``async_dispatch:{name}:key``, no TTL); later callers
        with the same fingerprint pass.

        Raises:
            UsageError: Another API key uses this fleet name: its tasks are not this
                key's to check (the service would answer 404 and they would fail).
            CoordinationError: Redis could not be reached or failed.
        """
        reply = await self.run_script("fleet_bind_key.lua", [self.key(name, "key")], [fingerprint])
        if not int(_decoded(reply[0])):
            raise UsageError(
                f"fleet {name!r} in Redis at {self.url} belongs to another API key (key "
                f"fingerprint {_decoded(reply[1])}, this client's is {fingerprint}): two "
                "API keys cannot share a fleet; pick another name for this key's fleet"
            )

    async def bind_secret(self, name: str, fingerprint: str | None) -> None:
        """Bind fleet `name` to one fleet secret (`FleetSigner.fingerprint`), or to none.

        The first replica to attach binds it (``async_dispatch:{name}:integrity``, no
        TTL); a replica with another secret, or without one where the fleet has one (or
        the other way round), is refused before it touches a task: its outcomes would be
        dead-lettered by the others, or theirs by it.

        Raises:
            UsageError: The fleet was bound to another secret, or to none.
            CoordinationError: Redis could not be reached or failed.
        """
        given = fingerprint or "unsigned"
        reply = await self.run_script("fleet_bind_key.lua", [self.key(name, "integrity")], [given])
        if int(_decoded(reply[0])):
            return
        held = _decoded(reply[1])
        if fingerprint is None:
            problem = "signs its outcomes with a fleet secret and this replica has none"
        elif held == "unsigned":
            problem = "was started without a fleet secret and this replica has one"
        else:
            problem = "signs its outcomes with another fleet secret"
        raise UsageError(
            f"fleet {name!r} in Redis at {self.url} {problem}: give every replica of a "
            "fleet the same `secret=`. To change it, drain the fleet and delete "
            f"{self.key(name, 'integrity')!r}"
        )

    async def warn_if_evicting(self, name: str) -> None:
        """Log a warning when the server may evict fleet `name`'s keys (a memory limit
        with a policy other than ``noeviction``): evicted keys are lost tasks and outcomes.

        Needs ``CONFIG GET``, which a fleet's ACL user usually lacks: then it says so at
        info level and carries on. Never raises for that.
        """
        try:
            with self.translate_errors("reading maxmemory-policy"):
                config = await self.client.config_get(["maxmemory", "maxmemory-policy"])
        except CoordinationError as exc:
            logger.info("redis_eviction_policy_unknown", fleet=name, error=str(exc))
            return
        values = {_decoded(key): _decoded(value) for key, value in config.items()}
        policy = values.get("maxmemory-policy", "")
        if values.get("maxmemory", "0") != "0" and policy != "noeviction":
            logger.warning(
                "redis_may_evict",
                fleet=name,
                policy=policy,
                advice="set maxmemory-policy noeviction: an evicted fleet key is a lost task",
            )

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
        # coredis wraps a failed TLS handshake in its ConnectionError: the cause says more.
        failure = _tls_error(failure) or failure
        detail = scrub(str(failure) or type(failure).__name__, self._secrets)
        where = f"Redis at {self.url}"
        if isinstance(failure, TimeoutError):
            return (
                f"{where} did not answer within {self._timeout:g} s while {doing}: check "
                "that it is running and not overloaded, and the network to it"
            )
        if isinstance(failure, coredis.exceptions.AuthenticationError):
            return (
                f"{where} refused the login while {doing} ({detail}): check the user name "
                "and password in the URL (percent-encoded)"
            )
        if isinstance(failure, coredis.exceptions.AuthorizationError) or _script_denied(failure):
            return (
                f"{where} denied this user a command while {doing} ({detail}): the login "
                f"worked, but the user's ACL lacks a right fleet mode needs: {FLEET_ACL}"
            )
        if isinstance(failure, ssl.SSLCertVerificationError):
            return (
                f"{where} presented a TLS certificate this process does not trust while "
                f"{doing} ({detail}): give the CA that signed it as ?ssl_ca_certs=/path/ca.pem "
                "in the URL, and connect by a host name the certificate names"
            )
        if isinstance(failure, ssl.SSLError):
            return (
                f"the TLS handshake with {where} failed while {doing} ({detail}): check "
                "that the port speaks TLS (rediss://) and, if the server asks for one, the "
                "client certificate (?ssl_certfile=...&ssl_keyfile=...)"
            )
        if isinstance(failure, coredis.exceptions.AskError):  # MOVED too
            return (
                f"{where} is a node of a Redis Cluster that does not own the fleet's slot "
                f"({doing}: {detail}), and this connection took it for a single server: "
                "either its user lacks +cluster|slots (needed to read the slot map) or "
                "Redis was unreachable when the connection opened; fix that and reopen it"
            )
        if isinstance(failure, coredis.exceptions.ResponseError) and _out_of_memory(failure):
            return (
                f"{where} is out of memory (maxmemory reached, and the policy evicts "
                f"nothing) while {doing}: the fleet cannot record progress, so it waits and "
                "times nothing out meanwhile; free memory or raise maxmemory"
            )
        if isinstance(failure, coredis.exceptions.ResponseError):
            return f"{where} rejected a command while {doing}: {detail}"
        tls = (
            "; over TLS, also whether the server asks for a client certificate "
            "(?ssl_certfile=...&ssl_keyfile=...)"
            if self.url.startswith("rediss:")
            else ""
        )
        return (
            f"cannot reach {where} while {doing} ({detail}): check that Redis is running "
            f"and listening there, and the URL's host, port and scheme{tls}"
        )


def check_fleet_name(name: object) -> None:
    """The one rule for fleet names (stores, buckets, the fleet view): a non-empty
    printable str of at most 200 characters without braces (the key's hash tag).

    Raises:
        UsageError: `name` breaks it.
    """
    if not isinstance(name, str) or not name:
        raise UsageError(f"name must be a non-empty str, got {name!r}")
    if any(ch in name for ch in "{}") or not name.isprintable() or len(name) > 200:
        raise UsageError(
            f"name must be printable, at most 200 characters, without braces: {name!r}"
        )


async def _is_cluster(client: Client) -> bool:
    """Whether the server behind `client` (a single server's client) is a Redis Cluster.

    Asked with CLUSTER SLOTS, the command the cluster client needs anyway: a server
    without cluster support refuses it. A user not allowed to run it is served as a
    single server (`RedisConnection._describe` explains the MOVED that may follow), and
    so is a server that cannot be reached when the connection opens.
    """
    try:
        await client.cluster_slots()
    except coredis.exceptions.AuthorizationError:
        return False
    except coredis.exceptions.ResponseError as exc:
        if "cluster support disabled" in str(exc).lower():
            return False
        raise
    except BaseException as exc:
        if _redis_failure(exc) is None:
            raise
        # Unreachable: opening a connection never failed for that, and does not now (each
        # call then raises CoordinationError). It is served as a single server.
        return False
    return True


async def _close(client: Client) -> None:
    """Close `client`; a connection that was already broken has nothing left to say."""
    with contextlib.suppress(*_FAILURES):
        await client.__aexit__(None, None, None)


def _tls_error(failure: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `failure` (itself, its cause or its context), if any."""
    seen: set[int] = set()
    current: BaseException | None = failure
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _script_denied(failure: BaseException) -> bool:
    """Whether `failure` is a script's command refused by the caller's ACL.

    Redis reports that as a plain script error, not NOPERM: "The user executing the script
    can't run this command or subcommand" (and "... can't access at least one of the keys")."""
    return (
        isinstance(failure, coredis.exceptions.ResponseError)
        and "the user executing the script can't" in str(failure).lower()
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


_INCLUDE = "-- @include "


def _lua(filename: str) -> str:
    return (
        resources.files("async_dispatch.redis")
        .joinpath("lua")
        .joinpath(filename)
        .read_text("utf-8")
    )


@functools.cache
def _script(filename: str) -> Script[bytes]:
    """The packaged Lua script `filename`, read once per process.

    A line ``-- @include other.lua`` is replaced by that file (helpers shared by several
    scripts: each script is sent to Redis whole, as Redis has no shared Lua code).
    """
    lines = [
        _lua(line.removeprefix(_INCLUDE).strip()) if line.startswith(_INCLUDE) else line
        for line in _lua(filename).splitlines(keepends=True)
    ]
    return Script(script="".join(lines))


def _out_of_memory(failure: BaseException) -> bool:
    """Whether Redis refused a write for want of memory (``OOM command not allowed when
    used memory > 'maxmemory'``, also when a script's write met it)."""
    return "OOM command not allowed" in str(failure)
