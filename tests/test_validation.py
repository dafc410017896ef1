"""What callers hand the client is checked before anything reaches the network: request
ids that could climb the URL path, and base URLs that would send the key in clear text."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from _foundation_helpers import KEY, SUCCESS, reply, service
from async_dispatch import DispatchClient, InvalidRequestIdError, UsageError
from async_dispatch._validation import check_base_url, check_request_id, is_loopback_host

BAD_IDS: list[Any] = [
    "",
    ".",
    "..",
    "req\n1",
    "a\x00b",
    "tab\there",
    "x" * 4097,
    None,
    42,
    b"req_1",
]
#: Ids have no documented format: whatever a submit hands out must be trackable.
ODD_IDS = [
    "req_abc123def456",
    "req-1",
    "a",
    "x" * 300,
    "A-Z.a_z~0:9",
    "...",
    "a..b",
    "0b9c6a4e-7f42-4d1e-9a57-3f1c2e8d6b10",
    "AbC/def+gh==",
    "../admin",
    "req 1",
    "req_1?x=1",
    "req_1#frag",
    "req%2F1",
    "r\u00e9q",
]


@pytest.mark.parametrize("request_id", ODD_IDS)
def test_plausible_request_ids_are_accepted(request_id: str) -> None:
    assert check_request_id(request_id) == request_id


@pytest.mark.parametrize("request_id", BAD_IDS)
def test_impossible_request_ids_are_refused(request_id: Any) -> None:
    with pytest.raises(InvalidRequestIdError):
        check_request_id(request_id)


def test_a_refused_id_is_shown_shortened() -> None:
    with pytest.raises(InvalidRequestIdError) as caught:
        check_request_id("/" * 5000)
    assert len(str(caught.value)) < 300


@pytest.mark.anyio
@pytest.mark.parametrize("request_id", ODD_IDS)
async def test_an_id_of_any_shape_is_one_path_segment(request_id: str) -> None:
    """Percent-encoded as one segment: `AbC/def+gh==` cannot reach another endpoint, and
    the service gets back exactly the id it handed out."""
    fake = service(reply(200, SUCCESS))
    async with fake.client() as client:
        await client.get_status(request_id)
    (request,) = fake.requests
    raw_path = request.url.raw_path.decode("ascii")
    prefix = "/fast/v2/remote-dispatch/responses/"
    assert raw_path.startswith(prefix) or "/remote-dispatch/responses/" in raw_path
    segment = raw_path.rsplit("/remote-dispatch/responses/", 1)[1]
    assert "/" not in segment
    assert "?" not in segment
    assert "#" not in segment
    assert unquote(segment) == request_id


def test_an_invalid_request_id_is_a_usage_error() -> None:
    assert issubclass(InvalidRequestIdError, UsageError)
    assert issubclass(InvalidRequestIdError, ValueError)


@pytest.mark.anyio
@pytest.mark.parametrize("request_id", BAD_IDS)
async def test_get_status_checks_the_id_before_sending_anything(request_id: Any) -> None:
    fake = service(reply(200, SUCCESS))
    async with fake.client() as client:
        with pytest.raises(InvalidRequestIdError):
            await client.get_status(request_id)
        with pytest.raises(InvalidRequestIdError):
            await client.wait(request_id, timeout=1)
    assert fake.requests == []


# -- base URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.2:8000/v2",
        "http://[::1]:8000",
        "http://localhost:8000",
        "http://LOCALHOST.",
    ],
)
def test_plain_http_is_allowed_to_loopback(url: str) -> None:
    assert DispatchClient(api_key=KEY, base_url=url).base_url == url.lower()


@pytest.mark.parametrize(
    "url",
    [
        "http://api.narada.ai/fast/v2",
        "http://10.0.0.5:8000",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:8000",
    ],
)
def test_plain_http_to_anywhere_else_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="allow_insecure"):
        DispatchClient(api_key=KEY, base_url=url)


def test_plain_http_is_allowed_when_the_caller_insists() -> None:
    client = DispatchClient(api_key=KEY, base_url="http://10.0.0.5:8000", allow_insecure=True)
    assert client.base_url == "http://10.0.0.5:8000"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.narada.ai/fast/v2/", "https://api.narada.ai/fast/v2"),
        ("https://example.com", "https://example.com"),
        ("https://example.com:8443/a/b", "https://example.com:8443/a/b"),
    ],
)
def test_https_is_accepted_without_a_trailing_slash(url: str, expected: str) -> None:
    assert check_base_url(url, allow_insecure=False) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com", "http"),
        ("example.com/v2", "http"),
        ("https://", "http"),
        ("https://user:pw@example.com", "credentials"),
        ("https://example.com/v2?key=1", "query"),
        ("https://example.com/v2#top", "fragment"),
        ("http://[::1", "valid URL"),
    ],
)
def test_unusable_base_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        check_base_url(url, allow_insecure=True)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost.", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
