"""Where requests go: a wrong base URL is named as such (not as an unknown request id, not
as a task that was probably created), and a request id of any shape reaches its own
status path, percent-encoded as one segment."""

from __future__ import annotations

from urllib.parse import quote, unquote

import httpx
import pytest

from _foundation_helpers import BASE_URL, SUCCESS, reply, service
from async_dispatch import (
    DEFAULT_BASE_URL,
    DispatchError,
    EndpointError,
    InvalidRequestIdError,
    NotFoundError,
    SubmitUncertainError,
)
from async_dispatch._validation import check_request_id

pytestmark = pytest.mark.anyio

STATUS_PATH = "/remote-dispatch/responses/"


# -- a wrong base URL -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [404, 405])
async def test_a_submit_answered_404_or_405_names_the_endpoint_not_a_request_id(
    code: int,
) -> None:
    fake = service(reply(code, {"detail": "Not Found"}))
    async with fake.client() as client:
        with pytest.raises(EndpointError) as caught:
            await client.submit("/Operator go")
    error = caught.value
    assert not isinstance(error, NotFoundError)  # that one ends a tracked task as failed
    assert not isinstance(error, SubmitUncertainError)
    message = str(error)
    assert f"POST {BASE_URL}/remote-dispatch:" in message
    assert f"check base_url (the public service is {DEFAULT_BASE_URL})" in message
    assert "no task was created" in message
    assert "request id" not in message
    assert "may have been created" not in message
    assert (error.url, error.status_code, error.body_excerpt) == (
        f"{BASE_URL}/remote-dispatch",
        code,
        '{"detail": "Not Found"}',
    )
    assert len(fake.requests) == 1  # a configuration mistake is not retried


async def test_a_404_on_a_submit_that_continues_a_conversation_names_that_id_too() -> None:
    fake = service(reply(404, {"detail": "Not Found"}))
    async with fake.client() as client:
        with pytest.raises(EndpointError) as caught:
            await client.submit("/Operator go on", previous_request_id="req_0")
    assert "unless the service does not know previous_request_id 'req_0'" in str(caught.value)
    assert "check base_url" in str(caught.value)


async def test_a_status_read_answered_404_still_means_an_unknown_request_id() -> None:
    fake = service(reply(404, {"detail": "Not Found"}))
    async with fake.client() as client:
        with pytest.raises(NotFoundError, match="does not know this request id"):
            await client.get_status("req_1")


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>", {}),
        (b"  \n<html><head><title>Sign in</title></head></html>", {}),
        (b"Welcome to our site", {"content-type": "text/html; charset=utf-8"}),
    ],
)
async def test_a_2xx_web_page_on_submit_says_it_is_not_the_api(
    body: bytes, headers: dict[str, str]
) -> None:
    fake = service(reply(200, content=body, headers=headers))
    async with fake.client() as client:
        with pytest.raises(EndpointError) as caught:
            await client.submit("/Operator go")
    message = str(caught.value)
    assert "this looks like a web page, not the API: check base_url" in message
    assert DEFAULT_BASE_URL in message
    assert "probably created" not in message
    assert caught.value.status_code == 200
    assert len(fake.requests) == 1


@pytest.mark.parametrize("body", [b"{}", b'{"id": "req_1"}', b"accepted"])
async def test_a_2xx_json_without_a_request_id_stays_uncertain_and_names_the_endpoint(
    body: bytes,
) -> None:
    """Something that is not a web page may be the service itself: the task may exist."""
    fake = service(reply(202, content=body))
    async with fake.client() as client:
        with pytest.raises(SubmitUncertainError) as caught:
            await client.submit("/Operator go")
    message = str(caught.value)
    assert "without a requestId" in message
    assert "not the Remote Dispatch API (check base_url)" in message
    assert "task was probably created" in message
    assert len(fake.requests) == 1


async def test_a_base_url_whose_every_path_is_404_fails_at_the_first_submit() -> None:
    """Tried as a new user would: the API's base path forgotten (``/fast/v2`` left out)."""

    def site(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/fast/v2/"):
            return httpx.Response(202, json={"requestId": "req_1"})
        return httpx.Response(404, text="Not Found")

    fake = service(site)
    async with fake.client(base_url="https://api.example.test") as client:
        with pytest.raises(EndpointError, match="check base_url"):
            await client.submit("/Operator go")
    async with fake.client(base_url="https://api.example.test/fast/v2") as client:
        assert await client.submit("/Operator go") == "req_1"


# -- request ids of any shape ---------------------------------------------------------------


def accepted(request_id: str) -> bool:
    try:
        check_request_id(request_id)
    except InvalidRequestIdError:
        return False
    return True


#: Ids of the shapes the contract allows (any non-empty string a submit returns).
ODD_IDS = {
    "slash-plus-equals": "AbC/def+gh==",
    "uuid": "3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d",
    "long": "r" * 300,
    "percent-space-query": "a b%20c?d#e&f",
    "unicode": "req-\u00e9\u4e2d",
}
needs_any_id = pytest.mark.skipif(
    not all(accepted(request_id) for request_id in ODD_IDS.values()),
    reason="check_request_id still refuses ids outside [A-Za-z0-9._~:-]{1,256} (the lead "
    "relaxes it for issue #19 item 4; these run once that is merged)",
)


def echo_status(seen: list[httpx.Request]) -> httpx.MockTransport:
    """A service that answers a submit with the id given in the prompt, and any status
    read with a success, recording what it saw."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            prompt = httpx.Response(200, content=request.content).json()["prompt"]
            return httpx.Response(202, json={"requestId": prompt})
        return httpx.Response(200, json=SUCCESS)

    return httpx.MockTransport(handler)


def segment_of(request: httpx.Request) -> str:
    """The last segment of the path as it travelled, still encoded."""
    raw = request.url.raw_path.decode("ascii")
    assert raw.startswith(STATUS_PATH)
    return raw[len(STATUS_PATH) :]


async def test_an_id_is_percent_encoded_as_one_path_segment() -> None:
    """With an id the old character set allows too: ``:`` is encoded, the rest is not."""
    fake = service(reply(200, SUCCESS))
    async with fake.client() as client:
        await client.get_status("req:1~x.y_z-")
    assert segment_of(fake.requests[0]) == "req%3A1~x.y_z-"
    assert unquote(segment_of(fake.requests[0])) == "req:1~x.y_z-"


@needs_any_id
@pytest.mark.parametrize("name", list(ODD_IDS))
async def test_an_id_of_any_shape_is_accepted_from_submit_and_read_at_its_own_path(
    name: str,
) -> None:
    request_id = ODD_IDS[name]
    seen: list[httpx.Request] = []
    fake = service(reply(200, SUCCESS))
    http = httpx.AsyncClient(transport=echo_status(seen))
    async with fake.client(http_client=http) as client:
        assert await client.submit(request_id) == request_id
        status = await client.get_status(request_id)
    assert status.request_id == request_id
    read = seen[1]
    assert segment_of(read) == quote(request_id, safe="")
    assert "/" not in segment_of(read)  # one segment: nothing else on the path is reached
    assert unquote(segment_of(read)) == request_id
    assert read.url.query == b""


@pytest.mark.parametrize("request_id", ["", ".", "..", "req\n1", "req\x001"])
async def test_ids_that_no_path_can_carry_are_still_refused(request_id: str) -> None:
    fake = service(reply(200, SUCCESS))
    async with fake.client() as client:
        with pytest.raises(DispatchError):
            await client.get_status(request_id)
    assert fake.requests == []
