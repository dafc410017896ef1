"""`DispatchClient.upload()` against an in-process stub of the service's upload endpoint
and of a storage bucket: the presigned POST is asked for with the key, the file goes to
storage as a multipart form (the fields first, ``file`` last) with none of our
credentials, and storage's refusals are not mistaken for a bad key."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as email_policy
from pathlib import Path
from typing import Any, Final

import anyio
import attrs
import httpx
import pytest
import trio.testing

from _foundation_helpers import KEY, texts_of
from async_dispatch import (
    AuthenticationError,
    DispatchClient,
    EndpointError,
    InvalidResponseError,
    RequestTimeoutError,
    RetryPolicy,
    SubmitOptions,
    UploadError,
    UsageError,
    file_variable,
)
from async_dispatch.testing import bind_socket, serve_asgi

pytestmark = pytest.mark.anyio

ORIGIN: Final = "http://127.0.0.1:9"
PRESIGN_PATH: Final = "/fast/v2/remote-dispatch/generate-file-upload-presigned-post"
#: The presigned fields' secrets: they let anyone upload for a while.
POLICY: Final = "eyJwb2xpY3kiOiJzZWNyZXQifQ=="
SIGNATURE: Final = "sig-0123456789abcdef"
TOKEN: Final = "tok-SECRET-789"
INSTANT: Final = RetryPolicy(attempts=3, initial_delay=0, max_delay=0)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@attrs.frozen
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class Stub:
    """The service's upload endpoint and a storage bucket, in one ASGI app.

    `storage_answers` are the bucket's statuses, in order (the last repeats);
    `storage_url` is where the service says to post (its own origin by default).
    """

    origin: str = ORIGIN
    storage_answers: list[int] = attrs.field(factory=lambda: [204])
    presign_status: int = 200
    presign_body: Any = None
    storage_url: str | None = None
    seen: list[Seen] = attrs.field(factory=list)
    stored: dict[str, bytes] = attrs.field(factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.seen.append(Seen(scope["path"], headers, body))
        if scope["path"] == PRESIGN_PATH:
            await self._presign(headers, body, send)
        elif scope["path"] == "/bucket":
            await self._store(headers, body, send)
        else:
            await respond(send, 404, b"Not Found")

    async def _presign(self, headers: dict[str, str], body: bytes, send: Send) -> None:
        if headers.get("x-api-key") != KEY and headers.get("authorization") != f"Bearer {TOKEN}":
            await respond(send, 401, b'{"detail": "bad key"}')
            return
        if self.presign_status != 200 or self.presign_body is not None:
            answer = json.dumps(self.presign_body).encode() if self.presign_body else b"{}"
            await respond(send, self.presign_status, answer)
            return
        filename = json.loads(body)["filename"]
        presigned = {
            "url": self.storage_url or f"{self.origin}/bucket",
            "fields": {
                "key": f"uploads/u-1/{filename}",
                "policy": POLICY,
                "x-amz-signature": SIGNATURE,
            },
        }
        await respond(send, 200, json.dumps(presigned).encode())

    async def _store(self, headers: dict[str, str], body: bytes, send: Send) -> None:
        status = self.storage_answers[min(len(self.storage_seen()), len(self.storage_answers)) - 1]
        if status >= 300:
            # What a bucket says back may quote the policy and signature it refused.
            said = f"<Error><Code>AccessDenied</Code><Policy>{POLICY}</Policy>"
            said += f"<Signature>{SIGNATURE}</Signature></Error>"
            await respond(send, status, said.encode())
            return
        parts = form_parts(headers["content-type"], body)
        fields = {part.get_param("name", header="content-disposition"): part for part in parts}
        payload = fields["file"].get_payload(decode=True)
        assert isinstance(payload, bytes)
        self.stored[str(fields["key"].get_content())] = payload
        await respond(send, status, b"")

    def storage_seen(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == "/bucket"]

    def presigns(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == PRESIGN_PATH]

    def client(self, **kwargs: Any) -> DispatchClient:
        options: dict[str, Any] = {
            "api_key": KEY,
            "base_url": f"{self.origin}/fast/v2",
            "http_client": httpx.AsyncClient(transport=httpx.ASGITransport(app=self)),
            "retry": INSTANT,
        }
        options.update(kwargs)
        return DispatchClient(**options)


async def respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def form_parts(content_type: str, body: bytes) -> list[EmailMessage]:
    """The parts of a multipart form, in the order they were sent."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=email_policy).parsebytes(head + body)
    assert isinstance(message, EmailMessage)
    assert message.is_multipart()
    return [part for part in message.iter_parts() if isinstance(part, EmailMessage)]


def names_of(seen: Seen) -> list[str | None]:
    parts = form_parts(seen.headers["content-type"], seen.body)
    return [part.get_param("name", header="content-disposition") for part in parts]  # type: ignore[misc]


# -- the happy path -------------------------------------------------------------------------


async def test_a_path_is_uploaded_and_its_storage_key_returned(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.7 a small report")
    stub = Stub()
    async with stub.client() as client:
        key = await client.upload(path)
    assert key == "uploads/u-1/report.pdf"
    assert stub.stored == {key: b"%PDF-1.7 a small report"}
    [presign] = stub.presigns()
    assert presign.headers["x-api-key"] == KEY
    assert json.loads(presign.body) == {"filename": "report.pdf"}


async def test_the_storage_request_carries_the_fields_first_the_file_last_and_no_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello")
    stub = Stub()
    async with stub.client() as client:
        await client.upload(str(path))
    [stored] = stub.storage_seen()
    assert "x-api-key" not in stored.headers
    assert "authorization" not in stored.headers
    assert KEY.encode() not in stored.body
    assert names_of(stored) == ["key", "policy", "x-amz-signature", "file"]
    file_part = form_parts(stored.headers["content-type"], stored.body)[-1]
    assert file_part.get_filename() == "notes.txt"
    assert file_part.get_content_type() == "text/plain"


async def test_auth_headers_go_to_the_service_and_never_to_storage() -> None:
    stub = Stub()
    client = stub.client(api_key=None, auth_headers={"Authorization": f"Bearer {TOKEN}"})
    async with client:
        await client.upload(b"data", filename="a.bin")
    [presign] = stub.presigns()
    [stored] = stub.storage_seen()
    assert presign.headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in stored.headers
    assert TOKEN.encode() not in stored.body


async def test_a_callers_http_client_lends_no_credentials_to_storage() -> None:
    """Default headers and auth of the caller's own `httpx.AsyncClient` stay off the
    storage request: they may hold the key too."""
    stub = Stub()
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stub),
        headers={"x-api-key": KEY},
        auth=httpx.BasicAuth("user", "password"),
    )
    async with stub.client(http_client=http) as client:
        await client.upload(b"data", filename="a.bin")
    [stored] = stub.storage_seen()
    assert "x-api-key" not in stored.headers
    assert "authorization" not in stored.headers


async def test_bytes_and_binary_files_are_uploaded_too(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG...")
    stub = Stub()
    async with stub.client() as client:
        assert await client.upload(b"raw", filename="dir/raw.csv") == "uploads/u-1/raw.csv"
        with path.open("rb") as file:
            assert await client.upload(file) == "uploads/u-1/photo.png"
        buffer = io.BytesIO(b"0123456789")
        buffer.seek(4)  # read from where the file stands, as any reader would
        assert await client.upload(buffer, filename="tail.txt") == "uploads/u-1/tail.txt"
    assert stub.stored == {
        "uploads/u-1/raw.csv": b"raw",
        "uploads/u-1/photo.png": b"\x89PNG...",
        "uploads/u-1/tail.txt": b"456789",
    }


async def test_the_key_goes_into_a_submit_as_an_attachment_or_a_file_variable() -> None:
    assert file_variable("uploads/u-1/report.pdf", "report.pdf") == {
        "source": "remoteDispatchUpload",
        "id": "uploads/u-1/report.pdf",
        "filename": "report.pdf",
        "mimeType": "application/pdf",
    }
    assert file_variable("k", "blob", mime_type="image/webp")["mimeType"] == "image/webp"
    assert file_variable("k", "no-extension")["mimeType"] == "application/octet-stream"
    options = SubmitOptions(
        attachment={"key": "k"}, input_variables={"doc": file_variable("k", "a.pdf")}
    )
    assert options.body("p")["inputVariables"]["doc"]["source"] == "remoteDispatchUpload"


# -- what cannot be uploaded ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "filename", "problem"),
    [
        (b"raw", None, "needs filename"),
        (io.BytesIO(b"x"), None, "no name"),
        (io.StringIO("text"), "a.txt", "binary mode"),
        (42, None, "takes a path, bytes or a file"),
        (b"raw", "", "non-empty"),
        (b"raw", "dir/", "no file name"),
    ],
)
async def test_what_cannot_be_uploaded_is_refused_before_anything_is_sent(
    what: Any, filename: str | None, problem: str
) -> None:
    stub = Stub()
    async with stub.client() as client:
        with pytest.raises(UsageError, match=problem):
            await client.upload(what, filename=filename)
    assert stub.seen == []


async def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    stub = Stub()
    async with stub.client() as client:
        with pytest.raises(UsageError, match="cannot read"):
            await client.upload(tmp_path / "absent.pdf")
    assert stub.seen == []


# -- failures -------------------------------------------------------------------------------


async def test_a_storage_refusal_is_not_a_key_problem_and_shows_no_presigned_secret() -> None:
    stub = Stub(storage_answers=[403])
    async with stub.client() as client:
        with pytest.raises(UploadError) as caught:
            await client.upload(b"data", filename="a.bin")
    error = caught.value
    assert not isinstance(error, AuthenticationError)
    assert error.status_code == 403
    assert "Not a problem of the API key" in str(error)
    assert "call upload() again" in str(error)
    assert "http://127.0.0.1:9/bucket" in str(error)
    for text in texts_of(error):
        assert POLICY not in text
        assert SIGNATURE not in text
    assert len(stub.storage_seen()) == 1  # a refusal is not retried


async def test_a_storage_in_trouble_is_retried() -> None:
    stub = Stub(storage_answers=[503, 500, 204])
    async with stub.client() as client:
        assert await client.upload(b"data", filename="a.bin") == "uploads/u-1/a.bin"
    assert len(stub.storage_seen()) == 3
    assert len(stub.presigns()) == 1


async def test_no_upload_endpoint_at_the_base_url_names_it() -> None:
    stub = Stub()
    async with stub.client(base_url=f"{ORIGIN}/wrong") as client:
        with pytest.raises(EndpointError, match="check base_url") as caught:
            await client.upload(b"data", filename="a.bin")
    assert caught.value.status_code == 404
    assert stub.storage_seen() == []


async def test_a_refused_key_is_raised_as_such() -> None:
    stub = Stub()
    async with stub.client(api_key="sk-other") as client:
        with pytest.raises(AuthenticationError):
            await client.upload(b"data", filename="a.bin")
    assert stub.storage_seen() == []


@pytest.mark.parametrize(
    "answer",
    [
        {"fields": {"key": "k"}},
        {"url": "http://127.0.0.1:9/bucket"},
        {"url": "http://127.0.0.1:9/bucket", "fields": {"policy": "p"}},
        {"url": "http://127.0.0.1:9/bucket", "fields": {"key": 7}},
        ["not", "an", "object"],
    ],
)
async def test_an_answer_that_is_not_a_presigned_post_is_an_invalid_response(answer: Any) -> None:
    stub = Stub(presign_body=answer)
    async with stub.client() as client:
        with pytest.raises(InvalidResponseError, match="upload endpoint"):
            await client.upload(b"data", filename="a.bin")
    assert stub.storage_seen() == []


@pytest.mark.parametrize(
    "url", ["http://storage.example.com/bucket", "ftp://127.0.0.1/bucket", "/bucket"]
)
async def test_a_storage_url_we_may_not_send_a_file_to_is_refused(url: str) -> None:
    stub = Stub(storage_url=url)
    async with stub.client() as client:
        with pytest.raises(InvalidResponseError, match=r"url|http://"):
            await client.upload(b"data", filename="a.bin")
    assert stub.storage_seen() == []


# -- over loopback TCP, on the client's own transport ---------------------------------------


async def test_an_upload_over_tcp_with_the_clients_own_transport() -> None:
    sock = bind_socket()
    stub = Stub(origin=f"http://127.0.0.1:{sock.getsockname()[1]}")
    try:
        async with (
            serve_asgi(stub, sock, lifespan="off"),
            DispatchClient(KEY, f"{stub.origin}/fast/v2") as client,
        ):
            key = await client.upload(b"over the wire", filename="wire.txt")
    finally:
        sock.close()
    assert stub.stored == {key: b"over the wire"}
    [stored] = stub.storage_seen()
    assert "x-api-key" not in stored.headers
    assert names_of(stored)[-1] == "file"


# -- off the event loop, within the bound ---------------------------------------------------


async def test_a_file_object_is_read_in_a_worker_thread() -> None:
    class Recording(io.BytesIO):
        name = "recorded.bin"
        reader: threading.Thread | None = None

        def read(self, size: int | None = -1) -> bytes:
            Recording.reader = threading.current_thread()
            return super().read(size)

    stub = Stub()
    async with stub.client() as client:
        await client.upload(Recording(b"data"))
    assert Recording.reader is not None
    assert Recording.reader is not threading.main_thread()
    assert stub.stored == {"uploads/u-1/recorded.bin": b"data"}


class TestOnVirtualTime:
    """A storage that never answers, on trio's MockClock."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    async def test_the_storage_request_is_bounded_by_the_clients_timeout(self) -> None:
        stub = Stub()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] == "/bucket":
                await anyio.sleep(3600)
            await stub(scope, receive, send)

        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        client = stub.client(http_client=http, timeout=10, retry=RetryPolicy(attempts=1))
        async with client:
            start = anyio.current_time()
            with pytest.raises(RequestTimeoutError, match="timeout=10s"):
                await client.upload(b"data", filename="a.bin")
        assert anyio.current_time() - start == pytest.approx(10)


async def test_an_upload_to_the_simulator_is_stored_and_a_submit_may_name_it() -> None:
    """Against the simulator's own endpoint and bucket (as the official SDK uses them): the
    file lands under the key the client returns, without the API key, and a submit that
    names it is accepted where an unknown key is refused."""
    from async_dispatch import BadRequestError
    from async_dispatch.testing import simulator

    async with simulator(seed=2) as sim, sim.client() as client:
        key = await client.upload(b"%PDF-1.4 report", filename="report.pdf")
        (stored,) = sim.uploads.values()
        assert (stored.key, stored.filename, stored.data) == (key, "report.pdf", b"%PDF-1.4 report")
        assert not stored.api_key_sent
        assert await client.submit("/Operator summarise it", attachment={"key": key})
        variables = {"cv": file_variable(key, "report.pdf")}
        assert await client.submit("/Operator read it", input_variables=variables)
        with pytest.raises(BadRequestError):
            await client.submit("/Operator read it", attachment={"key": "uploads/never/x.pdf"})
