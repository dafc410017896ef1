"""Live counters of a `Poller`, for dashboards and tests."""

from __future__ import annotations

from typing import Any

import attrs

from ._outcome import OutcomeKind

__all__ = ["PollerStats"]


def _zero_per_kind() -> dict[OutcomeKind, int]:
    return dict.fromkeys(OutcomeKind, 0)


@attrs.define(kw_only=True)
class PollerStats:
    """Counters since the poller was opened. Read them any time; do not write them."""

    #: Tasks being tracked now (`in_flight` of them have a request outstanding).
    tracked: int = 0
    in_flight: int = 0
    #: Status requests sent, and submits sent.
    polls_sent: int = 0
    submits_sent: int = 0
    #: Checks that failed transiently and were rescheduled.
    retries: int = 0
    #: 429 (and 408/425) answers, and the shared pauses they caused.
    rate_limited: int = 0
    pauses: int = 0
    #: Readings with a status value this library does not know (polling goes on, unless
    #: the service said the task finished: then it ends FAILED with that reading).
    unknown_statuses: int = 0
    #: Status payloads delivered from outside (webhooks), and those that changed nothing.
    deliveries: int = 0
    duplicate_deliveries: int = 0
    #: How late past its due time the latest check was dispatched, in seconds. Above the
    #: cadence's `max_interval`, the tracked load needs more budget than the key has.
    check_lag: float = 0.0
    #: Outcomes yielded, by kind.
    outcomes: dict[OutcomeKind, int] = attrs.field(factory=_zero_per_kind)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        data = attrs.asdict(self)
        data["outcomes"] = {kind.value: n for kind, n in self.outcomes.items()}
        return data
