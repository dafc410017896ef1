"""The MessagePack `RedisStore.add_many` writes: task records built in Python, not in Lua.

Tracking 100,000 ids spent most of Redis's time in store_add_many.lua decoding a JSON chunk
and packing each record with `cmsgpack.pack` (about 1 s of 1.5 s). The client builds the
records instead, in the form `cmsgpack.unpack` reads (lua/_task.lua's short names), and
sends a chunk as one MessagePack array that the script unpacks in C.

Only the forms a chunk needs are written: str (Redis's cmsgpack has no bin type: it reads
a str as a Lua string, whatever the bytes), float 64, positive fixint and array. A record
read back by `task_load` holds the same Lua values as one `cmsgpack.pack` wrote: the same
strings, and the same doubles (cmsgpack packs a whole number as an integer, which unpacks
to the same Lua number). The order of a map's fields does not matter to a reader: the
times come last, so that all before them is the same for the tasks of one `track_many`.
"""

from __future__ import annotations

import struct
from typing import Final

#: The head of a str of each length below 256 (fixstr, then str 8).
_SHORT: Final = tuple(bytes((0xA0 | n,)) if n < 32 else bytes((0xD9, n)) for n in range(256))
_HEAD_16: Final = struct.Struct(">BH").pack
_HEAD_32: Final = struct.Struct(">BI").pack
#: The keys of a record's text fields (lua/_task.lua's names) as fixstr.
_CONTEXT_KEY, _TRACE_KEY, _SPEC_KEY, _MAC_KEY = b"\xa1c", b"\xa2tr", b"\xa2sp", b"\xa1m"
#: What `tail` writes: a record's three times (``s``, ``d``, ``ld``: float 64), which end
#: it, then the next three items of the chunk (a positive fixint and two float 64).
_TAIL: Final = struct.Struct(">3sd3sd4sdBBdBd")
_S, _D, _LD = b"\xa1s\xcb", b"\xa1d\xcb", b"\xa2ld\xcb"
_TIMES_SIZE: Final = len(_S + _D + _LD) + 3 * 8
_FLOAT: Final = 0xCB
#: Which check set a task goes to (store_add_many.lua): none, last checks, routine checks.
NO_CHECK, LAST_CHECK, ROUTINE_CHECK = 0, 1, 2


def _str_head(n: int) -> bytes:
    if n < 0x100:
        return _SHORT[n]
    if n < 0x10000:
        return _HEAD_16(0xDA, n)
    return _HEAD_32(0xDB, n)


def text(data: bytes) -> bytes:
    """`data` as a MessagePack str."""
    n = len(data)
    return (_SHORT[n] if n < 0x100 else _str_head(n)) + data


def array_head(n: int) -> bytes:
    """The head of a MessagePack array of `n` items (the items follow it)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return _HEAD_16(0xDC, n)
    return _HEAD_32(0xDD, n)


def record_head(context: bytes, trace: bytes, spec: bytes, mac: bytes = b"") -> bytes:
    """The start of a new task's record, as a chunk item (a str whose bytes are the
    record), up to the times `tail` writes: `context` is its JSON text, `trace` and `spec`
    likewise or ``b""`` for none, `mac` the fleet secret's MAC over them or ``b""`` (each
    absent when empty, as `task_start` leaves them). Polls, errors, token, lease and phase
    are absent: the defaults."""
    if not (trace or spec or mac):  # most tasks: the shortest way
        n = len(context)
        head = _SHORT[n] if n < 0x100 else _str_head(n)
        size = 3 + len(head) + n + _TIMES_SIZE
        return (_SHORT[size] if size < 0x100 else _str_head(size)) + b"\x84\xa1c" + head + context
    fields = [_CONTEXT_KEY, text(context)]
    for key, value in ((_TRACE_KEY, trace), (_SPEC_KEY, spec), (_MAC_KEY, mac)):
        if value:
            fields += [key, text(value)]
    # A map of these text fields and the three times.
    packed = bytes((0x80 | (len(fields) // 2 + 3),)) + b"".join(fields)
    return _str_head(len(packed) + _TIMES_SIZE) + packed


def tail(started: float, deadline: float, last_check: float, kind: int, due: float,
         deadline_score: float) -> bytes:  # fmt: skip
    """The end of a record `record_head` began (its times, server seconds), then the
    task's three other items: `kind` (`NO_CHECK`, `LAST_CHECK`, `ROUTINE_CHECK`), the
    check's score (ignored with `NO_CHECK`) and the task's score in `deadlines`."""
    return _TAIL.pack(_S, started, _D, deadline, _LD, last_check, kind, _FLOAT, due,
                      _FLOAT, deadline_score)  # fmt: skip
