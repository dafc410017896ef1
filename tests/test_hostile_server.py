"""The client against a hostile or broken server: it stays bounded (first staged in #11).

Each test stages one misbehaviour (a body trickled a byte at a time, a key echoed back in
a timestamp, a gzip bomb, a 980-level payload, `Retry-After: 0`) and checks the client
stays bounded: in time, in memory, in what it shows, and in how hard it hits the key.
"""

from __future__ import annotations

import contextlib
import json
import math
import traceback
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from _foundation_helpers import (
    BASE_URL,
    INPUT_REQUIRED,
    KEY,
    NO_RETRY,
    PAUSING,
    PENDING,
    SUCCESS,
    reply,
    service,
    stream,
)
from _logs import capture_logs
from _tcp import Handler, tcp_server
from _webhooks_helpers import RecordingDeliverer
from async_dispatch import (
    DispatchClient,
    DispatchError,
    InvalidResponseError,
    Poller,
    RateLimitedError,
    RetryPolicy,
    SubmitUncertainError,
    TokenBucket,
    TransportError,
    UsageError,
)
from async_dispatch._wire import parse_status_body
from async_dispatch.webhooks import WebhookReceiver, generate_secret

pytestmark = pytest.mark.anyio


# -- helpers --------------------------------------------------------------------------------


async def read_request(conn: anyio.abc.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await conn.receive()
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += await conn.receive()
    return head


async def trickle(conn: anyio.abc.SocketStream) -> None:
    """Promise 1000 bytes, then send one every 0.2 s: every read is quick, the body never ends."""
    await read_request(conn)
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{")
    for _ in range(999):
        await anyio.sleep(0.2)
        await conn.send(b" ")


async def hang_up(conn: anyio.abc.SocketStream) -> None:
    """Read the request, then close without a word."""
    await read_request(conn)


def own_client(url: str, **kwargs: Any) -> DispatchClient:
    """A client that builds its own HTTP client: aiohttp on asyncio, httpx on trio."""
    kwargs.setdefault("execution_mode", "cloud")
    return DispatchClient(api_key=KEY, base_url=url, retry=NO_RETRY, **kwargs)


def rendered(exc: BaseException) -> str:
    """The traceback as a renderer that shows every frame's locals would print it."""
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything chained below it, as cause *or* context (suppressed or not)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        todo += [e for e in (link.__cause__, link.__context__) if e is not None]


def shown(exc: BaseException) -> list[str]:
    """What every link of the chain can show: str, repr, args, a JSON error's document."""
    texts = []
    for link in chain(exc):
        texts += [str(link), repr(link), *map(repr, link.args)]
        texts += [repr(getattr(link, name, "")) for name in ("doc", "object", "body_excerpt")]
    return texts


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as events:
        yield events


# -- 1. a total time bound per request ------------------------------------------------------


async def test_a_trickled_body_is_cut_off_at_the_timeout_on_the_default_transport() -> None:
    async with tcp_server(trickle) as url, own_client(url, timeout=1) as client:
        with anyio.fail_after(8), pytest.raises(TransportError, match="timeout=1s") as caught:
            await client.get_status("req_1")
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.asyncio_only
async def test_a_trickled_body_is_cut_off_at_the_timeout_through_httpx_on_asyncio() -> None:
    async with (
        tcp_server(trickle) as url,
        httpx.AsyncClient() as http,
        own_client(url, timeout=1, http_client=http) as client,
    ):
        with anyio.fail_after(8), pytest.raises(TransportError, match="timeout=1s"):
            await client.get_status("req_1")


async def test_a_submit_cut_off_at_the_timeout_is_uncertain() -> None:
    async with tcp_server(trickle) as url, own_client(url, submit_timeout=1) as client:
        with anyio.fail_after(8), pytest.raises(SubmitUncertainError, match="submit_timeout=1s"):
            await client.submit("/Operator go")


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


# -- 7. arguments that switch a limit off ---------------------------------------------------

NOT_SECONDS = [math.inf, -math.inf, math.nan, 0, -1, True, "30", None, 1e9, 10**400]
NOT_COUNTS = [math.nan, math.inf, 1.5, 1.0, 0, -3, True, "4", None]


@pytest.mark.parametrize("timeout", NOT_SECONDS)
def test_a_client_refuses_a_timeout_that_is_not_a_sane_duration(timeout: Any) -> None:
    with pytest.raises(UsageError, match="timeout must be a finite number of seconds"):
        DispatchClient(api_key=KEY, base_url=BASE_URL, timeout=timeout)


@pytest.mark.parametrize("size", NOT_COUNTS)
def test_a_client_refuses_a_max_body_size_that_is_not_a_count(size: Any) -> None:
    with pytest.raises(UsageError, match="max_body_size must be an integer >= 1"):
        DispatchClient(api_key=KEY, base_url=BASE_URL, max_body_size=size)


@pytest.mark.parametrize("attempts", NOT_COUNTS)
def test_a_retry_policy_refuses_attempts_that_are_not_a_count(attempts: Any) -> None:
    with pytest.raises(UsageError, match="attempts must be an integer >= 1"):
        RetryPolicy(attempts=attempts)


@pytest.mark.parametrize(
    "options",
    [
        {"initial_delay": True},
        {"max_delay": "1"},
        {"multiplier": math.inf},
        {"rate_limit_floor": 0},
        {"rate_limit_floor": math.nan},
        {"rate_limit_ceiling": math.inf},
        {"rate_limit_floor": 10, "rate_limit_ceiling": 5},
        {"max_retry_after": 0.5},
        {"max_wait": -1},
        {"max_wait": math.nan},
    ],
)
def test_a_retry_policy_refuses_nonsense_numbers(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        RetryPolicy(**options)


@pytest.mark.parametrize("size", NOT_COUNTS)
def test_a_webhook_receiver_refuses_a_max_body_size_that_is_not_a_count(size: Any) -> None:
    with pytest.raises(UsageError, match="max_body_size must be an integer >= 1"):
        WebhookReceiver(RecordingDeliverer(), secret="s" * 32, max_body_size=size)


@pytest.mark.parametrize(
    "options",
    [
        {"secret": b"bytes"},
        {"header_name": "x-token\r\nx-evil", "header_value": "t"},
        {"header_name": 7, "header_value": "t"},
    ],
)
def test_a_webhook_receiver_refuses_arguments_of_the_wrong_kind(options: dict[str, Any]) -> None:
    options.setdefault("secret", "s" * 32)
    with pytest.raises(UsageError):
        WebhookReceiver(RecordingDeliverer(), **options)


@pytest.mark.parametrize("nbytes", [math.nan, 32.5, True, "32"])
def test_generate_secret_refuses_a_size_that_is_not_a_count(nbytes: Any) -> None:
    with pytest.raises(UsageError, match="integer"):
        generate_secret(nbytes)


@pytest.mark.asyncio_only
@pytest.mark.parametrize("options", [{"max_connections": math.nan}, {"keepalive_expiry": math.inf}])
async def test_the_aiohttp_transport_refuses_nonsense_numbers(options: dict[str, Any]) -> None:
    from async_dispatch._aiohttp_transport import AiohttpTransport

    with pytest.raises(UsageError):
        AiohttpTransport(**options)


@pytest.mark.parametrize(
    "options", [{"interval": 0}, {"interval": math.nan}, {"timeout": math.inf}]
)
async def test_wait_refuses_nonsense_numbers(options: dict[str, Any]) -> None:
    fake = service(reply(200, SUCCESS))
    options.setdefault("timeout", 10)
    async with fake.client() as client:
        with pytest.raises(UsageError):
            await client.wait("req_1", **options)
    assert fake.requests == []


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


# -- 9. Retry-After extremes ----------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, 0.0, -1.0, 0.001, 0.5, math.nan])
def test_a_useless_retry_after_gets_a_floor_that_doubles(hint: float | None) -> None:
    policy = RetryPolicy()
    pauses = [policy.rate_limit_pause(hint, n) for n in range(1, 10)]
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@pytest.mark.parametrize(("hint", "pause"), [(1.0, 1.0), (30.0, 30.0), (999_999.0, 300.0)])
def test_a_usable_retry_after_is_honoured_up_to_a_cap(hint: float, pause: float) -> None:
    assert RetryPolicy().rate_limit_pause(hint, 1) == pause
    assert RetryPolicy().rate_limit_pause(hint, 20) == pause


def test_the_pause_never_overflows() -> None:
    assert RetryPolicy().rate_limit_pause(None, 10**9) == 60
    assert RetryPolicy().rate_limit_pause(math.inf, 1) == 300


@pytest.mark.trio_only
@pytest.mark.virtual_clock
class TestOnVirtualTime:
    """Pauses measured on trio's MockClock: minutes pass in microseconds, exactly."""

    @pytest.mark.parametrize("hint", ["0", "-1", "0.001", "Wed, 21 Oct 2015 07:28:00 GMT"])
    async def test_useless_retry_afters_slow_the_key_down(
        self, hint: str, logs: list[MutableMapping[str, Any]]
    ) -> None:
        times: list[float] = []

        def limited(request: httpx.Request) -> httpx.Response:
            times.append(anyio.current_time())
            return httpx.Response(429, headers={"Retry-After": hint})

        fake = service(limited)
        policy = RetryPolicy(attempts=100, max_wait=3)
        async with fake.client(retry=policy) as client:
            with pytest.raises(RateLimitedError) as caught:
                await client.get_status("req_1")
        assert len(times) <= 3  # 63 before: no pause grew
        assert caught.value.retry_after == 4  # the next pause: 1, 2, then 4 s
        # One warning per pause taken; the 4 s one is the caller's to take (no bucket).
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [(e["seconds"], e["source"]) for e in warnings] == [(1, "client"), (2, "client")]

    async def test_a_huge_retry_after_does_not_block_a_call(self) -> None:
        fake = service(reply(429, headers={"Retry-After": "999999"}), reply(200, SUCCESS))
        bucket = TokenBucket(rate=100, burst=10)
        async with fake.client(retry=RetryPolicy(), timeout=30, bucket=bucket) as client:
            start = anyio.current_time()
            with pytest.raises(RateLimitedError) as caught:
                await client.get_status("req_1")
            assert anyio.current_time() - start < 1
            assert caught.value.retry_after == 300
            assert bucket.paused_for() == pytest.approx(300)
            # While the key is paused, a call that cannot wait that long sends nothing.
            with pytest.raises(RateLimitedError, match="paused"):
                await client.submit("/Operator go")
            assert anyio.current_time() - start < 1
        assert len(fake.requests) == 1

    async def test_a_retry_after_within_the_budget_is_waited(self) -> None:
        fake = service(reply(429, headers={"Retry-After": "20"}), reply(200, SUCCESS))
        async with fake.client(retry=RetryPolicy(max_wait=60)) as client:
            start = anyio.current_time()
            await client.get_status("req_1")
        assert anyio.current_time() - start == pytest.approx(20)

    async def test_wait_sleeps_through_a_pause_longer_than_a_call_may_wait(self) -> None:
        fake = service(reply(429, headers={"Retry-After": "120"}), reply(200, SUCCESS))
        async with fake.client(retry=PAUSING) as client:
            start = anyio.current_time()
            status = await client.wait("req_1", timeout=600)
        assert status.text == SUCCESS["response"]["text"]
        assert anyio.current_time() - start == pytest.approx(120)

    async def test_concurrent_429s_for_the_same_pause_log_one_warning(
        self, logs: list[MutableMapping[str, Any]]
    ) -> None:
        async def slow_429(request: httpx.Request) -> httpx.Response:
            await anyio.sleep(0.1)  # all ten are in flight when the 429s arrive
            return httpx.Response(429, headers={"Retry-After": "5"})

        fake = service(slow_429)  # type: ignore[arg-type]
        bucket = TokenBucket(rate=1000, burst=20)
        async with fake.client(retry=RetryPolicy(attempts=2), bucket=bucket) as client:

            async def call() -> None:
                with contextlib.suppress(RateLimitedError):
                    await client.get_status("req_1")

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(call)
        assert len(fake.requests) == 20
        # The first round of 429s starts one pause; the second round, after it, another.
        assert len([e for e in logs if e["event"] == "rate_limited"]) == 2


# -- issue #14: tracing a submit ------------------------------------------------------------


async def test_tracing_emits_events_for_a_submit(logs: list[MutableMapping[str, Any]]) -> None:
    fake = service(reply(429, headers={"Retry-After": "0"}), reply(202, {"requestId": "req_9"}))
    async with fake.client(retry=RetryPolicy(rate_limit_floor=0.001)) as client:
        assert await client.submit("/Operator go") == "req_9"
    debug = [e for e in logs if e["log_level"] == "debug"]
    # "submitted" is the logging hook's line for `SubmitDone`: one per submit.
    assert [e["event"] for e in debug] == ["retrying", "submitted"]
    assert debug[1]["request_id"] == "req_9"
    assert debug[1]["result"] == "accepted"
    assert KEY not in repr(logs)
