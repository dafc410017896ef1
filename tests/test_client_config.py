"""Configuration: the official SDK's variables as fallbacks of ours, authentication headers
other than ``x-api-key``, and the submit's own, longer timeout."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
import trio.testing

from _foundation_helpers import KEY, SUCCESS, reply, service
from async_dispatch import (
    DEFAULT_BASE_URL,
    DispatchClient,
    RequestTimeoutError,
    SubmitUncertainError,
    UsageError,
)
from async_dispatch._config import configured_api_key, configured_base_url

pytestmark = pytest.mark.anyio

ACCEPTED = reply(202, {"requestId": "req_1"})
TOKEN = "tok-SECRET-456"
ENV = ("DISPATCH_API_KEY", "DISPATCH_BASE_URL", "NARADA_API_KEY", "NARADA_API_BASE_URL")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- the official SDK's variables -----------------------------------------------------------


def test_the_sdks_variables_are_fallbacks_of_ours() -> None:
    sdk = {"NARADA_API_KEY": "sdk-key", "NARADA_API_BASE_URL": "https://sdk.test/v2"}
    ours = {"DISPATCH_API_KEY": "our-key", "DISPATCH_BASE_URL": "https://ours.test/v2"}
    assert configured_api_key(None, sdk) == "sdk-key"
    assert configured_base_url(None, sdk) == "https://sdk.test/v2"
    assert configured_api_key(None, {**sdk, **ours}) == "our-key"
    assert configured_base_url(None, {**sdk, **ours}) == "https://ours.test/v2"
    # Blank counts as unset, so the next variable in line is used.
    blank = {"DISPATCH_API_KEY": " ", "DISPATCH_BASE_URL": ""}
    assert configured_api_key(None, {**sdk, **blank}) == "sdk-key"
    assert configured_base_url(None, {**sdk, **blank}) == "https://sdk.test/v2"
    assert configured_api_key("given", sdk) == "given"
    assert configured_base_url(None, {}) == DEFAULT_BASE_URL


async def test_a_client_runs_on_the_sdks_variables_alone(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NARADA_API_KEY", KEY)
    clean_env.setenv("NARADA_API_BASE_URL", "http://127.0.0.1:8123/fast/v2")
    fake = service(reply(200, SUCCESS))
    client = DispatchClient(http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake)))
    assert client.base_url == "http://127.0.0.1:8123/fast/v2"
    await client.get_status("req_1")
    [request] = fake.requests
    assert request.headers["x-api-key"] == KEY
    assert str(request.url) == "http://127.0.0.1:8123/fast/v2/remote-dispatch/responses/req_1"


def test_without_any_key_the_error_names_our_variable(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="DISPATCH_API_KEY"):
        DispatchClient()


# -- other authentication headers -----------------------------------------------------------


async def test_auth_headers_replace_the_key_from_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("DISPATCH_API_KEY", KEY)
    fake = service(ACCEPTED, reply(200, SUCCESS))
    async with fake.client(api_key=None, auth_headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        await c.submit("p")
        await c.get_status("req_1")
    for request in fake.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert "x-api-key" not in request.headers


async def test_an_explicit_key_is_sent_besides_the_auth_headers() -> None:
    fake = service(ACCEPTED)
    async with fake.client(api_key=KEY, auth_headers={"X-Tenant": "t-1"}) as client:
        await client.submit("p")
    [request] = fake.requests
    assert (request.headers["x-api-key"], request.headers["x-tenant"]) == (KEY, "t-1")


async def test_without_auth_headers_x_api_key_is_the_default() -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        await client.submit("p")
    assert fake.requests[0].headers["x-api-key"] == KEY
    assert "authorization" not in fake.requests[0].headers


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"bad name": "v"}, "not a valid HTTP header name"),
        ({"x:y": "v"}, "not a valid HTTP header name"),
        ({"": "v"}, "not a valid HTTP header name"),
        ({7: "v"}, "not a valid HTTP header name"),
        ({"Content-Type": "text/plain"}, "set by the client"),
        ({"Host": "evil.test"}, "set by the client"),
        ({"Authorization": "a", "authorization": "b"}, "given twice"),
        ({"Authorization": f"Bearer {TOKEN}\r\nx-evil: 1"}, "line break"),
        ({"Authorization": f"Bearer {TOKEN}\n"}, "line break"),
        ({"Authorization": f"Bearer {TOKEN}\x00"}, "line break or NUL"),
        ({"Authorization": "Bearer t\u00f6k"}, "printable ASCII"),
        ({"Authorization": "  "}, "printable ASCII"),
        ({"Authorization": 42}, "must be a str"),
        ({"x-api-key": "k"}, "either as api_key or in auth_headers"),
    ],
)
def test_auth_headers_that_cannot_travel_are_refused_without_showing_them(
    headers: dict[Any, Any], problem: str
) -> None:
    with pytest.raises(UsageError, match=problem) as caught:
        DispatchClient(api_key=KEY, auth_headers=headers)
    assert TOKEN not in str(caught.value)
    assert KEY not in str(caught.value)


def test_auth_headers_must_be_a_mapping_and_not_empty(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="mapping"):
        DispatchClient(auth_headers=[("Authorization", "x")])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no API key"):
        DispatchClient(auth_headers={})


async def test_a_401_with_auth_headers_says_to_check_them() -> None:
    fake = service(reply(401, {"detail": "nope"}))
    async with fake.client(api_key=None, auth_headers={"Authorization": "Bearer x"}) as client:
        with pytest.raises(Exception, match="check the auth_headers"):
            await client.get_status("req_1")


# -- the submit's own timeout ---------------------------------------------------------------


def test_the_submit_timeout_is_generous_by_default_and_never_below_timeout() -> None:
    assert DispatchClient(api_key=KEY).submit_timeout == 120
    assert DispatchClient(api_key=KEY, timeout=300).submit_timeout == 300
    assert DispatchClient(api_key=KEY, timeout=300, submit_timeout=10).submit_timeout == 10


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), 3601, "60", True])
def test_a_nonsense_submit_timeout_is_refused(value: Any) -> None:
    with pytest.raises(UsageError, match="submit_timeout"):
        DispatchClient(api_key=KEY, submit_timeout=value)


async def test_the_submit_timeout_bounds_the_submit_only() -> None:
    fake = service(ACCEPTED, reply(200, SUCCESS))
    async with fake.client(timeout=5, submit_timeout=45) as client:
        await client.submit("p")
        await client.get_status("req_1")
    submit, read = fake.requests
    assert submit.extensions["timeout"] == dict.fromkeys(("connect", "read", "write", "pool"), 45)
    assert read.extensions["timeout"] == dict.fromkeys(("connect", "read", "write", "pool"), 5)


class TestOnVirtualTime:
    """A slow service on trio's MockClock: each bound is measured exactly."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @staticmethod
    def slow(seconds: float) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            await anyio.sleep(seconds)
            if request.method == "POST":
                return httpx.Response(202, json={"requestId": "req_1"})
            return httpx.Response(200, json=SUCCESS)

        return httpx.MockTransport(handler)

    async def test_a_submit_may_take_longer_than_a_status_read(self) -> None:
        http = httpx.AsyncClient(transport=self.slow(60))
        async with service().client(http_client=http, timeout=10, submit_timeout=90) as client:
            start = anyio.current_time()
            assert await client.submit("p") == "req_1"
            assert anyio.current_time() - start == pytest.approx(60)
            with pytest.raises(RequestTimeoutError, match="timeout=10s"):
                await client.get_status("req_1")

    async def test_a_submit_past_its_timeout_is_uncertain_and_says_which_bound(self) -> None:
        http = httpx.AsyncClient(transport=self.slow(60))
        async with service().client(http_client=http, timeout=100, submit_timeout=30) as client:
            start = anyio.current_time()
            with pytest.raises(SubmitUncertainError, match="submit_timeout=30s") as caught:
                await client.submit("p")
        assert anyio.current_time() - start == pytest.approx(30)
        assert "NoneType" not in str(caught.value)
