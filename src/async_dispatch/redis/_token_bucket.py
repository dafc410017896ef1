"""`RedisTokenBucket`: the token bucket of `async_dispatch.TokenBucket`, shared by a fleet.

Several replica processes that share one API key share one rate limit. Each replica's
client and pollers take tokens from a `RedisTokenBucket` of the same ``name``, and one Lua
script per token keeps the whole fleet within ``rate * t + burst`` in any window.

The bookkeeping is GCRA, as in `TokenBucket`, in *reservation* style: the script answers
how long the caller must wait and reserves that slot in the same atomic step. A throttled
token costs one round trip (no polling), and callers are served in the order their calls
reached Redis, across processes. The only clock is the Redis server's (``TIME``), so
replicas whose clocks disagree still agree on the schedule.

A 429 anywhere pauses everyone: `pause()` stores "paused until" next to the bucket, the
acquire script reserves no slot before it, and the bucket restarts empty when it ends.
Each replica learns of a pause from the replies to its own acquisitions (every reply
carries the pause in force), which is how `paused_for()` stays current; a caller that
wakes for a slot that a pause it has since learned of now covers reserves again, after it.
"""

from __future__ import annotations

import contextlib
import math

import anyio

from .._errors import UsageError
from ._connection import RedisConnection, check_fleet_name
from ._errors import CoordinationError

__all__ = ["RedisTokenBucket"]

_MAX_PAUSE = 86_400.0
# A slot this close to the end of a known pause is taken as after it: the script's replies
# are whole microseconds, so a slot "at" the end may read a hair before it.
_SLACK = 1e-3


class RedisTokenBucket:
    """Allow a fleet at most ``rate * t + burst`` acquisitions in any window of `t` seconds.

    Args:
        url_or_connection: A Redis URL, or a `RedisConnection` to share with other fleet
            objects of this process.
        name: Which bucket: every replica using the same API key must use the same name
            (it need not be the key itself; do not put secrets in it). The bucket lives in
            Redis under ``async_dispatch:{name}:bucket`` and expires once idle.
        rate: Acquisitions per second, sustained, for the whole fleet.
        burst: How many acquisitions may happen at once after a quiet spell.
        timeout: Seconds to wait for Redis to connect or answer (only with a URL).

    Enter it yourself, around the client that uses it::

        async with bucket, DispatchClient(bucket=bucket) as client:
            ...

    Its connection lives in an anyio task group (coredis's), which must be closed in the
    task and cancel scope that opened it; `DispatchClient` exits its limiter inside a
    shielded scope of its own, so its entry must be a nested one.

    Redis failures raise `CoordinationError`; the bucket recovers by itself once Redis is
    back (its state is lost with a Redis that keeps nothing on disk, which only means one
    burst may be granted again).
    """

    __slots__ = (
        "_burst",
        "_connection",
        "_interval_us",
        "_key",
        "_name",
        "_paused_until",
        "_tolerance_us",
    )

    def __init__(
        self,
        url_or_connection: str | RedisConnection,
        *,
        name: str,
        rate: float,
        burst: int = 1,
        timeout: float = 2.0,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise UsageError(f"rate must be a number, got {rate!r}")
        if not (rate > 0 and math.isfinite(rate)):
            raise UsageError(f"rate must be a finite number > 0, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise UsageError(f"burst must be an integer >= 1, got {burst!r}")
        check_fleet_name(name)
        if isinstance(url_or_connection, RedisConnection):
            self._connection = url_or_connection
        else:
            self._connection = RedisConnection(url_or_connection, timeout=timeout)
        self._name = name
        self._key = RedisConnection.key(name, "bucket")
        self._interval_us = 1e6 / rate
        self._burst = burst
        self._tolerance_us = (burst - 1) * self._interval_us
        # When the pause in force ends, in this process's loop clock, as last heard.
        self._paused_until = -math.inf

    def __repr__(self) -> str:
        return (
            f"RedisTokenBucket({self._connection.url!r}, name={self._name!r}, "
            f"rate={self.rate:g}, burst={self._burst})"
        )

    @property
    def name(self) -> str:
        """Which fleet bucket this is."""
        return self._name

    @property
    def rate(self) -> float:
        """Acquisitions per second, sustained, for the whole fleet."""
        return 1e6 / self._interval_us

    @property
    def burst(self) -> int:
        """How many acquisitions may happen at once after a quiet spell."""
        return self._burst

    @property
    def connection(self) -> RedisConnection:
        """The Redis connection this bucket uses."""
        return self._connection

    async def __aenter__(self) -> RedisTokenBucket:
        await self._connection.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._connection.__aexit__(*exc_info)

    async def bind_key(self, fingerprint: str) -> None:
        """Bind this bucket's name to the API key of `fingerprint`
        (`DispatchClient.key_fingerprint`); the poller calls it once the bucket is open.

        Raises:
            UsageError: Another API key uses this name (its budget is not this key's).
            CoordinationError: Redis could not be reached or failed.
        """
        async with self._connection:
            await self._connection.bind_key(self._name, fingerprint)

    def try_acquire(self) -> bool:
        """Always False: a token needs a round trip to Redis, so call `acquire()`."""
        return False

    async def acquire(self) -> None:
        """Wait for a token: reserve the next slot of the fleet's schedule, sleep until it.

        One round trip to Redis, whether the token is free now or later. Cancellation: a
        caller cancelled while it sleeps hands its slot back when nobody reserved after it
        (one more round trip, shielded and bounded by the timeout); otherwise the slot
        stays spent, which leaves a gap in the schedule and never lets too much through.

        Raises:
            CoordinationError: Redis could not be reached or failed; no token was taken.
        """
        while True:
            if await self._await_slot(*await self._reserve()):
                return

    async def _await_slot(
        self, wait_us: int, now_us: int, paused_until_us: int, tat: bytes
    ) -> bool:
        """Sleep until the slot a reservation answered (token_bucket_acquire.lua, or a
        claim that took its token: `RedisStore.claim_with_token`); False if a pause
        learned of meanwhile covers it (the caller reserves again, after the pause).

        Cancelled while asleep, the slot is handed back when nobody reserved after it.
        """
        received = anyio.current_time()
        self._learn_pause(received, now_us, paused_until_us)
        slot = received + wait_us / 1e6
        if wait_us > 0:
            try:
                await anyio.sleep(wait_us / 1e6)
            except anyio.get_cancelled_exc_class():
                await self._refund(tat)
                raise
        # A pause learned of while asleep (from another caller's reply) covers this
        # slot: sending now would meet a 429.
        return self._paused_until <= slot + _SLACK

    async def pause(self, seconds: float) -> None:
        """Hold every acquirer of the fleet back for `seconds` (a 429's ``Retry-After``).

        Pauses do not stack: the later end wins. When the pause ends the bucket is empty,
        so the fleet resumes at `rate`, not in a burst.

        Raises:
            CoordinationError: Redis could not be reached or failed.
        """
        if not seconds > 0:
            return
        seconds = min(seconds, _MAX_PAUSE)
        reply = await self._connection.run_script(
            "token_bucket_pause.lua",
            [self._key],
            [round(seconds * 1e6), _fmt(self._tolerance_us)],
        )
        now_us, paused_until_us = (_int(value) for value in reply)
        self._learn_pause(anyio.current_time(), now_us, paused_until_us)

    def paused_for(self) -> float:
        """Seconds left of the fleet's pause as this process last heard of it, else 0.0."""
        if self._paused_until == -math.inf:
            return 0.0
        return max(0.0, self._paused_until - anyio.current_time())

    async def _reserve(self) -> tuple[int, int, int, bytes]:
        key, args = self._gcra_arguments()
        reply = await self._connection.run_script("token_bucket_acquire.lua", [key], args)
        return reservation(reply)

    def _gcra_arguments(self) -> tuple[str, list[str]]:
        """The bucket's key and the arguments of a reservation (_gcra.lua): what a script
        that takes a token of this bucket needs."""
        return self._key, [_fmt(self._interval_us), _fmt(self._tolerance_us)]

    async def _refund(self, tat: bytes) -> None:
        """Hand back the slot that left the bucket at `tat`, if nobody reserved after it."""
        # Shielded (the caller is being cancelled) and bounded; on failure the slot stays
        # spent: a gap in the schedule, never an excess.
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(1.0),
            contextlib.suppress(CoordinationError),
        ):
            await self._connection.run_script(
                "token_bucket_refund.lua", [self._key], [tat, _fmt(self._interval_us)]
            )

    def _learn_pause(self, local_now: float, now_us: int, paused_until_us: int) -> None:
        """Map the server's "paused until" onto this process's clock (no clock compared
        across machines: only the server's own difference)."""
        if paused_until_us > now_us:
            until = local_now + (paused_until_us - now_us) / 1e6
            self._paused_until = max(self._paused_until, until)


def reservation(reply: list[object]) -> tuple[int, int, int, bytes]:
    """A reservation as _gcra.lua's `gcra_reserve` answers it: (wait, now, paused until,
    tat), microseconds of the server's clock and the new `tat` as text."""
    wait_us, now_us, paused_until_us, tat = reply
    if not isinstance(tat, bytes):  # pragma: no cover - the script answers a string
        raise CoordinationError(f"a token reservation answered tat={tat!r}")
    return _int(wait_us), _int(now_us), _int(paused_until_us), tat


def _fmt(value: float) -> str:
    """A number for ARGV, exact (repr round-trips a float)."""
    return repr(float(value))


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    raise CoordinationError(f"unexpected reply from Redis: {value!r}")  # pragma: no cover
