"""The aiohttp-backed httpx transport, over real loopback TCP, and how the default is chosen.

The server is a few lines of asyncio streams so each test can misbehave exactly as it
needs: answer, stream, hang, or drop the connection at a chosen moment. What matters most
is the error mapping: only failures before the request left may look like connect errors,
because the client re-sends a submit after those.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import anyio
import httpx
import pytest

from async_dispatch import (
    DispatchClient,
    InvalidResponseError,
    RetryPolicy,
    SubmitUncertainError,
    TransportError,
)
from async_dispatch._aiohttp_transport import AiohttpTransport, _map_error
from async_dispatch._transport import (
    DEADLINE,
    PreparedHeaders,
    default_transport,
    read_body,
    running_asyncio,
)

# aiohttp runs on asyncio only; the choice of transport itself is tested on both below.
pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Received"], Awaitable[None]]
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Received:
    """What the server saw: the request line, headers and body of the last request."""

    def __init__(self, line: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.line = line
        self.headers = headers
        self.body = body

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


class Server:
    """A loopback HTTP/1.1 server whose behaviour per path is a handler coroutine."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.requests: list[Received] = []
        self.connections = 0
        self.open_connections = 0
        #: Set whenever the last open connection closes.
        self.all_closed = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        self.all_closed.clear()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers = []
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = raw.decode().partition(":")
                    headers.append((name.strip(), value.strip()))
                length = sum(int(v) for k, v in headers if k.lower() == "content-length")
                if any(k.lower() == "transfer-encoding" for k, _ in headers):
                    body = await _read_chunked(reader)
                else:
                    body = await reader.readexactly(length)
                received = Received(line.decode().strip(), headers, body)
                self.requests.append(received)
                path = received.line.split()[1]
                await self.routes[path](reader, writer, received)
                if writer.is_closing():
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_connections -= 1
            if not self.open_connections:
                self.all_closed.set()
            writer.close()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readline()).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readline()
    await reader.readline()
    return body


def _answer(status: int, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    writer.write(_answer(200, b'{"status":"pending"}', "Content-Type: application/json"))
    await writer.drain()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    writer.write(_answer(201, r.body, "X-Echo: yes", "X-Echo: twice"))
    await writer.drain()


async def teapot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    writer.write(_answer(503, b"<html>down</html>", "Retry-After: 7"))
    await writer.drain()


async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    writer.write(_answer(200, gzip.compress(b"hello " * 100), "Content-Encoding: gzip"))
    await writer.drain()


async def chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in (b"one,", b"two,", b"three"):
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
        await asyncio.sleep(0.02)
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    """Headers promise 100 bytes; 10 arrive, then the connection closes."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    await writer.drain()
    writer.close()


async def hangup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    """Read the whole request, then close without a byte of answer."""
    writer.close()


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    await asyncio.sleep(30)


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received) -> None:
    """Promise 1000 bytes, then send one every 0.1 s: no read waits long, the body never ends."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{")
    for _ in range(999):
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b" ")


ROUTES: dict[str, Handler] = {
    "/ok": ok,
    "/echo": echo,
    "/teapot": teapot,
    "/gzip": gzipped,
    "/chunks": chunks,
    "/cut": cut,
    "/hangup": hangup,
    "/hang": hang,
    "/trickle": trickle,
}


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server(ROUTES) as running:
        yield running


def _client(max_connections: int = 4, timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=max_connections), timeout=timeout
    )


async def test_get_round_trip(server: Server) -> None:
    async with _client() as http:
        response = await http.get(f"{server.url}/ok", headers={"x-api-key": "k"})
    assert response.status_code == 200
    assert response.json() == {"status": "pending"}
    assert response.headers["content-type"] == "application/json"
    assert response.http_version == "HTTP/1.1"
    seen = server.requests[0]
    assert seen.line == "GET /ok HTTP/1.1"
    assert seen.header("x-api-key") == ["k"]
    assert seen.header("host") == [f"127.0.0.1:{server.port}"]
    assert seen.body == b""


async def test_post_round_trip_keeps_body_and_repeated_headers(server: Server) -> None:
    async with _client() as http:
        response = await http.post(f"{server.url}/echo", content=b'{"prompt":"x"}')
    assert response.status_code == 201
    assert response.content == b'{"prompt":"x"}'
    assert response.headers.get_list("x-echo") == ["yes", "twice"]
    assert server.requests[0].header("content-length") == ["14"]  # once, not twice


async def test_streamed_request_body(server: Server) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"ab", b"cd", b"ef"):
            yield part

    async with _client() as http:
        response = await http.post(f"{server.url}/echo", content=parts())
    assert response.content == b"abcdef"


async def test_error_statuses_are_responses_not_exceptions(server: Server) -> None:
    async with _client() as http:
        response = await http.get(f"{server.url}/teapot")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.text == "<html>down</html>"


async def test_gzip_is_decoded_once_by_httpx(server: Server) -> None:
    async with _client() as http:
        response = await http.get(f"{server.url}/gzip")
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "hello " * 100


async def test_streaming_response_body(server: Server) -> None:
    async with _client() as http, http.stream("GET", f"{server.url}/chunks") as response:
        received = [chunk async for chunk in response.aiter_raw()]
    assert b"".join(received) == b"one,two,three"
    assert len(received) >= 2  # it arrived in pieces, not buffered whole


async def test_connections_are_reused_and_closed_by_aclose(server: Server) -> None:
    http = _client()
    for _ in range(5):
        assert (await http.get(f"{server.url}/ok")).status_code == 200
    assert server.connections == 1
    assert server.open_connections == 1
    await http.aclose()
    with anyio.fail_after(2):
        await server.all_closed.wait()
    with pytest.raises(RuntimeError):
        await http.get(f"{server.url}/ok")


async def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/ok")


@pytest.mark.parametrize("path", ["/cut", "/hangup"])
async def test_server_dropping_mid_exchange_is_not_a_connect_error(
    server: Server, path: str
) -> None:
    async with _client() as http:
        with pytest.raises(httpx.TransportError) as caught:
            await http.post(f"{server.url}{path}", content=b"{}")  # reads the body too
    assert isinstance(caught.value, (httpx.RemoteProtocolError, httpx.ReadError))
    assert not isinstance(caught.value, _NOT_SENT)
    assert caught.value.request.url.path == path


async def test_read_timeout(server: Server) -> None:
    async with _client(timeout=0.2) as http:
        with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
            await http.get(f"{server.url}/hang")


async def test_pool_timeout_when_every_connection_is_busy(server: Server) -> None:
    async with _client(max_connections=1, timeout=0.2) as http:
        async with http.stream("GET", f"{server.url}/chunks"):
            with pytest.raises(httpx.PoolTimeout):
                await http.get(f"{server.url}/ok")
        # The slot comes back when the first response closes.
        assert (await http.get(f"{server.url}/ok")).status_code == 200


async def _read_by(http: httpx.AsyncClient, url: str, seconds: float) -> bytes:
    """GET `url` and read its body, the whole exchange due within `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    request = http.build_request("GET", url, extensions={DEADLINE: deadline})
    response = await http.send(request, stream=True)
    try:
        return await response.aread()
    finally:
        await response.aclose()


async def test_the_deadline_bounds_a_body_that_never_ends(server: Server) -> None:
    # Each read is quick (well within the 5 s read timeout); only the total bound stops it.
    async with _client(timeout=5.0) as http:
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(httpx.ReadTimeout):
            await _read_by(http, f"{server.url}/trickle", 0.5)
        assert anyio.current_time() - started < 4.0
        assert (await http.get(f"{server.url}/ok")).status_code == 200  # its slot is back


async def test_the_deadline_bounds_the_wait_for_a_connection_slot(server: Server) -> None:
    async with (
        _client(max_connections=1, timeout=5.0) as http,
        http.stream("GET", f"{server.url}/trickle"),  # holds the only slot
    ):
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(httpx.PoolTimeout):
            await _read_by(http, f"{server.url}/ok", 0.3)
        assert anyio.current_time() - started < 4.0


async def test_cancelled_request_frees_its_slot(server: Server) -> None:
    async with _client(max_connections=1, timeout=5) as http:
        with anyio.move_on_after(0.1):
            await http.get(f"{server.url}/hang")
        assert (await http.get(f"{server.url}/ok")).status_code == 200


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("incomplete"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (aiohttp.ClientConnectionResetError("closing"), httpx.WriteError),
        (aiohttp.ClientConnectionError("?"), httpx.ReadError),
        (asyncio.TimeoutError(), httpx.ReadTimeout),
        (aiohttp.NonHttpUrlClientError("ftp://x"), httpx.UnsupportedProtocol),
    ],
)
def test_error_map(error: Exception, expected: type[httpx.TransportError]) -> None:
    request = httpx.Request("POST", "http://127.0.0.1/x")
    mapped = _map_error(error, request)
    assert type(mapped) is expected
    assert mapped.request is request
    if not issubclass(expected, _NOT_SENT):
        assert not isinstance(mapped, _NOT_SENT)


def test_unrelated_errors_are_not_mapped() -> None:
    assert _map_error(ValueError("bug"), httpx.Request("GET", "http://127.0.0.1/")) is None


async def test_dispatch_client_uses_it_and_never_resends_a_dropped_submit(server: Server) -> None:
    client = DispatchClient(
        api_key="k",
        base_url=server.url,
        retry=RetryPolicy(attempts=3, initial_delay=0),
        execution_mode="cloud",
    )
    async with client:
        assert isinstance(client._http, httpx.AsyncClient)
        assert isinstance(client._http._transport, AiohttpTransport)
        client._submit_url = f"{server.url}/hangup"
        with pytest.raises(SubmitUncertainError):
            await client.submit("hello")
    assert [r.line for r in server.requests] == ["POST /hangup HTTP/1.1"]


async def test_dispatch_client_retries_a_refused_submit() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = DispatchClient(
        api_key="k",
        base_url=url,
        retry=RetryPolicy(attempts=2, max_delay=0),
        execution_mode="cloud",
    )
    async with client:
        with pytest.raises(TransportError) as caught:
            await client.submit("hello")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_outside_asyncio_it_says_so() -> None:
    transport = AiohttpTransport()
    result: list[BaseException] = []

    def in_thread() -> None:
        try:
            transport._open()
        except RuntimeError as exc:
            result.append(exc)

    await anyio.to_thread.run_sync(in_thread)
    assert "asyncio" in str(result[0])


class TestDefaultChoice:
    @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
    async def test_aiohttp_under_asyncio_httpx_under_trio(self, anyio_backend: str) -> None:
        transport = default_transport(max_connections=3)
        try:
            if anyio_backend == "asyncio":
                assert running_asyncio()
                assert isinstance(transport, AiohttpTransport)
                assert transport.max_connections == 3
            else:
                assert not running_asyncio()
                assert isinstance(transport, httpx.AsyncHTTPTransport)
        finally:
            await transport.aclose()


# -- the direct exchange: a status read with no httpx objects, same guarantees ---------

_SECRET = "sk-direct-exchange-secret"


def _prepared(key: str = "k") -> PreparedHeaders:
    return PreparedHeaders([("x-api-key", key), ("accept-encoding", "gzip, deflate")])


async def _direct(
    transport: AiohttpTransport, url: str, *, seconds: float = 5.0, limit: int = 1 << 20
) -> tuple[int, Mapping[str, str], bytes]:
    deadline = asyncio.get_running_loop().time() + seconds
    return await transport.exchange("GET", url, _prepared(), deadline=deadline, limit=limit)


@pytest.mark.parametrize("path", ["/ok", "/gzip", "/chunks", "/teapot"])
async def test_direct_exchange_answers_as_the_httpx_path_does(server: Server, path: str) -> None:
    async with AiohttpTransport(max_connections=1) as transport:
        status, headers, body = await _direct(transport, f"{server.url}{path}")
        request = httpx.Request("GET", f"{server.url}{path}", headers=_prepared().items)
        response = await transport.handle_async_request(request)
        try:
            expected = await read_body(response, 1 << 20)
        finally:
            await response.aclose()
    assert (status, body) == (response.status_code, expected)
    assert headers.get("retry-after") == response.headers.get("retry-after")
    direct, through_httpx = ([(k.lower(), v) for k, v in r.headers] for r in server.requests)
    assert direct == through_httpx


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/ok", 5), ("/chunks", 5), ("/gzip", 100)],  # declared, counted, decoded (600 bytes)
)
async def test_direct_exchange_refuses_a_body_past_the_limit(
    server: Server, path: str, limit: int
) -> None:
    async with AiohttpTransport(max_connections=1) as transport:
        with pytest.raises(InvalidResponseError, match="max_body_size"):
            await _direct(transport, f"{server.url}{path}", limit=limit)
        assert (await _direct(transport, f"{server.url}/ok"))[0] == 200  # its slot is back


async def test_direct_exchange_refuses_codings_it_cannot_bound() -> None:
    async def brotli(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Received
    ) -> None:
        writer.write(_answer(200, b"\x0b\x02\x80{}\x03", "Content-Encoding: br"))
        await writer.drain()

    async with Server({"/br": brotli}) as running, AiohttpTransport() as transport:
        with pytest.raises(InvalidResponseError, match="'br'"):
            await _direct(transport, f"{running.url}/br")


async def test_direct_exchange_deadline_bounds_a_body_that_never_ends(server: Server) -> None:
    async with AiohttpTransport(max_connections=1) as transport:
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(httpx.ReadTimeout):
            await _direct(transport, f"{server.url}/trickle", seconds=0.5)
        assert anyio.current_time() - started < 4.0
        assert (await _direct(transport, f"{server.url}/ok"))[0] == 200


async def test_direct_exchange_deadline_bounds_the_wait_for_a_slot(server: Server) -> None:
    transport = AiohttpTransport(max_connections=1)
    async with (
        httpx.AsyncClient(transport=transport, timeout=5.0) as http,
        http.stream("GET", f"{server.url}/trickle"),  # holds the only slot
    ):
        with anyio.fail_after(10), pytest.raises(httpx.PoolTimeout):
            await _direct(transport, f"{server.url}/ok", seconds=0.3)


async def test_direct_exchange_maps_errors_by_when_they_happened(server: Server) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}/ok"
    async with AiohttpTransport() as transport:
        with pytest.raises(httpx.ConnectError):
            await _direct(transport, refused)
        for path in ("/cut", "/hangup"):
            with pytest.raises(httpx.TransportError) as caught:
                await _direct(transport, f"{server.url}{path}")
            assert isinstance(caught.value, (httpx.RemoteProtocolError, httpx.ReadError))
            assert not isinstance(caught.value, _NOT_SENT)


async def test_direct_exchange_keeps_the_key_out_of_tracebacks_with_locals(
    server: Server,
) -> None:
    async with AiohttpTransport() as transport:
        deadline = asyncio.get_running_loop().time() + 5
        with pytest.raises(httpx.TransportError) as caught:
            await transport.exchange(
                "GET", f"{server.url}/hangup", _prepared(_SECRET), deadline=deadline, limit=100
            )
    shown = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    assert _SECRET not in "".join(shown.format())
    assert _SECRET not in repr(_prepared(_SECRET))


async def test_dispatch_client_reads_statuses_through_the_direct_exchange(server: Server) -> None:
    async with DispatchClient(api_key="k", base_url=server.url) as client:
        assert client._shortcut is not None
        assert isinstance(client._shortcut.reads, AiohttpTransport)
        client._status_url = f"{server.url}/"
        assert (await client.get_status("ok")).raw_status == "pending"
    read = server.requests[0]
    assert read.line == "GET /ok HTTP/1.1"
    assert read.header("x-api-key") == ["k"]
    assert read.header("accept-encoding") == ["gzip, deflate"]
    assert read.header("user-agent")[0].startswith("async-remote-dispatch/")
