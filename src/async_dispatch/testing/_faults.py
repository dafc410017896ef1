"""Choosing which request goes wrong, and how it looks on the wire when it does.

Every choice comes from one seeded ``random.Random`` drawn in request order, with the same
number of draws for every request of an endpoint, so a run with the same seed and the same
sequence of requests fails in exactly the same places.
"""

from __future__ import annotations

import contextvars
import enum
import random

import attrs

from ._config import Faults

__all__ = ["DELIBERATE_DROP", "Fault", "FaultPicker", "Injection"]


class Fault(enum.Enum):
    """The kinds of misbehaviour the simulator injects; values name them in ``stats``."""

    SERVER_ERROR = "server_error"
    HTML_ERROR = "html_error"
    HTML_OK = "html_ok"
    TRUNCATED_JSON = "truncated_json"
    DROP = "drop"
    SLOW = "slow"
    UNKNOWN_STATUS = "unknown_status"


@attrs.frozen
class Injection:
    """The fault chosen for one request; ``status`` is the code of a ``SERVER_ERROR``."""

    fault: Fault
    status: int = 0


DELIBERATE_DROP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "async_dispatch_simulator_deliberate_drop", default=False
)
"""Set by the app when it drops a connection on purpose, so the server's log filter can
tell a simulated drop from a real bug (see ``_server``)."""


class FaultPicker:
    """Draws at most one fault per request from the configured probabilities."""

    __slots__ = ("_faults", "_rng", "_table")

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng
        table = (
            (Fault.SERVER_ERROR, faults.server_error),
            (Fault.HTML_ERROR, faults.html_error),
            (Fault.HTML_OK, faults.html_ok),
            (Fault.TRUNCATED_JSON, faults.truncated_json),
            (Fault.DROP, faults.drop),
            (Fault.SLOW, faults.slow),
            (Fault.UNKNOWN_STATUS, faults.unknown_status),
        )
        self._table = tuple((fault, p) for fault, p in table if p > 0)

    def pick(self, *, submit: bool) -> Injection | None:
        """The fault for this request, or None. Call it once per request, in order."""
        if not self._table or not (self._faults.on_submit if submit else self._faults.on_status):
            return None
        r = self._rng.random()
        code = self._rng.choice(self._faults.server_error_codes)  # drawn always: fixed count
        for fault, probability in self._table:
            if r < probability:
                if fault is Fault.UNKNOWN_STATUS and submit:
                    return None  # a submit answer has no status field to garble
                return Injection(fault, code if fault is Fault.SERVER_ERROR else 0)
            r -= probability
        return None


REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def html_page(status: int, reason: str) -> bytes:
    """A page like the ones nginx and cloud load balancers send instead of JSON."""
    return (
        "<!DOCTYPE html>\n<html>\n<head><title>"
        f"{status} {reason}</title></head>\n<body>\n<center><h1>{status} {reason}</h1></center>\n"
        "<hr><center>nginx</center>\n</body>\n</html>\n"
    ).encode()


HTML_OK_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in to continue</title></head>\n"
    b"<body><h1>Network login required</h1><p>Please sign in to use this network.</p>"
    b"</body></html>\n"
)
