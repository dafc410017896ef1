"""A `Poller`'s counters: `PollerStats`, a frozen snapshot, and the live `Counters`.

Like anyio's ``statistics()``: reading `Poller.stats` returns a value that stays what it
was when read, never a live object a caller could change (or see change under it).
"""

from __future__ import annotations

from typing import Any

import attrs

from ._outcome import OutcomeKind

__all__ = ["Counters", "PollerStats"]


def _zero_per_kind() -> dict[OutcomeKind, int]:
    return dict.fromkeys(OutcomeKind, 0)


@attrs.frozen(kw_only=True)
class PollerStats:
    """Counters since the poller was opened, as they were when read (`Poller.stats`)."""

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


class Counters:
    """The live counters a poller updates; `snapshot()` is what `Poller.stats` returns.

    The same fields as `PollerStats` (a test keeps the two lists equal), as plain slots:
    incrementing one is the cheapest thing Python can do, on the hot path of every check.
    """

    __slots__ = (
        "check_lag",
        "deliveries",
        "duplicate_deliveries",
        "in_flight",
        "outcomes",
        "pauses",
        "polls_sent",
        "rate_limited",
        "retries",
        "submits_sent",
        "unknown_statuses",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.polls_sent = 0
        self.submits_sent = 0
        self.retries = 0
        self.rate_limited = 0
        self.pauses = 0
        self.unknown_statuses = 0
        self.deliveries = 0
        self.duplicate_deliveries = 0
        self.check_lag = 0.0
        self.outcomes = _zero_per_kind()

    def snapshot(self, *, tracked: int) -> PollerStats:
        """These counters now, with `tracked` (which the store counts), frozen."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values["outcomes"] = dict(self.outcomes)
        return PollerStats(tracked=tracked, **values)
