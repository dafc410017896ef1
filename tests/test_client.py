"""`DispatchClient` against a scripted fake service: the wire contract's error table, the
retry rules (a status read retries, an uncertain submit never does), configuration from the
environment, ownership of the HTTP client, the body-size cap, and `wait()`."""

from __future__ import annotations

import email.utils
import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
import pytest

import async_dispatch._transport
from _foundation_helpers import (
    BASE_URL,
    ERROR,
    INPUT_REQUIRED,
    KEY,
    NO_RETRY,
    PAUSING,
    PENDING,
    SUCCESS,
    fail,
    reply,
    service,
    stream,
)
from async_dispatch import (
    DEFAULT_BASE_URL,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceeded,
    DispatchClient,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    Status,
    SubmitUncertainError,
    TransportError,
    UsageError,
)

pytestmark = pytest.mark.anyio

ACCEPTED = reply(202, {"requestId": "req_abc123def456"})


# -- the happy path -------------------------------------------------------------------------


async def test_get_status_reads_one_status_with_the_key_header() -> None:
    fake = service(reply(200, SUCCESS))
    async with fake.client() as client:
        status = await client.get_status("req_abc123def456")
    assert status.status is Status.SUCCESS
    assert status.text == "Found 42 software engineering jobs."
    [request] = fake.requests
    assert request.method == "GET"
    assert str(request.url) == f"{BASE_URL}/remote-dispatch/responses/req_abc123def456"
    assert request.headers["x-api-key"] == KEY


async def test_submit_posts_json_and_returns_the_request_id() -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        request_id = await client.submit("/Operator find jobs")
    assert request_id == "req_abc123def456"
    [request] = fake.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/remote-dispatch"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["content-type"] == "application/json"
    # The helper's client submits in cloud mode (the default mode needs a browser window).
    assert fake.json_bodies() == [{"prompt": "/Operator find jobs", "executionMode": "cloud"}]


@pytest.mark.parametrize("code", [200, 201, 202, 204])
async def test_submit_treats_any_2xx_with_a_request_id_as_accepted(code: int) -> None:
    fake = service(reply(code, {"requestId": "req_1"}))
    async with fake.client() as client:
        assert await client.submit("p") == "req_1"


# -- submit bodies --------------------------------------------------------------------------


async def test_submit_maps_python_names_to_camel_case() -> None:
    fake = service(ACCEPTED)
    schema = {"type": "jsonSchema", "jsonSchema": {"type": "object"}}
    async with fake.client() as client:
        await client.submit(
            "/Operator go",
            browser_window_id="win-1",
            execution_mode="cloud",
            clear_chat=False,
            previous_request_id="req_0",
            save_screenshots=True,
            response_format=schema,
            time_zone="America/Los_Angeles",
            callback_url="https://example.com/hook",
            callback_secret="shh",
            callback_headers={"Authorization": "Bearer t"},
        )
    assert fake.json_bodies() == [
        {
            "prompt": "/Operator go",
            "browserWindowId": "win-1",
            "executionMode": "cloud",
            "clearChat": False,
            "previousRequestId": "req_0",
            "saveScreenshots": True,
            "responseFormat": schema,
            "timeZone": "America/Los_Angeles",
            "callbackUrl": "https://example.com/hook",
            "callbackSecret": "shh",
            "callbackHeaders": {"Authorization": "Bearer t"},
        }
    ]


async def test_submit_merges_extra_fields_untouched() -> None:
    fake = service(ACCEPTED)
    extra = {"attachments": [{"file_name": "a.pdf"}], "variables": {"snake_case": None}}
    async with fake.client() as client:
        await client.submit("p", time_zone="UTC", extra=extra)
    assert fake.json_bodies() == [
        {"prompt": "p", "executionMode": "cloud", "timeZone": "UTC", **extra}
    ]


@pytest.mark.parametrize(
    ("options", "extra"),
    [
        ({}, {"prompt": "another prompt"}),
        ({"callback_url": "https://example.com/a"}, {"callbackUrl": "https://example.com/b"}),
        ({"clear_chat": False}, {"clearChat": True}),
    ],
)
async def test_submit_refuses_extra_fields_that_collide_with_options(
    options: dict[str, Any], extra: dict[str, Any]
) -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(UsageError, match="collides"):
            await client.submit("p", **options, extra=extra)
    assert fake.requests == []


@pytest.mark.parametrize("prompt", ["", "   ", None, 42])
async def test_submit_refuses_an_empty_or_non_string_prompt(prompt: Any) -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(UsageError, match="prompt"):
            await client.submit(prompt)
    assert fake.requests == []


async def test_submit_refuses_a_body_that_is_not_json() -> None:
    fake = service(ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(UsageError, match="JSON"):
            await client.submit("p", extra={"when": datetime.now(timezone.utc)})
        with pytest.raises(UsageError, match="JSON"):
            await client.submit("p", extra={"ratio": float("nan")})
    assert fake.requests == []


# -- the error table: status reads ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, BadRequestError),
        (422, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (410, NotFoundError),
    ],
)
async def test_client_errors_are_raised_at_once_without_retry(
    code: int, error: type[APIStatusError]
) -> None:
    fake = service(reply(code, {"detail": "field 'x' is wrong"}))
    async with fake.client() as client:
        with pytest.raises(error) as caught:
            await client.get_status("req_1")
    assert len(fake.requests) == 1
    assert caught.value.status_code == code
    assert caught.value.request_id == "req_1"
    assert "field 'x' is wrong" in caught.value.body_excerpt


@pytest.mark.parametrize("code", [400, 422])
async def test_a_bad_request_shows_what_the_service_said(code: int) -> None:
    fake = service(reply(code, content=b"prompt: must not be empty"))
    async with fake.client() as client:
        with pytest.raises(BadRequestError, match="prompt: must not be empty"):
            await client.get_status("req_1")


def _http_date(seconds_from_now: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize("code", [408, 425, 429])
@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("7", 7.0, 7.0),
        ("1.5", 1.5, 1.5),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0),  # a date in the past: go now
        (120, 100.0, 120.0),  # an HTTP date two minutes from now
    ],
    ids=["seconds", "fraction", "past-date", "future-date"],
)
async def test_slow_down_answers_carry_retry_after_in_seconds(
    code: int, retry_after: str | int, low: float, high: float
) -> None:
    header = _http_date(retry_after) if isinstance(retry_after, int) else retry_after
    fake = service(reply(code, {"error": "slow down"}, headers={"Retry-After": header}))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get_status("req_1")
    assert caught.value.status_code == code
    assert caught.value.retry_after is not None
    assert low <= caught.value.retry_after <= high


@pytest.mark.parametrize("code", [408, 425, 429])
async def test_slow_down_without_retry_after_says_back_off(code: int) -> None:
    fake = service(reply(code, {"error": "slow down"}))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(RateLimitedError, match="back off") as caught:
            await client.get_status("req_1")
    assert caught.value.retry_after is None


@pytest.mark.parametrize("code", [408, 425, 429])
async def test_slow_down_answers_are_retried(code: int) -> None:
    fake = service(reply(code, headers={"Retry-After": "0"}), reply(200, SUCCESS))
    async with fake.client() as client:
        status = await client.get_status("req_1")
    assert status.status is Status.SUCCESS
    assert len(fake.requests) == 2


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_server_errors_are_retried_then_raised(code: int) -> None:
    fake = service(reply(code, content=b"<html><h1>Bad Gateway</h1></html>"))
    async with fake.client() as client:
        with pytest.raises(ServerError) as caught:
            await client.get_status("req_1")
    assert len(fake.requests) == 3
    assert caught.value.status_code == code
    assert caught.value.body_excerpt == "Bad Gateway"


async def test_get_status_recovers_from_transient_failures() -> None:
    fake = service(
        reply(503),
        fail(httpx.ReadTimeout),
        reply(200, SUCCESS),
    )
    async with fake.client() as client:
        status = await client.get_status("req_1")
    assert status.status is Status.SUCCESS
    assert len(fake.requests) == 3


async def test_get_status_raises_the_last_error_when_retries_run_out() -> None:
    fake = service(reply(503), fail(httpx.ReadTimeout), reply(502), reply(200, SUCCESS))
    async with fake.client() as client:
        with pytest.raises(ServerError) as caught:
            await client.get_status("req_1")
    assert caught.value.status_code == 502
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
async def test_transport_failures_are_retried_then_wrapped(
    error: type[httpx.TransportError],
) -> None:
    fake = service(fail(error, "connection trouble"))
    async with fake.client() as client:
        with pytest.raises(TransportError, match="connection trouble") as caught:
            await client.get_status("req_1")
    assert isinstance(caught.value.__cause__, error)
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"<!DOCTYPE html><html><body>Service Unavailable</body></html>",
        json.dumps(SUCCESS).encode()[:-12],  # truncated
        b"",
        b'["a", "list"]',
        json.dumps({**SUCCESS, "createdAt": "yesterday"}).encode(),
    ],
    ids=["text", "html", "truncated", "empty", "list", "bad-timestamp"],
)
async def test_a_2xx_that_is_not_a_status_is_retried_then_raised(body: bytes) -> None:
    fake = service(reply(200, content=body))
    async with fake.client() as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_status("req_1")
    assert len(fake.requests) == 3
    assert caught.value.status_code == 200
    assert "req_1" in str(caught.value)


async def test_an_html_page_is_named_as_such() -> None:
    fake = service(reply(200, content=b"<html><title>Login</title></html>"))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError, match="HTML page") as caught:
            await client.get_status("req_1")
    assert caught.value.body_excerpt == "Login"


async def test_a_broken_2xx_is_a_transient_failure_of_that_poll() -> None:
    fake = service(reply(200, content=b"<html>oops</html>"), reply(200, SUCCESS))
    async with fake.client() as client:
        status = await client.get_status("req_1")
    assert status.status is Status.SUCCESS


async def test_an_undecodable_body_is_an_invalid_response() -> None:
    fake = service(reply(200, content=b"\x00not gzip", headers={"Content-Encoding": "gzip"}))
    async with fake.client(retry=NO_RETRY) as client:
        with pytest.raises(InvalidResponseError, match="decoded"):
            await client.get_status("req_1")


async def test_an_unexpected_status_code_is_an_api_status_error() -> None:
    fake = service(reply(302, headers={"Location": "https://elsewhere.example"}))
    async with fake.client() as client:
        with pytest.raises(APIStatusError) as caught:
            await client.get_status("req_1")
    assert type(caught.value) is APIStatusError
    assert len(fake.requests) == 1


# -- the error table: submits (never re-send what may have arrived) --------------------------


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_a_5xx_on_submit_is_uncertain_and_not_resent(code: int) -> None:
    fake = service(reply(code, content=b"upstream timeout"), ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(SubmitUncertainError, match="may have been created"):
            await client.submit("p")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.ReadError, httpx.WriteTimeout, httpx.RemoteProtocolError]
)
async def test_a_failure_after_sending_a_submit_is_uncertain_and_not_resent(
    error: type[httpx.TransportError],
) -> None:
    fake = service(fail(error), ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(SubmitUncertainError) as caught:
            await client.submit("p")
    assert len(fake.requests) == 1
    assert isinstance(caught.value.__cause__, TransportError)
    assert isinstance(caught.value.__cause__.__cause__, error)


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_a_submit_that_never_left_is_retried(error: type[httpx.TransportError]) -> None:
    fake = service(fail(error), fail(error), ACCEPTED)
    async with fake.client() as client:
        assert await client.submit("p") == "req_abc123def456"
    assert len(fake.requests) == 3


async def test_a_submit_that_never_connects_raises_a_transport_error() -> None:
    fake = service(fail(httpx.ConnectError, "connection refused"))
    async with fake.client() as client:
        with pytest.raises(TransportError, match="connection refused"):
            await client.submit("p")
    assert len(fake.requests) == 3


async def test_a_rate_limited_submit_is_retried() -> None:
    fake = service(reply(429, headers={"Retry-After": "0"}), ACCEPTED)
    async with fake.client() as client:
        assert await client.submit("p") == "req_abc123def456"
    assert len(fake.requests) == 2
    assert fake.json_bodies() == [{"prompt": "p", "executionMode": "cloud"}] * 2


async def test_a_submit_rate_limited_to_the_end_raises_rate_limited() -> None:
    fake = service(reply(429, headers={"Retry-After": "0"}))
    async with fake.client() as client:
        with pytest.raises(RateLimitedError):
            await client.submit("p")
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, BadRequestError),
        (422, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
    ],
)
async def test_a_rejected_submit_is_not_retried(code: int, error: type[APIStatusError]) -> None:
    fake = service(reply(code, {"error": "no"}), ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(error):
            await client.submit("p")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"requestId": ""}',
        b'{"requestId": 7}',
        b'["req_1"]',
        b"req_1",
        b'{"requestId": "a\nb"}',
    ],
)
async def test_an_accepted_submit_without_a_usable_id_is_uncertain(body: bytes) -> None:
    fake = service(reply(202, content=body), ACCEPTED)
    async with fake.client() as client:
        with pytest.raises(SubmitUncertainError, match="requestId"):
            await client.submit("p")
    assert len(fake.requests) == 1


async def test_an_accepted_submit_with_an_unreadable_body_is_uncertain() -> None:
    fake = service(
        reply(202, content=b"\x00not gzip", headers={"Content-Encoding": "gzip"}), ACCEPTED
    )
    async with fake.client() as client:
        with pytest.raises(SubmitUncertainError):
            await client.submit("p")
    assert len(fake.requests) == 1


# -- the body-size cap ----------------------------------------------------------------------


async def test_a_body_declared_too_large_is_refused_unread() -> None:
    served = 0

    def chunks() -> Iterator[bytes]:
        nonlocal served
        while True:
            served += 1
            yield b"x" * 1024

    fake = service(stream(chunks(), headers={"Content-Length": "1000001"}))
    async with fake.client(retry=NO_RETRY, max_body_size=1_000_000) as client:
        with pytest.raises(InvalidResponseError, match="max_body_size"):
            await client.get_status("req_1")
    assert served == 0


# Stopping a streamed read early abandons httpx's own async generators, which trio reports
# as a ResourceWarning when they are collected (encode/httpx#3686); nothing leaks.
@pytest.mark.filterwarnings("ignore:Async generator 'httpx.:ResourceWarning")
async def test_a_streamed_body_too_large_is_refused_without_reading_it_all() -> None:
    served = 0

    def chunks() -> Iterator[bytes]:
        nonlocal served
        while True:  # a body without end: only stopping early ends this test
            served += 1
            yield b"x" * 1024

    fake = service(stream(chunks()))
    async with fake.client(retry=NO_RETRY, max_body_size=10_000) as client:
        with pytest.raises(InvalidResponseError, match="max_body_size") as caught:
            await client.get_status("req_1")
    assert caught.value.status_code == 200
    assert served <= 11


async def test_a_body_at_the_cap_is_read() -> None:
    body = json.dumps(SUCCESS).encode()
    fake = service(reply(200, content=body))
    async with fake.client(max_body_size=len(body)) as client:
        assert (await client.get_status("req_1")).status is Status.SUCCESS


# -- configuration and lifecycle ------------------------------------------------------------


async def test_key_and_url_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_API_KEY", KEY)
    monkeypatch.setenv("DISPATCH_BASE_URL", "http://127.0.0.1:8123/fast/v2/")
    fake = service(reply(200, SUCCESS))
    client = DispatchClient(http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake)))
    assert client.base_url == "http://127.0.0.1:8123/fast/v2"
    async with client:
        await client.get_status("req_1")
    [request] = fake.requests
    assert request.headers["x-api-key"] == KEY
    assert str(request.url) == "http://127.0.0.1:8123/fast/v2/remote-dispatch/responses/req_1"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_API_KEY", "sk-from-env")
    monkeypatch.setenv("DISPATCH_BASE_URL", "http://127.0.0.1:1")
    client = DispatchClient(api_key=KEY, base_url="https://example.com/v2")
    assert client.base_url == "https://example.com/v2"


def test_the_base_url_defaults_to_the_public_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCH_BASE_URL", raising=False)
    assert DispatchClient(api_key=KEY).base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize("key", [None, "", "   "])
def test_a_missing_key_is_a_clear_error_at_construction(
    monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    monkeypatch.delenv("DISPATCH_API_KEY", raising=False)
    with pytest.raises(UsageError, match="DISPATCH_API_KEY"):
        DispatchClient(api_key=key)


def test_a_key_with_a_line_break_is_refused() -> None:
    with pytest.raises(UsageError, match="line break") as caught:
        DispatchClient(api_key=KEY + "\r\nx-evil: 1")
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("options", [{"timeout": 0}, {"timeout": -1.0}, {"max_body_size": 0}])
def test_nonsense_numbers_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        DispatchClient(api_key=KEY, **options)


async def test_a_callers_http_client_is_left_open() -> None:
    fake = service(reply(200, SUCCESS))
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    async with DispatchClient(api_key=KEY, base_url=BASE_URL, http_client=http) as client:
        await client.get_status("req_1")
    assert not http.is_closed
    await http.get(f"{BASE_URL}/still-usable")
    await http.aclose()


class _RecordingTransport(httpx.MockTransport):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_an_owned_http_client_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = _RecordingTransport(service(reply(200, SUCCESS)))
    monkeypatch.setattr(async_dispatch._transport, "default_transport", lambda **_: transport)
    async with DispatchClient(api_key=KEY, base_url=BASE_URL) as client:
        await client.get_status("req_1")
        assert not transport.closed
    assert transport.closed


async def test_a_client_that_owns_its_http_client_must_be_opened_before_use() -> None:
    client = DispatchClient(api_key=KEY, base_url=BASE_URL)
    with pytest.raises(RuntimeError, match="async with"):
        await client.get_status("req_1")


async def test_a_client_on_a_callers_http_client_works_without_async_with() -> None:
    fake = service(reply(200, SUCCESS))
    client = fake.client()
    assert (await client.get_status("req_1")).status is Status.SUCCESS


async def test_a_client_is_entered_only_once() -> None:
    async with service(reply(200, SUCCESS)).client() as client:
        with pytest.raises(RuntimeError, match="once"):
            await client.__aenter__()


# -- wait() ---------------------------------------------------------------------------------


async def test_wait_gives_up_after_its_timeout() -> None:
    fake = service(reply(200, PENDING))
    async with fake.client() as client:
        with pytest.raises(DeadlineExceeded) as caught:
            await client.wait("req_1", timeout=0.05, interval=0.01)
    assert caught.value.request_id == "req_1"
    assert caught.value.timeout == 0.05
    assert isinstance(caught.value, TimeoutError)
    assert len(fake.requests) >= 1


async def test_wait_refuses_a_nonsense_timeout() -> None:
    fake = service(reply(200, SUCCESS))
    async with fake.client() as client:
        with pytest.raises(UsageError):
            await client.wait("req_1", timeout=0)
    assert fake.requests == []


@pytest.mark.trio_only
@pytest.mark.virtual_clock
class TestOnVirtualTime:
    """Waits measured on trio's MockClock: minutes pass in microseconds, exactly."""

    @pytest.mark.parametrize(
        ("final", "expected"),
        [
            (SUCCESS, Status.SUCCESS),
            (ERROR, Status.ERROR),
            (INPUT_REQUIRED, Status.INPUT_REQUIRED),
        ],
    )
    async def test_wait_returns_at_success_error_or_input_required(
        self, final: dict[str, Any], expected: Status
    ) -> None:
        fake = service(reply(200, PENDING), reply(200, PENDING), reply(200, final))
        async with fake.client() as client:
            status = await client.wait("req_1", timeout=600)
        assert status.status is expected
        assert len(fake.requests) == 3

    async def test_wait_raises_deadline_exceeded_at_its_timeout(self) -> None:
        fake = service(reply(200, PENDING))
        async with fake.client() as client:
            start = anyio.current_time()
            with pytest.raises(DeadlineExceeded, match="600s"):
                await client.wait("req_1", timeout=600)
        assert anyio.current_time() - start == pytest.approx(600)

    async def test_wait_polls_less_often_as_time_goes_by(self) -> None:
        times: list[float] = []

        def pending(request: httpx.Request) -> httpx.Response:
            times.append(anyio.current_time())
            return httpx.Response(200, json=PENDING)

        fake = service(pending)
        async with fake.client() as client:
            with pytest.raises(DeadlineExceeded):
                await client.wait("req_1", timeout=60, interval=2, max_interval=10)
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert gaps[:6] == pytest.approx([2, 3, 4.5, 6.75, 10, 10])

    async def test_wait_stops_at_an_unknown_request_id(self) -> None:
        fake = service(reply(200, PENDING), reply(404, {"detail": "not found"}))
        async with fake.client() as client:
            with pytest.raises(NotFoundError):
                await client.wait("req_1", timeout=600)

    async def test_a_retry_waits_at_least_as_long_as_retry_after(self) -> None:
        fake = service(reply(429, headers={"Retry-After": "30"}), reply(200, SUCCESS))
        async with fake.client(retry=PAUSING) as client:
            start = anyio.current_time()
            await client.get_status("req_1")
        assert anyio.current_time() - start >= 30

    async def test_a_retry_waits_until_an_http_date_retry_after(self) -> None:
        fake = service(reply(503, headers={"Retry-After": _http_date(90)}), reply(200, SUCCESS))
        async with fake.client(retry=RetryPolicy(attempts=3, max_wait=120)) as client:
            start = anyio.current_time()
            await client.get_status("req_1")
        assert 80 <= anyio.current_time() - start <= 90
