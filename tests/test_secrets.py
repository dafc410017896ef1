"""The API key never shows: not in a log line (tracing on, debug level), not in a repr, not
in any exception the client raises, even when the service echoes the key back. Nor do
other credentials (`auth_headers`) or the secret-bearing submit options, which the
service may quote back in an error; nor does a span or an instrumentation event."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any

import httpx
import pytest

from _foundation_helpers import (
    KEY,
    PENDING,
    SUCCESS,
    Answer,
    fail,
    reply,
    service,
    texts_of,
)
from _logs import capture_logs
from async_dispatch import (
    DispatchClient,
    DispatchError,
    RetryPolicy,
    SubmitOptions,
    UsageError,
)
from async_dispatch._wire import parse_status_body
from async_dispatch.instrumentation import LoggingHook

pytestmark = pytest.mark.anyio

ECHO = f"invalid key {KEY} for this resource"
Call = Callable[[DispatchClient], Awaitable[object]]


def get_status(client: DispatchClient) -> Awaitable[object]:
    return client.get_status("req_1")


def submit(client: DispatchClient) -> Awaitable[object]:
    return client.submit("/Operator find jobs", callback_secret="shh")


def wait(client: DispatchClient) -> Awaitable[object]:
    return client.wait("req_1", timeout=0.05, interval=0.01)


#: Each scenario: what the service answers, and what the caller does.
SCENARIOS: dict[str, tuple[list[Answer], Call]] = {
    "400": ([reply(400, content=ECHO.encode())], get_status),
    "401": ([reply(401, {"error": ECHO})], get_status),
    "403": ([reply(403, {"detail": ECHO})], get_status),
    "404": ([reply(404, {"detail": ECHO})], get_status),
    "422": ([reply(422, {"detail": [{"msg": ECHO}]})], get_status),
    "429": ([reply(429, {"error": ECHO}, headers={"Retry-After": "0"})], get_status),
    "500": ([reply(500, content=f"<h1>{ECHO}</h1>".encode())], get_status),
    "503": ([reply(503, content=ECHO.encode())], get_status),
    "connect-error": ([fail(httpx.ConnectError, ECHO)], get_status),
    "read-timeout": ([fail(httpx.ReadTimeout, ECHO)], get_status),
    "protocol-error": ([fail(httpx.RemoteProtocolError, ECHO)], get_status),
    "bad-json": ([reply(200, content=b"{nope")], get_status),
    "deadline": ([reply(200, PENDING)], wait),
    "submit-400": ([reply(400, {"error": ECHO})], submit),
    "submit-429": ([reply(429, content=ECHO.encode())], submit),
    "submit-502": ([reply(502, content=ECHO.encode())], submit),
    "submit-read-timeout": ([fail(httpx.ReadTimeout, ECHO)], submit),
    "submit-connect-error": ([fail(httpx.ConnectError, ECHO)], submit),
    "submit-no-id": ([reply(202, {"message": ECHO})], submit),
    "submit-bad-id": ([reply(202, {"requestId": f"{KEY}/x"})], submit),
}


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every library log event, debug level included, for the duration of a test."""
    with capture_logs() as events:
        yield events


def own_errors(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the errors of this library a traceback would show with it (httpx's errors
    are not ours to word)."""
    seen: BaseException | None = exc
    while isinstance(seen, DispatchError):
        yield seen
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)


def assert_no_key(texts: list[str]) -> None:
    leaks = [text for text in texts if KEY in text]
    assert leaks == []


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_the_key_is_in_no_error_and_no_log_line(
    name: str, logs: list[MutableMapping[str, Any]]
) -> None:
    answers, call = SCENARIOS[name]
    fake = service(*answers)
    async with fake.client() as client:
        with pytest.raises(DispatchError) as caught:
            await call(client)
    assert fake.requests, "the scenario never reached the fake service"
    assert all(request.headers["x-api-key"] == KEY for request in fake.requests)
    for error in own_errors(caught.value):
        assert_no_key(texts_of(error))
    assert_no_key([repr(event) for event in logs])


async def test_tracing_logs_every_request_and_retry_without_the_key(
    logs: list[MutableMapping[str, Any]],
) -> None:
    fake = service(reply(503, content=ECHO.encode()), reply(200, SUCCESS))
    async with fake.client() as client:
        await client.get_status("req_1")
    # Each request and retry (debug level), then the check as a whole (the logging hook).
    assert [event["event"] for event in logs] == ["retrying", "status_read", "checked"]
    assert logs[0]["request_id"] == "req_1"
    assert logs[0]["log_level"] == "debug"
    assert_no_key([repr(event) for event in logs])


async def test_the_key_is_redacted_from_what_the_service_echoes() -> None:
    fake = service(reply(400, content=ECHO.encode()))
    async with fake.client() as client:
        with pytest.raises(DispatchError) as caught:
            await client.get_status("req_1")
    assert "invalid key *** for this resource" in str(caught.value)


async def test_reprs_do_not_show_the_key() -> None:
    fake = service(reply(200, SUCCESS))
    async with fake.client(retry=RetryPolicy(attempts=2)) as client:
        status = await client.get_status("req_1")
        assert_no_key([repr(client), str(client), repr(status), repr(client.retry)])


def test_a_refused_key_is_not_repeated() -> None:
    with pytest.raises(UsageError) as caught:
        DispatchClient(api_key=f"{KEY}\n")
    assert_no_key(texts_of(caught.value))


def test_a_refused_url_does_not_show_the_key() -> None:
    with pytest.raises(UsageError) as caught:
        DispatchClient(api_key=KEY, base_url="http://example.com")
    assert_no_key(texts_of(caught.value))


def test_the_clients_attributes_do_not_show_the_key() -> None:
    client = DispatchClient(api_key=KEY)
    assert_no_key([repr(vars(client))])


async def test_an_unparseable_2xx_echoing_the_key_is_redacted() -> None:
    fake = service(reply(200, content=f"<html>{ECHO}</html>".encode()))
    async with fake.client() as client:
        with pytest.raises(DispatchError) as caught:
            await client.get_status("req_1")
    assert_no_key(texts_of(caught.value))


def test_parse_errors_only_show_an_excerpt() -> None:
    body = b"<html>" + b"x" * 100_000 + b"</html>"
    with pytest.raises(DispatchError) as caught:
        parse_status_body("req_1", body)
    assert all(len(text) < 1000 for text in texts_of(caught.value))


# -- secret-bearing submit options and other credentials -------------------------------------

#: A distinctive value in each secret-bearing option: any output containing one is a leak.
OPTION_SECRETS: dict[str, str] = {
    "callback_secret": "cbsecret-LEAK-1",
    "callback_headers": "cbheader-LEAK-2",
    "secret_variables": "password-LEAK-3",
    "user_resource_credentials": "jira-LEAK-4",
    "mcp_servers": "mcp-bearer-LEAK-5",
    "vector_stores": "aws-secret-LEAK-6",
    "extra": "extra-LEAK-7",
    "escaped": 'quote"LEAK-8\u00e9',
}
SECRET_OPTIONS = SubmitOptions(
    execution_mode="cloud",
    callback_url="https://example.com/hook",
    callback_secret=OPTION_SECRETS["callback_secret"],
    callback_headers={"Authorization": f"Bearer {OPTION_SECRETS['callback_headers']}"},
    secret_variables={
        "password": OPTION_SECRETS["secret_variables"],
        "other": OPTION_SECRETS["escaped"],
    },
    user_resource_credentials={"jira": {"token": OPTION_SECRETS["user_resource_credentials"]}},
    mcp_servers=[
        {
            "url": "https://mcp.test",
            "authentication": {"bearerToken": OPTION_SECRETS["mcp_servers"]},
        }
    ],
    vector_stores=[
        {
            "id": "vs",
            "connection": {"credentials": {"secretAccessKey": OPTION_SECRETS["vector_stores"]}},
        }
    ],
    extra={"somethingNew": {"apiToken": OPTION_SECRETS["extra"]}},
)
AUTH_TOKEN = "bearer-LEAK-9"


def assert_no_secret(texts: list[str]) -> None:
    """No secret, nor any fragment of one (every one of them holds ``LEAK``)."""
    secrets = ["LEAK", KEY]
    leaks = [(secret, text) for text in texts for secret in secrets if secret in text]
    assert leaks == []


def echo_body(status_code: int, shape: str) -> Answer:
    """A service that quotes the submit's body back, the way frameworks' validation
    errors do (FastAPI puts each refused ``input`` in its 422)."""

    def answer(request: httpx.Request) -> httpx.Response:
        sent = request.content.decode()
        if shape == "json":
            detail = {"detail": [{"loc": ["body"], "msg": "bad", "input": json.loads(sent)}]}
            return httpx.Response(status_code, json=detail, request=request)
        if shape == "html":
            return httpx.Response(status_code, text=f"<html><body>{sent}</body></html>")
        return httpx.Response(status_code, text=sent, request=request)

    return answer


class Recorder:
    """A tracing hook that keeps every event and every span's name and attributes."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, event: object, /) -> None:
        self.seen.append(repr(event))

    def span(
        self, name: str, attributes: Mapping[str, str | int | float]
    ) -> contextlib.AbstractContextManager[object]:
        self.seen.append(f"{name} {attributes!r}")
        return contextlib.nullcontext()


SUBMIT_ECHOES: dict[str, Answer] = {
    "422-json": echo_body(422, "json"),
    "400-text": echo_body(400, "text"),
    "401-json": echo_body(401, "json"),
    "404-text": echo_body(404, "text"),
    "429-text": echo_body(429, "text"),
    "500-text": echo_body(500, "text"),
    "502-html": echo_body(502, "html"),
    "200-html": echo_body(200, "html"),
    "202-no-id": echo_body(202, "json"),
}


@pytest.mark.parametrize("name", list(SUBMIT_ECHOES))
async def test_secret_options_are_in_no_error_log_span_or_event(
    name: str, logs: list[MutableMapping[str, Any]]
) -> None:
    recorder = Recorder()
    fake = service(SUBMIT_ECHOES[name])
    client = fake.client(
        api_key=KEY, auth_headers={"authorization": f"Bearer {AUTH_TOKEN}"}, hooks=[recorder]
    )
    async with client:
        with pytest.raises(DispatchError) as caught:
            await client.submit("/Operator log in", SECRET_OPTIONS)
    assert fake.requests, "the scenario never reached the fake service"
    # The wire itself carries every secret, as given.
    assert json.loads(fake.requests[0].content) == SECRET_OPTIONS.body("/Operator log in")
    for error in own_errors(caught.value):
        assert_no_secret(texts_of(error))
    assert_no_secret([repr(event) for event in logs])
    assert recorder.seen, "the hook saw nothing"
    assert_no_secret(recorder.seen)


async def test_secret_options_are_in_no_log_line_of_a_successful_submit(
    logs: list[MutableMapping[str, Any]],
) -> None:
    recorder = Recorder()
    fake = service(reply(202, {"requestId": "req_1"}))
    async with fake.client(hooks=[recorder, LoggingHook()]) as client:
        await client.submit("/Operator log in", SECRET_OPTIONS)
    assert logs, "nothing was logged at debug level"
    assert_no_secret([repr(event) for event in logs])
    assert_no_secret(recorder.seen)


def test_secret_options_are_in_no_repr() -> None:
    assert_no_secret([repr(SECRET_OPTIONS), str(SECRET_OPTIONS)])
    merged = SECRET_OPTIONS.with_callback("https://example.com/other", "s", {"X": "y"})
    assert_no_secret([repr(merged)])


async def test_auth_headers_are_in_no_repr_attribute_or_echoed_error() -> None:
    fake = service(reply(400, content=f"bad token Bearer {AUTH_TOKEN} ({AUTH_TOKEN})".encode()))
    client = fake.client(api_key=None, auth_headers={"authorization": f"Bearer {AUTH_TOKEN}"})
    assert_no_secret([repr(client), str(client), repr(vars(client))])
    async with client:
        with pytest.raises(DispatchError) as caught:
            await client.get_status("req_1")
    assert fake.requests[0].headers["authorization"] == f"Bearer {AUTH_TOKEN}"
    for error in own_errors(caught.value):
        assert_no_secret(texts_of(error))
    assert "bad token *** (***)" in str(caught.value)
