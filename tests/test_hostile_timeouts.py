"""A server that answers too slowly (a body trickled a byte at a time): every request has
one bound on its whole exchange, body included (first staged in #11)."""

from __future__ import annotations

import anyio
import anyio.abc
import httpx
import pytest

from _hostile import own_client, trickle
from _tcp import tcp_server
from async_dispatch import (
    SubmitUncertainError,
    TransportError,
)

pytestmark = pytest.mark.anyio

# -- 1. a total time bound per request ------------------------------------------------------


async def test_a_trickled_body_is_cut_off_at_the_timeout_on_the_default_transport() -> None:
    async with tcp_server(trickle) as url, own_client(url, timeout=0.4) as client:
        with anyio.fail_after(8), pytest.raises(TransportError, match=r"timeout=0\.4s") as caught:
            await client.get_status("req_1")
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.asyncio_only
async def test_a_trickled_body_is_cut_off_at_the_timeout_through_httpx_on_asyncio() -> None:
    async with (
        tcp_server(trickle) as url,
        httpx.AsyncClient() as http,
        own_client(url, timeout=0.4, http_client=http) as client,
    ):
        with anyio.fail_after(8), pytest.raises(TransportError, match=r"timeout=0\.4s"):
            await client.get_status("req_1")


async def test_a_submit_cut_off_at_the_timeout_is_uncertain() -> None:
    async with tcp_server(trickle) as url, own_client(url, submit_timeout=0.4) as client:
        with (
            anyio.fail_after(8),
            pytest.raises(SubmitUncertainError, match=r"submit_timeout=0\.4s"),
        ):
            await client.submit("/Operator go")
