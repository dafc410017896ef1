"""The errors fleet mode adds. `CoordinationError` is defined in the core because the
poller rides it out; `FleetStateLost` is not one, so that it ends the iteration."""

from __future__ import annotations

from .._errors import CoordinationError, DispatchError, FleetIntegrityError

__all__ = ["CoordinationError", "FleetIntegrityError", "FleetStateLost"]


class FleetStateLost(DispatchError):
    """Redis no longer holds the fleet's state this replica attached to.

    Raised from the poller's ``async for`` (through `RedisStore.idle`) instead of ending
    it as if every task had finished: a Redis restarted without persistence, a
    ``FLUSHDB``, or an eviction policy removed the fleet's keys, and the tasks tracked
    before are no longer checked by anyone. Their ids are in your logs or your own
    records; track them again (`Poller.track`) or resubmit, and give Redis persistence
    and ``maxmemory-policy noeviction`` (the README's fleet section).
    """
