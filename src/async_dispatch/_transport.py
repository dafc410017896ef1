"""The HTTP client a `DispatchClient` builds for itself, and the transport under it.

Under asyncio, with aiohttp installed (the ``speedups`` extra), requests go through our
`AiohttpTransport`: measured on loopback it spends a fraction of httpcore's CPU per
request, and CPU is what limits a poller tracking thousands of tasks. Under trio, or
without aiohttp, httpx's own transport is used. Callers who want a specific transport pass
their own `httpx.AsyncClient` to `DispatchClient`.

Between a `DispatchClient` and the transport of a client it built there is nothing to
honour (no auth, event hooks, cookies or redirects), so its requests go straight to the
transport, skipping about a third of the CPU of a request. The exception is a proxy set
in the environment: httpx applies those only to transports it builds itself, so then the
client is built the ordinary way and requests go through it.

A request has one bound on its whole exchange, body included (a body trickled a byte at
a time must not hold a worker forever). A transport that can enforce it cheaply, with the
timer it already keeps, says so with a true `honours_deadline` attribute and finds the
bound in the `DEADLINE` request extension; for any other the client wraps the exchange in
a cancel scope, which costs a few per cent of a request's CPU.

Bodies are read here too, by `read_body()`, and decoded by us rather than by httpx: httpx
inflates each compressed chunk whole, so a 200 KB gzip body can become 200 MB in one
call, before any size check could run. We inflate with a bound instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import urllib.request
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

import httpx

from ._errors import InvalidResponseError

__all__ = [
    "ACCEPT_ENCODING",
    "DEADLINE",
    "KEEPALIVE_EXPIRY",
    "DirectExchange",
    "PreparedHeaders",
    "aiohttp_available",
    "default_transport",
    "direct_exchange",
    "own_client",
    "read_body",
    "read_chunks",
    "running_asyncio",
]

#: Seconds an idle connection is kept for reuse.
KEEPALIVE_EXPIRY: Final = 30.0
#: What we ask for, and all we decode: codings we can inflate with a bound on the output.
ACCEPT_ENCODING: Final = "gzip, deflate"
#: The request extension that carries when the whole exchange must be over, in the event
#: loop's clock (`anyio.current_time()`), to a transport whose `honours_deadline` is true.
DEADLINE: Final = "async_dispatch.deadline"
#: Codings httpx decodes when an optional package is installed, but not within a bound.
_UNBOUNDED_CODINGS: Final = frozenset({"br", "zstd"})


class PreparedHeaders:
    """Request headers built once and sent as they are, their values hidden from `repr`.

    They hold the API key: a traceback rendered with its locals shows this object's repr,
    never the values.
    """

    __slots__ = ("items", "names")

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self.items = list(items)
        #: The header names, lower-cased: what a transport asks to know whether it must
        #: keep its HTTP stack from adding defaults of its own.
        self.names = frozenset(name.lower() for name, _ in self.items)

    def __repr__(self) -> str:
        return f"PreparedHeaders(<{len(self.items)} headers hidden>)"


@runtime_checkable
class DirectExchange(Protocol):
    """A transport that also does a whole body-less exchange itself, without any httpx
    `Request` or `Response` built for it: what a status check costs most of its CPU in.

    It keeps every guarantee of the httpx path: the whole exchange is over by `deadline`
    (`anyio.current_time()`), the body is refused past `limit` decoded bytes, only gzip
    and deflate are decoded, and failures are raised as the same httpx errors.
    """

    async def exchange(
        self, method: str, url: str, headers: PreparedHeaders, *, deadline: float, limit: int
    ) -> tuple[int, Mapping[str, str], bytes]: ...


def direct_exchange(transport: object) -> DirectExchange | None:
    """`transport` if it does whole status reads itself (`DirectExchange`), else None."""
    return transport if isinstance(transport, DirectExchange) else None


def own_client(
    *, max_connections: int, timeout: httpx.Timeout
) -> tuple[httpx.AsyncClient, httpx.AsyncBaseTransport | None]:
    """A client for a `DispatchClient` to own, and the transport its requests may go
    straight to (None when they must go through the client: proxies from the environment).
    """
    if urllib.request.getproxies():
        limits = pool_limits(max_connections)
        return httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False), None
    transport = default_transport(max_connections=max_connections)
    client = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
    return client, transport


def default_transport(*, max_connections: int) -> httpx.AsyncBaseTransport:
    """The fastest transport that works on the running event loop.

    Call it inside the event loop that will use it: the choice depends on which one runs.
    """
    if running_asyncio() and aiohttp_available():
        from ._aiohttp_transport import AiohttpTransport

        return AiohttpTransport(max_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY)
    return httpx_transport(max_connections=max_connections)


def httpx_transport(*, max_connections: int) -> httpx.AsyncHTTPTransport:
    """httpx's own transport with deliberate pool limits.

    Keep-alive connections match the pool size: httpx's default of 20 keep-alive slots
    under heavier concurrency closes and reopens connections until requests time out.
    """
    return httpx.AsyncHTTPTransport(limits=pool_limits(max_connections))


def pool_limits(max_connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )


def aiohttp_available() -> bool:
    """Whether aiohttp can be imported (without importing it: that costs ~100 ms)."""
    return importlib.util.find_spec("aiohttp") is not None


def running_asyncio() -> bool:
    """Whether the calling code runs in an asyncio event loop (and not trio's).

    anyio 4 has no public "which backend" call and no longer depends on sniffio, so sniffio
    is asked when it is installed (it knows about trio running as an asyncio guest), else
    the presence of a running asyncio loop decides.
    """
    try:
        import sniffio
    except ImportError:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The body of `response`, decoded, or `InvalidResponseError` once it passes `limit`.

    Both the bytes received and the bytes they decode to are counted, as they arrive:
    nothing larger than about `limit` (plus one network chunk) is ever held. Codings are
    decoded as httpx would (``gzip`` and ``deflate``, in the order listed, unknown ones
    passed through), except ``br`` and ``zstd``, which we never ask for and cannot inflate
    within a bound, so they are refused.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(response.status_code, limit)
    try:
        body = response.content  # built in memory (a mock transport): already read whole
    except httpx.ResponseNotRead:
        pass
    else:
        if len(body) > limit:
            raise _too_large(response.status_code, limit)
        return body
    codings = (
        response.headers.get_list("content-encoding", split_commas=True)
        if "content-encoding" in response.headers
        else ()
    )
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("read_body() needs a response with an async stream")
    # The stream itself, not `aiter_raw()`: its async generator wraps the stream's, which
    # closing the outer one would leave for the garbage collector to finalise.
    return await read_chunks(
        stream.__aiter__(), limit, status_code=response.status_code, codings=codings
    )


async def read_chunks(
    raw_chunks: AsyncIterator[bytes],
    limit: int,
    *,
    status_code: int,
    codings: Sequence[str],
    declared: str = "",
) -> bytes:
    """A body from its raw chunks, decoded by `codings` (the ``Content-Encoding`` values,
    as applied), or `InvalidResponseError` once the bytes received or decoded pass `limit`
    (or at once, when the `declared` ``Content-Length`` does). The iterator is closed
    (``aclose``) on the way out, however that is."""
    chunks: list[bytes] = []
    received = size = 0
    try:
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(status_code, limit)
        # Most bodies are not encoded: then nothing is decoded and only one count is kept.
        decoders = _decoders_for(codings, limit, status_code) if codings else ()
        async for raw in raw_chunks:
            received += len(raw)
            if received > limit:
                raise _too_large(status_code, limit)
            if decoders:
                for decoder in decoders:
                    raw = decoder.decode(raw)
                size += len(raw)
                if size > limit:
                    raise _too_large(status_code, limit)
            chunks.append(raw)
    finally:
        # An async generator left early is finalised now, not whenever GC finds it.
        aclose = getattr(raw_chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    if decoders:
        tail = b""
        for decoder in decoders:
            tail = decoder.decode(tail) + decoder.flush()
        if size + len(tail) > limit:
            raise _too_large(status_code, limit)
        chunks.append(tail)
    return b"".join(chunks)


class _Inflater:
    """Incremental gzip/deflate decoding that never produces more than `limit` bytes."""

    __slots__ = ("_coding", "_first", "_limit", "_produced", "_status_code", "_zlib")

    def __init__(self, coding: str, limit: int, status_code: int) -> None:
        self._coding = coding
        self._limit = limit
        self._status_code = status_code
        self._produced = 0
        self._first = True
        # gzip: the gzip wrapper; deflate: the zlib wrapper, raw deflate as a fallback
        # (servers send either under that name, and httpx accepts both).
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        if not data:
            return b""
        first, self._first = self._first, False
        budget = self._limit - self._produced + 1
        try:
            # `max_length` is the bound: zlib stops there and keeps the rest unconsumed.
            out = self._zlib.decompress(data, budget)
        except zlib.error as exc:
            if not (first and self._coding == "deflate"):
                raise self._undecodable(exc) from None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data)
        return self._count(out)

    def flush(self) -> bytes:
        try:
            out = self._zlib.flush(self._limit - self._produced + 1)
        except zlib.error as exc:
            raise self._undecodable(exc) from None
        return self._count(out)

    def _count(self, out: bytes) -> bytes:
        self._produced += len(out)
        if self._produced > self._limit:
            raise _too_large(self._status_code, self._limit)
        return out

    def _undecodable(self, exc: zlib.error) -> InvalidResponseError:
        return InvalidResponseError(
            f"the body could not be decoded (Content-Encoding {self._coding}: {exc})",
            status_code=self._status_code,
        )


def _decoders_for(codings: Sequence[str], limit: int, status_code: int) -> list[_Inflater]:
    """Decoders in the order to apply them: the reverse of the order codings were applied."""
    decoders = []
    for value in codings:
        coding = value.strip().lower()
        if coding in ("gzip", "deflate"):
            decoders.append(_Inflater(coding, limit, status_code))
        elif coding in _UNBOUNDED_CODINGS:
            raise InvalidResponseError(
                f"the body has Content-Encoding {coding!r}, which this client does not ask "
                f"for ({ACCEPT_ENCODING!r}) and cannot decode within max_body_size",
                status_code=status_code,
            )
    decoders.reverse()
    return decoders


def _too_large(status_code: int, limit: int) -> InvalidResponseError:
    return InvalidResponseError(
        f"response body exceeds max_body_size={limit} bytes (decoded); not read",
        status_code=status_code,
    )
