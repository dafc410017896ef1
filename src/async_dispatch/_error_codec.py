"""Errors as plain data, for task stores that keep outcomes outside this process.

An outcome's `error` must mean the same whichever store carried it: a caller that writes
``isinstance(outcome.error, NotFoundError)`` against the memory store must not find a
different type when the outcome crossed Redis or a SQLite file. So an error is stored as
its class name and the attributes this library's errors carry, and rebuilt as that class.

Only this library's own classes are rebuilt (the names are looked up in a fixed table,
never imported), so stored data cannot make the reader construct anything else; any
other name becomes a plain `DispatchError` with the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from . import _errors
from ._errors import APIStatusError, DispatchError, InvalidResponseError

__all__ = ["error_from_data", "error_to_data"]

#: Every exception class of this library, by name.
_CLASSES: Final[dict[str, type[DispatchError]]] = {
    name: cls
    for name in _errors.__all__
    if isinstance(cls := getattr(_errors, name), type) and issubclass(cls, DispatchError)
}


def error_to_data(error: BaseException) -> dict[str, Any]:
    """`error` as JSON-ready data: its class name, message and the fields it carries."""
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, APIStatusError):
        data.update(
            status_code=error.status_code,
            request_id=error.request_id,
            body_excerpt=error.body_excerpt,
            retry_after=error.retry_after,
        )
    elif isinstance(error, InvalidResponseError):
        data.update(status_code=error.status_code, body_excerpt=error.body_excerpt)
    return data


def error_from_data(data: object) -> DispatchError | None:
    """The error `error_to_data` described, as its own class; None for no error."""
    if not isinstance(data, Mapping):
        return None
    message = str(data.get("message", ""))
    cls = _CLASSES.get(str(data.get("type", "")), DispatchError)
    try:
        if issubclass(cls, APIStatusError):
            return cls(
                message,
                status_code=_int(data.get("status_code")) or 0,
                request_id=_str(data.get("request_id")),
                body_excerpt=_str(data.get("body_excerpt")) or "",
                retry_after=_float(data.get("retry_after")),
            )
        if issubclass(cls, InvalidResponseError):
            return cls(
                message,
                status_code=_int(data.get("status_code")),
                body_excerpt=_str(data.get("body_excerpt")) or "",
            )
        return cls(message)
    except TypeError:  # a class whose constructor wants more (DeadlineExceeded)
        return DispatchError(message)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
