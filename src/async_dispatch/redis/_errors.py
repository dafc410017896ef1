"""The one error fleet mode adds, defined in the core because the poller rides it out."""

from __future__ import annotations

from .._errors import CoordinationError

__all__ = ["CoordinationError"]
