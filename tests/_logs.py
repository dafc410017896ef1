"""Capture the library's log events, as structlog's `capture_logs` does for structlog's.

The library delivers its events through the standard library's `logging` (see
`async_dispatch._log`), with the event name and fields as the record's extras.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _ListHandler(logging.Handler):
    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        self.events.append({"log_level": record.levelname.lower(), **fields})


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Every event logged under ``async_dispatch`` in the block, as dicts."""
    events: list[dict[str, Any]] = []
    handler = _ListHandler(events)
    logger = logging.getLogger("async_dispatch")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
