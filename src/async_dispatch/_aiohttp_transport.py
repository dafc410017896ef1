"""An httpx transport that sends requests with aiohttp: httpx's API at a fraction of its CPU.

httpx's own connection pool (httpcore) costs several times more CPU per request than
aiohttp's C-accelerated HTTP parser and connector. Keeping httpx as the client (its
`Request`/`Response`, timeouts, events) and swapping only the transport keeps one code path
in `DispatchClient` while the bytes move through aiohttp. asyncio only: aiohttp has no
trio support, so `default_transport()` picks this transport only under asyncio.

The one thing this module must get exactly right is *when* a failure happened. The client
re-sends a submit only when the request provably never left (httpx's `ConnectError`,
`ConnectTimeout`, `PoolTimeout`); anything after that raises `SubmitUncertainError`. So
only failures that aiohttp raises before it writes a byte map to those three. Everything
else, including aiohttp's `ServerDisconnectedError` (a "connection error" in aiohttp's
tree, but it happens after the request went out) and any error we do not recognise, maps
to an httpx error that means "the request may have been received".

Timeouts come from httpx's ``timeout`` request extension: ``pool`` bounds the wait for a
free connection slot (our own semaphore, so it can be told apart from a connect timeout),
``connect`` bounds connection setup, ``read`` bounds each wait for bytes. aiohttp has no
write timeout; ``write`` is not enforced. The `DEADLINE` extension, when present, bounds
the whole exchange, slot wait and body included, with aiohttp's own ``total`` timer.

Bodies are not decompressed here: aiohttp hands over the bytes as received, and the
client's `read_body()` (``_transport.py``) inflates them with a bound on the output, as
it does over httpx's own transport. Whoever reads the response the ordinary httpx way
(``await response.aread()``) gets httpx's own, unbounded, decoding instead.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final

import aiohttp
import httpx
import yarl

from ._errors import drop_tracebacks
from ._transport import DEADLINE, PreparedHeaders, read_chunks
from ._validation import check_int, check_seconds

__all__ = ["AiohttpTransport"]

#: The headers aiohttp adds unless told to skip them: httpx owns them (or, on a status
#: read, the client's prepared headers do), so aiohttp never adds its own.
_AUTO_HEADERS: Final = frozenset({"user-agent", "accept", "accept-encoding"})
#: Read size when streaming a body: what is available, up to this much.
_CHUNK: Final = 64 * 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncBaseTransport` over one lazily created `aiohttp.ClientSession`.

    Args:
        max_connections: Connections open at once; requests beyond that wait for a free
            slot up to the ``pool`` timeout, then fail with `httpx.PoolTimeout`.
        keepalive_expiry: Seconds an idle connection stays in the pool.
        ssl_context: For ``https://``; by default the system's verified context.

    The session is made on first use, inside the running event loop (aiohttp binds it to
    the loop), and closed by `aclose()`, which `httpx.AsyncClient.aclose()` calls.
    """

    def __init__(
        self,
        *,
        max_connections: int = 16,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        check_int("max_connections", max_connections, minimum=1)
        check_seconds("keepalive_expiry", keepalive_expiry, maximum=86_400.0)
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._totals: dict[float, aiohttp.ClientTimeout] = {}
        self._closed = False

    #: It enforces the `DEADLINE` request extension (see `async_dispatch._transport`).
    honours_deadline: Final = True

    def __repr__(self) -> str:
        return f"AiohttpTransport(max_connections={self.max_connections})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session, slots = self._open()
        timeout = request.extensions.get("timeout", {})
        deadline: float | None = request.extensions.get(DEADLINE)
        pool = timeout.get("pool")
        if deadline is not None:
            left = deadline - asyncio.get_running_loop().time()
            pool = left if pool is None else min(pool, left)
        await _take_slot(slots, pool, request)
        try:
            response = await self._send(session, request, timeout, deadline)
        except BaseException:
            slots.release()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, slots, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def exchange(
        self, method: str, url: str, headers: PreparedHeaders, *, deadline: float, limit: int
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One body-less request, its body read: `DirectExchange`, with no httpx objects.

        The same steps as `handle_async_request` followed by `read_body` (slot, one total
        timer to `deadline`, bounded decoding, the same error mapping), at well under half
        its CPU: building httpx's `Request`, `URL`, `Response` and `Headers` is most of
        what a status check costs the client. `url` must be normalised already (as
        `httpx.URL` would write it); `headers` are sent as they are.
        """
        session, slots = self._open()
        clock = asyncio.get_running_loop().time
        left = deadline - clock()
        if slots.locked():
            await _take_slot(slots, left, None)
            left = deadline - clock()
        else:
            await slots.acquire()  # free: taken at once, so `left` is still what is left
        try:
            # `_request()`, inlined: one coroutine less on every status read.
            response = await session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers.items,
                # None when the headers name every default aiohttp would add: then it adds
                # nothing, and skips building the skip list on each request.
                skip_auto_headers=None if headers.names >= _AUTO_HEADERS else _AUTO_HEADERS,
                allow_redirects=False,
                compress=False,
                timeout=self._total_timeout(left),
            )
        except Exception as exc:
            slots.release()
            mapped = _translated(exc, None)
            if mapped is None:
                raise  # with aiohttp's frames already forgotten
            raise mapped from exc
        except BaseException:
            slots.release()
            raise
        stream = _ResponseStream(response, slots, None)
        headers_in = response.headers
        declared = headers_in.get("content-length", "")
        try:
            if (
                "content-encoding" not in headers_in
                and declared.isdigit()
                and int(declared) <= limit
            ):
                # The usual answer, a small plain body of known length: aiohttp reads no
                # more than the length, so it is read in one call, under the same timer.
                body = await stream.read_whole()
            else:
                body = await read_chunks(
                    stream.__aiter__(),
                    limit,
                    status_code=response.status,
                    codings=_codings(headers_in.getall("content-encoding", ())),
                    declared=declared,
                )
        finally:
            await stream.aclose()
        return response.status, headers_in, body

    async def aclose(self) -> None:
        """Close every pooled connection. The transport cannot be used afterwards."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- plumbing -----------------------------------------------------------------------

    def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is not None and self._slots is not None:
            return self._session, self._slots
        if self._closed:
            raise RuntimeError("this AiohttpTransport was closed")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AiohttpTransport needs a running asyncio event loop (aiohttp does not run "
                "under trio); use httpx.AsyncHTTPTransport there"
            ) from None
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=0,
            keepalive_timeout=self.keepalive_expiry,
            ssl=self._ssl_context if self._ssl_context is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The client owns decompression (bounded, in read_body()); httpx owns
            # cookies, redirects and default headers.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            # No `skip_auto_headers` here: each request says (`_AUTO_HEADERS`), so that a
            # status read naming them all costs aiohttp no skip list.
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._slots = asyncio.Semaphore(self.max_connections)
        return self._session, self._slots

    async def _send(
        self,
        session: aiohttp.ClientSession,
        request: httpx.Request,
        timeout: dict[str, float | None],
        deadline: float | None,
    ) -> aiohttp.ClientResponse:
        data: bytes | AsyncIterator[bytes] | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            # A streamed body: aiohttp frames it itself (chunked), so drop httpx's framing.
            data = _aiter(request.stream)
        return await self._request(
            session,
            request.method,
            str(request.url),
            # Not in a local: this frame's locals show in tracebacks that render them.
            _headers_of(request, chunked=not isinstance(data, bytes | None)),
            data,
            request,
            self._timeout(timeout.get("connect"), timeout.get("read"), deadline),
        )

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: PreparedHeaders,
        data: bytes | AsyncIterator[bytes] | None,
        request: httpx.Request | None,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send, and map a failure to httpx's errors with aiohttp's frames forgotten.

        `headers` hold the API key, so they come wrapped (`PreparedHeaders`): this frame
        is on the traceback of any error raised here, and renderers show its locals.
        """
        try:
            return await session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers.items,
                skip_auto_headers=_AUTO_HEADERS,
                data=data,
                allow_redirects=False,
                compress=False,
                timeout=timeout,
            )
        except Exception as exc:
            mapped = _translated(exc, request)
            if mapped is None:
                raise  # with aiohttp's frames already forgotten
            raise mapped from exc

    def _total_timeout(self, left: float) -> aiohttp.ClientTimeout:
        """aiohttp's total timer for `left` seconds, cut down to whole milliseconds so
        that one object serves every exchange of the same bound (a status read's is
        always the client's `timeout`, less the microseconds since it was asked)."""
        total = max(0.0, math.floor(left * 1000.0) / 1000.0)
        found = self._totals.get(total)
        if found is None:
            found = aiohttp.ClientTimeout(total=total, ceil_threshold=math.inf)
            if len(self._totals) < 64:
                self._totals[total] = found
        return found

    def _timeout(
        self, connect: float | None, read: float | None, deadline: float | None
    ) -> aiohttp.ClientTimeout:
        if deadline is not None:
            # What is left of the whole exchange: aiohttp's total timer bounds the body's
            # reads too. Not rounded up to whole seconds (aiohttp's `ceil_threshold`).
            total = max(0.0, deadline - asyncio.get_running_loop().time())
            return aiohttp.ClientTimeout(
                total=total,
                connect=connect,
                sock_connect=connect,
                sock_read=read,
                ceil_threshold=math.inf,
            )
        key = (connect, read)
        found = self._timeouts.get(key)
        if found is None:
            found = aiohttp.ClientTimeout(
                total=None, connect=connect, sock_connect=connect, sock_read=read
            )
            if len(self._timeouts) < 64:
                self._timeouts[key] = found
        return found


async def _take_slot(
    slots: asyncio.Semaphore, pool_timeout: float | None, request: httpx.Request | None
) -> None:
    """Wait for a connection slot, at most `pool_timeout` seconds (`PoolTimeout` after)."""
    if not slots.locked():
        await slots.acquire()
        return
    try:
        await asyncio.wait_for(slots.acquire(), pool_timeout)
    except asyncio.TimeoutError:
        raise httpx.PoolTimeout(
            f"no free connection within {pool_timeout}s", request=request
        ) from None


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response; closing it frees the connection and its slot.

    A body read to the end leaves the connection in the pool for reuse; one closed early
    closes the connection (aiohttp decides), as httpx's own transport does.
    """

    __slots__ = ("_request", "_response", "_slots")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        slots: asyncio.Semaphore,
        request: httpx.Request | None,
    ) -> None:
        self._response = response
        self._slots: asyncio.Semaphore | None = slots
        self._request = request

    async def read_whole(self) -> bytes:
        """The whole body at once: only for one whose length is known and acceptable."""
        try:
            return await self._response.read()
        except Exception as exc:
            mapped = _translated(exc, self._request)
            if mapped is None:
                raise  # with aiohttp's frames already forgotten
            raise mapped from exc

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.read(_CHUNK):
                yield chunk
        except Exception as exc:
            mapped = _translated(exc, self._request)
            if mapped is None:
                raise  # with aiohttp's frames already forgotten
            raise mapped from exc

    async def aclose(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            self._response.release()
            slots.release()


async def _aiter(stream: httpx.AsyncByteStream | httpx.SyncByteStream) -> AsyncIterator[bytes]:
    if isinstance(stream, httpx.AsyncByteStream):
        async for chunk in stream:
            yield chunk
    else:
        for chunk in stream:
            yield chunk


def _headers_of(request: httpx.Request, *, chunked: bool) -> PreparedHeaders:
    """The request's headers for aiohttp (without httpx's framing for a streamed body)."""
    headers = request.headers.multi_items()
    if chunked:
        headers = [(k, v) for k, v in headers if k != "transfer-encoding"]
    return PreparedHeaders(headers)


def _codings(values: Sequence[str]) -> list[str]:
    """The ``Content-Encoding`` values, comma-separated lists split, as httpx splits them."""
    return [coding.strip() for value in values for coding in value.split(",")]


def _translated(exc: Exception, request: httpx.Request | None) -> httpx.TransportError | None:
    """The httpx error for an aiohttp failure (None: re-raise it), with aiohttp's frames
    forgotten (`drop_tracebacks`): its request frame holds the headers, so the API key,
    in a local that renderers of tracebacks with locals print."""
    drop_tracebacks(exc)
    return _map_error(exc, request)


def _map_error(exc: Exception, request: httpx.Request | None) -> httpx.TransportError | None:
    """The httpx error for an aiohttp failure; "not sent" only when provably not sent.

    Order matters: the specific classes come before the aiohttp base classes they derive
    from (`ServerDisconnectedError` is a `ClientConnectionError`; `ClientConnectorError`
    is a `ClientOSError`).
    """
    message = str(exc) or type(exc).__name__
    # Before the request was written: safe to send again.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(message, request=request)
    # After: the server may have received (and acted on) the request.
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(
        exc,
        (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError),
    ):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return httpx.WriteError(message, request=request)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return httpx.ReadError(message, request=request)
    return None
