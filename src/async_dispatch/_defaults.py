"""`POLLER_DEFAULTS`: the one home of a poller's default settings.

`Poller` and `DispatchRuntime` take the same settings, and the CLI offers them as
options; each names these values instead of restating the numbers, so a default
changed here changes everywhere at once (and the docs that quote them have one place to
be checked against).
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["POLLER_DEFAULTS", "PollerDefaults"]


@attrs.frozen
class PollerDefaults:
    """What a `Poller` (and a `DispatchRuntime`) uses for each setting not given."""

    #: Status checks and submits per second, shared by the key (the token bucket's rate).
    rate: float = 10.0
    #: Requests that may go at once after a quiet spell (the token bucket's burst).
    burst: int = 10
    #: Seconds a task may take before it ends TIMED_OUT.
    deadline: float = 600.0
    #: Seconds before a task's first check; the wait then grows with its age...
    initial_interval: float = 2.0
    #: ...up to this many seconds between checks.
    max_interval: float = 10.0
    #: Status checks in flight at once.
    max_in_flight: int = 10
    #: With webhooks (a ``callback_url``), seconds between the checks that catch a lost
    #: delivery.
    safety_interval: float = 60.0
    #: The fraction by which each wait is spread at random, so checks do not move in step.
    jitter: float = 0.2


#: The defaults, for signatures (``rate: float = POLLER_DEFAULTS.rate``) and the CLI.
POLLER_DEFAULTS: Final = PollerDefaults()
