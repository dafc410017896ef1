"""`Outage`: one job's run of failures to reach a shared limiter or store, said once.

The poller's workers and reaper, and a fleet store's own background jobs, all meet the
same situation (Redis, or whatever backs a shared seam, does not answer) and all do the
same thing: wait, try again, and tell a person once when it starts and once when it ends.
One class, so there is one vocabulary for it in the logs: ``coordination_unavailable``
and ``coordination_recovered``, with the job's name.
"""

from __future__ import annotations

from typing import Any

from ._log import logger

__all__ = ["Outage"]


class Outage:
    """Consecutive failures of one job; the first and the recovery are logged."""

    __slots__ = ("_fields", "failures")

    def __init__(self, job: str, **fields: Any) -> None:
        self._fields = {"job": job, **fields}
        #: Failures in a row (0: all is well).
        self.failures = 0

    def __bool__(self) -> bool:
        return self.failures > 0

    def failed(self, error: BaseException) -> int:
        """Count one failure (warning on the first of an outage); returns the count."""
        self.failures += 1
        if self.failures == 1:
            logger.warning("coordination_unavailable", **self._fields, error=str(error))
        return self.failures

    def recovered(self) -> None:
        """The job got through: end the outage, if there was one (one warning)."""
        if self.failures:
            logger.warning("coordination_recovered", **self._fields, failures=self.failures)
            self.failures = 0
