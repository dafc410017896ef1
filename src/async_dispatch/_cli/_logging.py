"""The library's warnings on stderr while one command runs, and nothing global.

A handler is attached to the ``async_dispatch`` logger for the command's duration and
removed afterwards, so a program that embeds `run()` keeps its own logging exactly as it
was. It writes through the command's `Redactor`: a logged message that echoes the key
shows ``***``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Final

from ._output import Redactor
from ._program import PROG

__all__ = ["library_logging"]

#: Library events the CLI reports itself, as its one error line.
_REPORTED_EVENTS: Final = frozenset({"api_key_refused"})


def _not_reported_by_the_cli(record: logging.LogRecord) -> bool:
    """Drop the events that the command's own error line already tells."""
    message = record.msg
    event = message.get("event") if isinstance(message, dict) else str(message)
    return not any(name in str(event) for name in _REPORTED_EVENTS)


@contextlib.contextmanager
def library_logging(err: Redactor, *, quiet: bool) -> Iterator[None]:
    """Show the library's warnings (errors only when `quiet`) on `err` for this command."""
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.ERROR if quiet else logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler.addFilter(_not_reported_by_the_cli)
    library = logging.getLogger("async_dispatch")
    library.addHandler(handler)
    try:
        yield
    finally:
        library.removeHandler(handler)
