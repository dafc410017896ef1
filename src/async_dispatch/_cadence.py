"""`Cadence`: when a tracked task is next worth a status request.

Young tasks finish often and old ones rarely, so a task `age` seconds old is checked
every ``age * age_factor`` seconds, clamped to ``[initial_interval, max_interval]`` and
spread by `jitter` so that tasks submitted together do not stay in lockstep. Hybrid mode
(webhooks first) is the same policy with both bounds at the safety interval.

One more rule makes deadlines honest: a task whose next routine check would fall at or
after its deadline gets a *last check* `last_check_lead` seconds before it instead (at
most one initial interval before it, for short-lived tasks), and
the store serves last checks ahead of routine ones. A TIMED_OUT outcome then means the
service still said "not finished" near the deadline, not that the budget was busy.
"""

from __future__ import annotations

import math
import random

import attrs

from ._defaults import POLLER_DEFAULTS
from ._errors import UsageError
from ._validation import check_seconds

__all__ = ["Cadence", "NextCheck"]


def _finite_positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(attribute.name, value)


def _fraction(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UsageError(f"{attribute.name} must be in [0, 1), got {value!r}")


@attrs.frozen(slots=True)
class NextCheck:
    """When to check a task next (`math.inf`: no more checks, the deadline decides).

    A check due at or after the task's last-check time (``deadline - Cadence.lead``) is
    its last one: the store files it by that rule, so nothing else marks it.
    """

    due: float


@attrs.frozen(kw_only=True)
class Cadence:
    """How often a task is checked. Immutable; share one between pollers freely."""

    initial_interval: float = attrs.field(
        default=POLLER_DEFAULTS.initial_interval, validator=_finite_positive
    )
    max_interval: float = attrs.field(
        default=POLLER_DEFAULTS.max_interval, validator=_finite_positive
    )
    age_factor: float = attrs.field(default=0.25, validator=_finite_positive)
    jitter: float = attrs.field(default=POLLER_DEFAULTS.jitter, validator=_fraction)
    last_check_lead: float = attrs.field(default=2.0, validator=_finite_positive)

    @classmethod
    def fixed(cls, interval: float, *, jitter: float = POLLER_DEFAULTS.jitter) -> Cadence:
        """The same interval at every age: the safety-net poll of hybrid mode."""
        return cls(initial_interval=interval, max_interval=interval, jitter=jitter)

    def first(self, now: float, deadline: float, rng: random.Random) -> NextCheck:
        """The first check of a task tracked at `now`: one at least, unless it is already
        past its deadline."""
        if deadline <= now:
            return NextCheck(math.inf)
        due = now + self._jittered(self.initial_interval, rng)
        last = deadline - self.lead
        if due < last:
            return NextCheck(due)
        return NextCheck(max(now, min(due, last)))

    def next(self, started: float, now: float, deadline: float, rng: random.Random) -> NextCheck:
        """The routine check after one made at `now`, for a task tracked at `started`."""
        interval = min(
            max(self.max_interval, self.initial_interval),
            max(self.initial_interval, (now - started) * self.age_factor),
        )
        return self.bound(now, now + self._jittered(interval, rng), deadline)

    def bound(self, now: float, due: float, deadline: float) -> NextCheck:
        """`due`, unless it falls in the last stretch before `deadline`.

        Then the check moves to the start of that stretch and becomes the last one; a
        check made inside the stretch is the last, so nothing more is scheduled and the
        deadline decides (`due` is `math.inf`).
        """
        last = deadline - self.lead
        if due < last:
            return NextCheck(due)
        if now < last:
            return NextCheck(last)
        return NextCheck(math.inf)

    #: How long before a deadline its last check falls: `last_check_lead`, but never
    #: more than one routine interval, so a task with a short deadline keeps its routine
    #: checks until close to the end.
    lead: float = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "lead", min(self.last_check_lead, self.initial_interval))

    def _jittered(self, interval: float, rng: random.Random) -> float:
        if not self.jitter:
            return interval
        return interval * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))
