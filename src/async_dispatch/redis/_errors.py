"""The one error fleet mode adds: the coordination store (Redis) could not be used."""

from __future__ import annotations

from .._errors import DispatchError

__all__ = ["CoordinationError"]


class CoordinationError(DispatchError):
    """Redis, which the replicas of a fleet coordinate through, failed to answer.

    Raised for a refused or reset connection, a timeout, a failed login or a command Redis
    rejected. The message names the Redis URL without its password and what to check; the
    original coredis or OS error is chained as ``__cause__``. Nothing was decided for the
    caller: a limiter that raises this granted no token, so retry later or stop.
    """
