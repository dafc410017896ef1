"""The server's per-key rate limit: one token bucket per API key, refilled lazily.

Like the real service, the limit is on the key, not the connection: every client sharing a
key shares its bucket. Buckets refill on read from the elapsed clock time, so an idle key
costs nothing.
"""

from __future__ import annotations

from ._config import RateLimit

__all__ = ["KeyedTokenBuckets"]


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class KeyedTokenBuckets:
    """Token buckets by API key, all with the same rate and burst."""

    __slots__ = ("_buckets", "_burst", "_rate")

    def __init__(self, limit: RateLimit) -> None:
        self._rate = limit.rate
        self._burst = float(limit.burst)
        self._buckets: dict[str, _Bucket] = {}

    def try_acquire(self, key: str, now: float) -> float:
        """Take a token for ``key``: 0.0 when granted, else seconds until one is there."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            elapsed = now - bucket.updated
            if elapsed > 0:
                bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
                bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate
