"""The library's loggers, and its policy on what to say.

Events are built with structlog (key-value, cheap to add context to) and delivered
through the standard library's `logging`, under logger names below ``async_dispatch``.
So the library never configures logging and never writes to stdout: an application that
configured nothing sees only warnings, on stderr, by `logging`'s own last-resort rule;
one that configured `logging` gets records like any other library's; one that uses
structlog renders them with `structlog.stdlib.ProcessorFormatter` as usual (the fields
travel as the record's extras, so `structlog.stdlib.ExtraAdder` brings them back).

What is said:
- warning: what a person should act on (a 429 pausing the key, the key refused);
- info: a webhook refused, a task that cannot be tracked;
- debug: every check, retry and delay. Tracing is switched on by the logger's level,
  nothing else, and costs one level test per request when it is off.

Events carry `request_id`, `attempt`, `delay`, `status_code`; never the API key, never
response bodies (only the short excerpts that errors carry).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

__all__ = ["debug_enabled", "get_logger", "logger"]

ROOT = "async_dispatch"


def _to_record(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Hand an event to `logging`: a readable message, the fields as extras."""
    event = str(event_dict.pop("event", ""))
    exc_info = event_dict.pop("exc_info", None)
    fields = dict(event_dict)
    text = " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])
    extra = {"event": event, **{k: v for k, v in fields.items() if k not in _RESERVED}}
    kwargs: dict[str, Any] = {"extra": extra}
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (text,), kwargs


#: Attributes of `logging.LogRecord` that an extra may not overwrite.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def get_logger(name: str = ROOT) -> Any:
    """A structlog logger that delivers through the standard library logger `name`."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[_to_record],
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


logger = get_logger()


#: The standard-library logger behind `logger`, held so that asking its level costs no
#: lookup (`isEnabledFor` caches its own answer until logging is reconfigured).
_STDLIB: Final = logging.getLogger(ROOT)


def debug_enabled() -> bool:
    """Whether the library's debug events would go anywhere: the switch for tracing."""
    return _STDLIB.isEnabledFor(logging.DEBUG)
