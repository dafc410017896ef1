"""The limiter seam, and `TokenBucket`: the in-process limiter every caller of a key shares.

`Limiter` is exactly what `DispatchClient` and `Poller` ask of a rate limiter: take a token
now if one is free, wait for one, pause everyone after a 429, and say how long the pause
still lasts. `TokenBucket` fills it for one process; `async_dispatch.redis.RedisTokenBucket`
fills it for a fleet of processes sharing one key.

The bookkeeping is GCRA (the "generic cell rate algorithm"): instead of a token count that
must be refilled, it keeps one number, the *theoretical arrival time* `tat` of the next
request if requests came at exactly `rate`. A request at time `now` conforms when
``now >= tat - (burst - 1) / rate``; taking it moves `tat` on by ``1 / rate``. This is the
same limit as a bucket of `burst` tokens refilled at `rate`, in O(1) without timers.

Waiters queue FIFO. Only the head of the queue sleeps on the clock, and it sleeps for
exactly as long as the bucket needs; everyone behind it waits on an event that the head
sets as it leaves. There is no polling loop: a wait costs one timer and one wake-up, plus
one more if a `pause()` lands while the head sleeps.

`pause(seconds)` is how a 429 is shared: every acquirer, queued or future, waits until
the pause is over, and the bucket restarts empty so the queue drains at `rate` instead of
stampeding. Time comes from `anyio.current_time()`, so trio's virtual clock drives it in
tests.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

import anyio

from ._clock import loop_clock
from ._validation import check_int, check_number

__all__ = ["Limiter", "OneAtATime", "TokenBucket"]


class Limiter(Protocol):
    """What the client and the poller call on a rate limiter.

    Implementations: `TokenBucket` (one process) and `RedisTokenBucket` (a fleet). Users of
    a limiter enter it (``async with``) for as long as they use it; entries may nest, as a
    client and several pollers share one limiter, and only the outermost exit closes it.
    """

    # Empty: a limiter or store that subclasses this (to inherit `bind_key`) keeps its
    # own slots, and no per-instance dict.
    __slots__ = ()

    async def __aenter__(self) -> Limiter: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def try_acquire(self) -> bool:
        """Take a token if one is free right now, without waiting or doing I/O.

        A limiter that cannot answer without I/O returns False, so the caller falls back
        to `acquire()`.
        """
        ...

    async def acquire(self) -> None:
        """Wait until one request may be sent, in FIFO order with the other callers."""
        ...

    async def pause(self, seconds: float) -> None:
        """Hold every acquirer back for `seconds` (the service answered 429)."""
        ...

    def paused_for(self) -> float:
        """Seconds left of the pause in force as this process knows it, 0.0 when none."""
        ...

    async def bind_key(self, fingerprint: str) -> None:
        """Serve only the API key of `fingerprint` (`DispatchClient.key_fingerprint`).

        A poller calls it once the limiter is open. A limiter shared by a fleet binds
        its name to the key (its budget is that key's) and refuses another key with
        `UsageError`; a limiter of one process has nothing to bind. This default
        (inherited by a limiter that subclasses `Limiter`) does nothing.
        """
        return


class TokenBucket(Limiter):
    """Allow at most ``rate * t + burst`` acquisitions in any window of `t` seconds.

    Share one instance between a `DispatchClient`, any number of `Poller`s and your own
    code to keep one API key within its limit. Must be used from one event loop.
    """

    __slots__ = (
        "_burst",
        "_clock",
        "_interval",
        "_paused_until",
        "_tat",
        "_tolerance",
        "_waiters",
    )

    def __init__(self, rate: float, burst: int = 1) -> None:
        self._interval = 1.0 / check_number("rate", rate, unit="requests (tokens) per second")
        check_int("burst", burst, minimum=1)
        self._burst = burst
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf
        self._paused_until = -math.inf
        self._waiters: deque[anyio.Event] = deque()
        self._clock: Callable[[], float] | None = None

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self._burst})"

    @property
    def rate(self) -> float:
        """Acquisitions per second, sustained."""
        return 1.0 / self._interval

    @property
    def burst(self) -> int:
        """How many acquisitions may happen at once after a quiet spell."""
        return self._burst

    @property
    def waiting(self) -> int:
        """How many callers are queued in `acquire()` right now."""
        return len(self._waiters)

    async def __aenter__(self) -> TokenBucket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        """Make every acquirer wait `seconds` from now (a 429's `Retry-After`).

        Pauses do not stack: the later end wins. When the pause ends the bucket is empty,
        so acquisitions resume at `rate`, not in a burst.
        """
        if not seconds > 0:
            return
        until = self._now() + min(seconds, 86_400.0)
        if until > self._paused_until:
            self._paused_until = until
            self._tat = max(self._tat, until + self._tolerance)

    def paused_for(self) -> float:
        """Seconds left of the current pause, 0.0 when not paused."""
        return max(0.0, self._paused_until - self._now())

    def try_acquire(self) -> bool:
        """Take a token if one is free right now and nobody is queued; never waits."""
        if self._waiters:
            return False
        now = self._now()
        if now < self._ready_at():
            return False
        self._take(now)
        return True

    async def acquire(self) -> None:
        """Wait for a token, in FIFO order with every other caller.

        Cancellation is safe: a cancelled caller leaves the queue without taking a token,
        and wakes the next one if it was at the head.
        """
        if self.try_acquire():
            return
        turn = anyio.Event()
        self._waiters.append(turn)
        try:
            if self._waiters[0] is not turn:
                await turn.wait()
            # A loop, not one sleep: a pause() may land while the head sleeps.
            while (delay := self._ready_at() - self._now()) > 0:  # noqa: ASYNC110
                await anyio.sleep(delay)
            self._take(self._now())
        finally:
            self._leave(turn)

    def _now(self) -> float:
        clock = self._clock
        if clock is None:  # bound on first use, inside the loop that owns the bucket
            clock = self._clock = loop_clock()
        return clock()

    def _ready_at(self) -> float:
        return max(self._tat - self._tolerance, self._paused_until)

    def _take(self, now: float) -> None:
        self._tat = max(self._tat, now) + self._interval

    def _leave(self, turn: anyio.Event) -> None:
        was_head = self._waiters[0] is turn
        self._waiters.remove(turn)
        if was_head and self._waiters:
            self._waiters[0].set()


class OneAtATime(Limiter):
    """A limiter seen through a turnstile: one caller at a time waits in it.

    The limiter is FIFO, and a poller's checks queue in it through a single dispatching
    worker. If every concurrent submit queued on its own, fifty submitters would get
    fifty turns for each turn of the checks. Through this view, at most one submit and
    one check wait in the limiter at any moment, so when both are saturated they
    alternate, and when no check is due the submits get the whole budget.
    """

    __slots__ = ("_limiter", "_lock")

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._lock: anyio.Lock | None = None

    async def __aenter__(self) -> OneAtATime:
        return self  # the limiter itself is entered by its owner

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def try_acquire(self) -> bool:
        return False  # always through the turnstile, or the alternation is lost

    async def acquire(self) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            await self._limiter.acquire()

    async def pause(self, seconds: float) -> None:
        await self._limiter.pause(seconds)

    def paused_for(self) -> float:
        return self._limiter.paused_for()
