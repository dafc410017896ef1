"""Misbehaving servers and what a test reads from the errors they cause: shared by the
`test_hostile_*` files (each stages one kind of hostile or broken server)."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc

from _foundation_helpers import (
    KEY,
    NO_RETRY,
)
from async_dispatch import (
    DispatchClient,
)


async def read_request(conn: anyio.abc.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await conn.receive()
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += await conn.receive()
    return head


async def trickle(conn: anyio.abc.SocketStream) -> None:
    """Promise 1000 bytes, then send one every 0.2 s: every read is quick, the body never ends."""
    await read_request(conn)
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{")
    for _ in range(999):
        await anyio.sleep(0.2)
        await conn.send(b" ")


async def hang_up(conn: anyio.abc.SocketStream) -> None:
    """Read the request, then close without a word."""
    await read_request(conn)


def own_client(url: str, **kwargs: Any) -> DispatchClient:
    """A client that builds its own HTTP client: aiohttp on asyncio, httpx on trio."""
    kwargs.setdefault("execution_mode", "cloud")
    return DispatchClient(api_key=KEY, base_url=url, retry=NO_RETRY, **kwargs)


def rendered(exc: BaseException) -> str:
    """The traceback as a renderer that shows every frame's locals would print it."""
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything chained below it, as cause *or* context (suppressed or not)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        todo += [e for e in (link.__cause__, link.__context__) if e is not None]


def shown(exc: BaseException) -> list[str]:
    """What every link of the chain can show: str, repr, args, a JSON error's document."""
    texts = []
    for link in chain(exc):
        texts += [str(link), repr(link), *map(repr, link.args)]
        texts += [repr(getattr(link, name, "")) for name in ("doc", "object", "body_excerpt")]
    return texts
