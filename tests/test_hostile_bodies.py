"""Malformed bodies: a compression bomb, codings never asked for, nesting hundreds of levels
deep. The client refuses them within a bound on memory (first staged in #11)."""

from __future__ import annotations

import json
import tracemalloc
import zlib
from typing import Any

import anyio
import anyio.abc
import pytest

from _foundation_helpers import (
    INPUT_REQUIRED,
    NO_RETRY,
    PENDING,
    SUCCESS,
    reply,
    service,
    stream,
)
from async_dispatch import (
    InvalidResponseError,
    Poller,
)
from async_dispatch.webhooks import WebhookReceiver

pytestmark = pytest.mark.anyio

# -- 6. a gzip bomb -------------------------------------------------------------------------


def compressed_zeros(size: int, *, wbits: int, chunk: int = 16 * 1024) -> list[bytes]:
    """`size` zero bytes compressed, as network-sized chunks (built without holding them)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1024 * 1024)
    data = b"".join(packer.compress(block) for _ in range(size // len(block))) + packer.flush()
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


@pytest.mark.parametrize(("coding", "wbits"), [("gzip", 31), ("deflate", 15), ("deflate", -15)])
async def test_a_compression_bomb_is_refused_without_inflating_it(coding: str, wbits: int) -> None:
    limit = 1024 * 1024
    bomb = compressed_zeros(64 * 1024 * 1024, wbits=wbits)
    fake = service(stream(iter(bomb), headers={"Content-Encoding": coding}))
    async with fake.client(retry=NO_RETRY, max_body_size=limit) as client:
        tracemalloc.start()
        try:
            with pytest.raises(InvalidResponseError, match="max_body_size"):
                await client.get_status("req_1")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8 * limit


@pytest.mark.parametrize(("coding", "wbits"), [("gzip", 31), ("deflate", 15), ("deflate", -15)])
async def test_a_compressed_body_within_the_limit_is_decoded(coding: str, wbits: int) -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    data = packer.compress(json.dumps(SUCCESS).encode()) + packer.flush()
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    fake = service(stream(iter(chunks), headers={"Content-Encoding": coding}))
    async with fake.client(retry=NO_RETRY) as client:
        status = await client.get_status("req_1")
    assert status.text == SUCCESS["response"]["text"]


async def test_a_body_compressed_twice_is_decoded_in_reverse_order() -> None:
    inner = zlib.compressobj(6, zlib.DEFLATED, 15)
    once = inner.compress(json.dumps(SUCCESS).encode()) + inner.flush()
    outer = zlib.compressobj(6, zlib.DEFLATED, 31)
    twice = outer.compress(once) + outer.flush()
    fake = service(stream(iter([twice]), headers={"Content-Encoding": "deflate, gzip"}))
    async with fake.client(retry=NO_RETRY) as client:
        assert (await client.get_status("req_1")).text == SUCCESS["response"]["text"]


async def test_a_coding_we_never_asked_for_is_refused() -> None:
    fake = service(stream(iter([b"\x0b\x02\x80{}\x03"]), headers={"Content-Encoding": "br"}))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError, match="br"):
            await client.get_status("req_1")
    assert fake.requests[0].headers["accept-encoding"] == "gzip, deflate"


# -- 8. deep nesting ------------------------------------------------------------------------


def deep(levels: int) -> str:
    """JSON text of objects nested `levels` deep (text: `json.dumps` would recurse)."""
    return '{"a":' * levels + "{}" + "}" * levels


def with_field(body: dict[str, Any], name: str, json_text: str) -> bytes:
    return json.dumps({**body, name: "@"}).replace('"@"', json_text).encode()


async def test_a_deep_webhook_payload_is_a_4xx_not_a_503() -> None:
    fake = service(reply(200, PENDING))
    async with fake.client() as client, Poller(client, rate=1000, burst=1000) as poller:
        await poller.track("req_1")
        receiver = WebhookReceiver(poller, allow_unauthenticated=True)
        payload = {**INPUT_REQUIRED, "requestId": "req_1"}
        result = await receiver.handle(with_field(payload, "hitlInputMetadata", deep(980)), {})
    assert result.status_code in (400, 422)
    assert result.reason == "too_deep"


class _Failing:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def deliver(self, payload: Any) -> Any:
        raise self.error


def test_only_a_closed_poller_is_a_503() -> None:
    from async_dispatch._errors import NotOpenError

    def answer(error: BaseException) -> int:
        receiver = WebhookReceiver(_Failing(error), allow_unauthenticated=True)
        body = json.dumps({**SUCCESS, "requestId": "req_1"}).encode()
        return anyio.run(receiver.handle, body, {}).status_code

    assert answer(NotOpenError("closed")) == 503
    assert answer(RecursionError("too deep")) == 422
    assert answer(RuntimeError("dictionary changed size during iteration")) == 500


async def test_a_deep_status_body_is_an_invalid_response() -> None:
    fake = service(reply(200, content=with_field(PENDING, "hitlInputMetadata", deep(980))))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError, match="deeper"):
            await client.get_status("req_1")


async def test_an_ordinary_nesting_is_accepted() -> None:
    fake = service(reply(200, content=with_field(PENDING, "hitlInputMetadata", deep(40))))
    async with fake.client(retry=NO_RETRY) as client:
        assert (await client.get_status("req_1")).hitl_input_metadata is not None
