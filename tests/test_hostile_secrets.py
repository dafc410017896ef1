"""A server that makes errors, or echoes values, that could carry the key: no traceback
local, error, excerpt or log line shows it (first staged in #11)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import pytest

from _foundation_helpers import (
    KEY,
    NO_RETRY,
    PENDING,
    reply,
    service,
)
from _hostile import hang_up, own_client, rendered, shown, trickle
from _tcp import Handler, tcp_server
from async_dispatch import (
    DispatchClient,
    DispatchError,
    InvalidResponseError,
    Poller,
    SubmitUncertainError,
    TransportError,
)
from async_dispatch._wire import parse_status_body

pytestmark = pytest.mark.anyio

# -- 2. no key in traceback locals ----------------------------------------------------------


Call = Callable[[DispatchClient], Awaitable[object]]
CALLS: dict[str, Call] = {
    "get_status": lambda c: c.get_status("req_1"),
    "submit": lambda c: c.submit("/Operator go"),
    "wait": lambda c: c.wait("req_1", timeout=30, interval=0.01),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("misbehaviour", [hang_up, trickle], ids=["hang-up", "timeout"])
async def test_no_frame_local_shows_the_key(call: str, misbehaviour: Handler) -> None:
    async with (
        tcp_server(misbehaviour) as url,
        own_client(url, timeout=0.5, submit_timeout=0.5) as client,
    ):
        with anyio.fail_after(8), pytest.raises(DispatchError) as caught:
            await CALLS[call](client)
    assert KEY not in rendered(caught.value)


#: Credentials other than the key, as module constants: a test's own locals are rendered too.
TOKEN = "tok-LEAK-in-locals"
SECRET_VARIABLES = {"pw": "pw-LEAK"}
SECRET_CALLS: dict[str, Call] = {
    **CALLS,
    "upload": lambda c: c.upload(b"data", filename="a.bin"),
    "secret-options": lambda c: c.submit("/Operator go", secret_variables=SECRET_VARIABLES),
}


@pytest.mark.parametrize("call", list(SECRET_CALLS))
@pytest.mark.parametrize("misbehaviour", [hang_up, trickle], ids=["hang-up", "timeout"])
async def test_no_frame_local_shows_auth_headers_or_secret_options(
    call: str, misbehaviour: Handler
) -> None:
    async with (
        tcp_server(misbehaviour) as url,
        own_client(
            url, timeout=0.5, submit_timeout=0.5, auth_headers={"authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        with anyio.fail_after(8), pytest.raises(DispatchError) as caught:
            await SECRET_CALLS[call](client)
    text = rendered(caught.value)
    assert "LEAK" not in text
    assert KEY not in text


async def test_no_frame_local_of_a_pollers_submit_shows_secret_options() -> None:
    async with (
        tcp_server(hang_up) as url,
        own_client(url, timeout=0.5, submit_timeout=0.5) as client,
        Poller(client) as poller,
    ):
        with anyio.fail_after(8), pytest.raises(DispatchError) as caught:
            await poller.submit("/Operator go", secret_variables=SECRET_VARIABLES, deadline=60)
    text = rendered(caught.value)  # before any assert: pytest's rewriting adds locals
    assert "LEAK" not in text


async def test_no_frame_local_shows_the_key_when_nothing_listens() -> None:
    async with tcp_server(hang_up) as url:
        pass  # the port is free again: connections are refused
    async with own_client(url, timeout=2) as client:
        with pytest.raises(TransportError) as caught:
            await client.get_status("req_1")
    assert KEY not in rendered(caught.value)


# -- 3. the key in values the server echoes -------------------------------------------------


async def test_a_key_echoed_in_a_timestamp_is_not_in_the_error() -> None:
    fake = service(reply(200, {**PENDING, "createdAt": KEY}))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError, match="createdAt") as caught:
            await client.get_status("req_1")
    assert [text for text in shown(caught.value) if KEY in text] == []


async def test_a_key_escaped_in_json_is_still_redacted() -> None:
    escaped = "".join(f"\\u{ord(ch):04x}" for ch in KEY)
    body = json.dumps({**PENDING, "completedAt": "@"}).replace('"@"', f'"{escaped}"')
    fake = service(reply(200, content=body.encode()))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_status("req_1")
    assert [text for text in shown(caught.value) if KEY in text] == []


async def test_no_fragment_of_a_key_echoed_in_a_request_id_survives() -> None:
    fake = service(reply(202, {"requestId": "a" * 35 + KEY + "/"}))
    async with fake.client() as client:
        with pytest.raises(SubmitUncertainError, match="unusable requestId") as caught:
            await client.submit("/Operator go")
    assert [text for text in shown(caught.value) if KEY[:5] in text] == []


async def test_a_request_id_that_is_the_key_is_refused() -> None:
    fake = service(reply(202, {"requestId": KEY}))
    async with fake.client() as client:
        with pytest.raises(SubmitUncertainError) as caught:
            await client.submit("/Operator go")
    assert [text for text in shown(caught.value) if KEY[:5] in text] == []


async def test_no_error_in_the_chain_holds_the_whole_body() -> None:
    body = b'{"status": "pending", "filler": "' + b"x" * 100_000 + b'"'  # truncated JSON
    fake = service(reply(200, content=body))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_status("req_1")
    assert max(len(text) for text in shown(caught.value)) < 2_000


def test_parse_status_body_keeps_no_decode_error_around() -> None:
    with pytest.raises(InvalidResponseError) as caught:
        parse_status_body("req_1", b"\xff" * 50_000)
    assert max(len(text) for text in shown(caught.value)) < 2_000
