"""The framework-free webhook core: `WebhookReceiver` and `DispatchRuntime`."""

from __future__ import annotations

import contextlib
import hmac
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from _logs import capture_logs
from _webhooks_helpers import RecordingDeliverer, wait_until
from async_dispatch import DeliveryResult, Outcome, OutcomeKind, Poller, UsageError
from async_dispatch.testing import (
    Durations,
    OutcomeMix,
    Simulator,
    SimulatorConfig,
    Webhooks,
    simulator,
)
from async_dispatch.webhooks import (
    DEFAULT_MAX_WEBHOOK_BODY,
    DispatchRuntime,
    WebhookReceiver,
    WebhookResult,
    generate_secret,
)

SECRET = "s3cret-" + "x" * 40
TOKEN = "Bearer tok-" + "y" * 30
CREATED = "2024-12-19T00:00:00.000000+00:00"


def payload(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestId": "req_abc123def456",
        "status": "success",
        "response": {"text": "done"},
        "createdAt": CREATED,
        "completedAt": CREATED,
        "callbackSecret": SECRET,
    }
    body.update(overrides)
    return body


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


def receiver(answer: DeliveryResult = DeliveryResult.ACCEPTED, **kwargs: Any) -> WebhookReceiver:
    kwargs.setdefault("secret", SECRET)
    return WebhookReceiver(RecordingDeliverer(answer), **kwargs)


pytestmark = pytest.mark.virtual_clock  # trio on a MockClock: waits cost no real time


# -- WebhookReceiver -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_accepted_payload_is_delivered_whole() -> None:
    deliverer = RecordingDeliverer()
    result = await WebhookReceiver(deliverer, secret=SECRET).handle(encode(payload()), {})
    assert result == WebhookResult(
        status_code=200,
        reason="accepted",
        request_id="req_abc123def456",
        delivery=DeliveryResult.ACCEPTED,
    )
    assert result.ok
    assert json.loads(result.body_bytes()) == {"ok": True, "reason": "accepted"}
    assert deliverer.payloads == [payload()]


@pytest.mark.parametrize(
    ("answer", "code", "reason"),
    [
        (DeliveryResult.DUPLICATE, 200, "duplicate"),  # at-least-once: never make it resend
        (DeliveryResult.UNKNOWN, 404, "unknown_request"),
    ],
)
@pytest.mark.anyio
async def test_what_the_poller_said_decides_the_code(
    answer: DeliveryResult, code: int, reason: str
) -> None:
    result = await receiver(answer).handle(encode(payload()), {})
    assert (result.status_code, result.reason, result.delivery) == (code, reason, answer)


@pytest.mark.anyio
async def test_body_over_the_limit_is_413_before_parsing() -> None:
    deliverer = RecordingDeliverer()
    recv = WebhookReceiver(deliverer, secret=SECRET, max_body_size=100)
    assert (await recv.handle(b"{" * 101, {})).status_code == 413  # would be a 400 if parsed
    assert (await recv.handle(b" " * 90 + b"[]", {})).status_code == 400  # at the limit: parsed
    assert deliverer.payloads == []


def test_declared_size_is_checked_before_reading() -> None:
    recv = receiver(max_body_size=100)
    assert recv.check_declared_size("101") == WebhookResult(status_code=413, reason="too_large")
    assert recv.check_declared_size("100") is None
    assert recv.check_declared_size(None) is None
    assert recv.check_declared_size("nonsense") is None
    assert recv.too_large().status_code == 413
    assert WebhookReceiver(RecordingDeliverer(), secret=SECRET).max_body_size == (
        DEFAULT_MAX_WEBHOOK_BODY
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_payload"),
        (b'"text"', "bad_payload"),
    ],
)
@pytest.mark.anyio
async def test_bad_bodies_are_400(body: bytes, reason: str) -> None:
    deliverer = RecordingDeliverer()
    result = await WebhookReceiver(deliverer, secret=SECRET, max_body_size=10**6).handle(body, {})
    assert (result.status_code, result.reason) == (400, reason)
    assert deliverer.payloads == []


@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong", SECRET[:-1], SECRET + "x", 12345, ["list"], "\ud800"],
)
@pytest.mark.anyio
async def test_wrong_or_missing_secret_is_401_and_not_delivered(secret: object) -> None:
    deliverer = RecordingDeliverer()
    body = payload(callbackSecret=secret) if secret is not None else payload()
    if secret is None:
        del body["callbackSecret"]
    result = await WebhookReceiver(deliverer, secret=SECRET).handle(encode(body), {})
    assert (result.status_code, result.reason, result.request_id) == (401, "bad_secret", None)
    assert deliverer.payloads == []


@pytest.mark.anyio
async def test_secret_is_compared_in_constant_time_on_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    recv = receiver(header_name="Authorization", header_value=TOKEN)
    assert (await recv.handle(encode(payload()), {"authorization": TOKEN})).status_code == 200
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (SECRET.encode(), SECRET.encode())]
    calls.clear()
    refused = await recv.handle(encode(payload(callbackSecret="nope")), {"authorization": TOKEN})
    assert refused.ok is False
    assert calls[-1] == (b"nope", SECRET.encode())


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN + " "}, {"x-other": TOKEN}],
)
@pytest.mark.anyio
async def test_wrong_or_missing_header_token_is_401(headers: dict[str, str]) -> None:
    deliverer = RecordingDeliverer()
    recv = WebhookReceiver(
        deliverer, secret=SECRET, header_name="Authorization", header_value=TOKEN
    )
    result = await recv.handle(encode(payload()), headers)
    assert (result.status_code, result.reason) == (401, "bad_token")
    assert deliverer.payloads == []


@pytest.mark.anyio
async def test_header_token_alone_is_enough_and_lookup_ignores_case() -> None:
    recv = WebhookReceiver(RecordingDeliverer(), header_name="X-Hook-Token", header_value="t" * 20)
    assert recv.callback_headers == {"x-hook-token": "t" * 20}
    for name in ("x-hook-token", "X-HOOK-TOKEN", "X-Hook-Token"):
        body = encode(payload(callbackSecret=None))
        assert (await recv.handle(body, {name: "t" * 20})).status_code == 200


@pytest.mark.anyio
async def test_token_is_checked_before_the_body_is_parsed() -> None:
    recv = receiver(header_name="authorization", header_value=TOKEN)
    assert (await recv.handle(b"garbage", {})).reason == "bad_token"


@pytest.mark.anyio
async def test_real_poller_answers_404_200_and_400() -> None:
    async with simulator(seed=1) as sim, sim.client() as client, Poller(client) as poller:
        recv = WebhookReceiver(poller, secret=SECRET)
        await poller.track("req_abc123def456")
        assert (await recv.handle(encode(payload(requestId="req_other")), {})).status_code == 404
        assert (await recv.handle(encode(payload(status=None)), {})).status_code == 400
        assert (await recv.handle(encode(payload(requestId=None)), {})).reason == "bad_payload"
        assert (await recv.handle(encode(payload()), {})).reason == "accepted"
        assert (await recv.handle(encode(payload()), {})).reason == "duplicate"
        outcomes = [outcome async for outcome in poller]
        assert [(o.kind, o.polls) for o in outcomes] == [(OutcomeKind.SUCCESS, 0)]
    # Closed poller: the app is shutting down, the service should retry later.
    assert (await recv.handle(encode(payload()), {})).status_code == 503


@pytest.mark.anyio
async def test_receiver_never_raises() -> None:
    class Broken:
        async def deliver(self, payload: Any) -> DeliveryResult:
            raise ZeroDivisionError

    result = await WebhookReceiver(Broken(), secret=SECRET).handle(encode(payload()), {})
    assert (result.status_code, result.reason) == (500, "internal_error")


@pytest.mark.anyio
async def test_each_rejection_logs_one_line_without_secrets() -> None:
    recv = receiver(header_name="authorization", header_value=TOKEN)

    async def too_large() -> WebhookResult:
        return recv.check_declared_size("999999999") or recv.too_large()

    cases: list[tuple[Callable[[], Awaitable[WebhookResult]], str]] = [
        (lambda: recv.handle(encode(payload()), {}), "bad_token"),
        (lambda: recv.handle(b"{bad", {"authorization": TOKEN}), "bad_json"),
        (
            lambda: recv.handle(encode(payload(callbackSecret="guess")), {"authorization": TOKEN}),
            "bad_secret",
        ),
        (too_large, "too_large"),
    ]
    for call, reason in cases:
        with capture_logs() as logs:
            await call()
        # One line, the logging hook's (the default instrumentation), not the core's too.
        assert len(logs) == 1
        assert logs[0]["event"] == "webhook_refused"
        assert logs[0]["log_level"] == "info"
        assert logs[0]["reason"] == reason
        shown = repr(logs)
        for hidden in (SECRET, TOKEN, "guess"):
            assert hidden not in shown
    with capture_logs() as logs:
        assert (await recv.handle(encode(payload()), {"authorization": TOKEN})).ok
    assert logs == []


@pytest.mark.anyio
async def test_configuration_errors() -> None:
    deliverer = RecordingDeliverer()
    with pytest.raises(ValueError, match="secret or a header token"):
        WebhookReceiver(deliverer)
    with pytest.raises(ValueError, match="both"):
        WebhookReceiver(deliverer, secret=SECRET, header_name="authorization")
    with pytest.raises(ValueError, match="non-empty"):
        WebhookReceiver(deliverer, secret="")
    with pytest.raises(ValueError, match="max_body_size"):
        WebhookReceiver(deliverer, secret=SECRET, max_body_size=0)
    open_receiver = WebhookReceiver(deliverer, allow_unauthenticated=True)
    assert (await open_receiver.handle(encode(payload()), {})).ok
    assert SECRET not in repr(receiver())


def test_generate_secret_is_strong_and_fresh() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) >= 43 and s.isascii() and "=" not in s for s in secrets)
    with pytest.raises(ValueError, match="16"):
        generate_secret(8)


# -- DispatchRuntime ------------------------------------------------------------------------


def asgi_to(receiver_of: Callable[[], WebhookReceiver]) -> httpx.AsyncClient:
    """An httpx client whose every POST lands in the receiver, in process."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        result = await receiver_of().handle(body, headers)
        await send({"type": "http.response.start", "status": result.status_code, "headers": []})
        await send({"type": "http.response.body", "body": result.body_bytes()})

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app))


@contextlib.asynccontextmanager
async def quick_simulator(box: list[DispatchRuntime], **webhooks: Any) -> AsyncIterator[Simulator]:
    """A simulator whose webhooks land, in process, in the receiver of ``box[0]``."""
    config = SimulatorConfig(
        seed=5,
        durations=Durations.fixed(0.2),
        outcomes=OutcomeMix.only("success"),
        webhooks=Webhooks(backoff=0.05, **webhooks),
    )
    async with (
        asgi_to(lambda: box[0].receiver) as hooks,
        Simulator(config, webhook_client=hooks) as sim,
    ):
        yield sim


@pytest.mark.anyio
@pytest.mark.parametrize("drop", [0.0, 1.0])
async def test_runtime_resolves_by_webhook_or_safety_poll(drop: float) -> None:
    box: list[DispatchRuntime] = []
    seen: list[Outcome] = []
    async with quick_simulator(box, drop=drop) as sim:
        runtime = DispatchRuntime(
            sim.client(),
            callback_url="http://app.test/hook",
            header_name="authorization",
            header_value=TOKEN,
            on_outcome=seen.append,
            safety_interval=0.5 if drop else 30.0,
        )
        box.append(runtime)
        async with runtime:
            ids = [await runtime.submit(f"task {n}", context=n) for n in range(4)]
            await wait_until(lambda: len(seen) >= 4)
            assert sorted(o.request_id for o in seen) == sorted(ids)
            assert all(o.kind is OutcomeKind.SUCCESS for o in seen)
            assert runtime.outcome(ids[0]) is not None
            assert set(runtime.outcomes) == set(ids)
            stats = runtime.poller.stats
            if drop:
                assert sim.stats.webhooks_dropped == 4
                assert all(o.polls >= 1 for o in seen)
            else:
                assert sim.stats.webhooks_delivered == 4
                assert all(o.polls == 0 for o in seen)
                assert (stats.polls_sent, stats.deliveries) == (0, 4)
        assert not runtime.running
        # The header token travelled with each submit, as callbackHeaders.
        task = sim.app.tasks[ids[0]]
        assert task.callback is not None
        assert dict(task.callback.headers) == {"authorization": TOKEN}


@pytest.mark.anyio
async def test_runtime_survives_a_failing_handler_and_bounds_what_it_keeps() -> None:
    box: list[DispatchRuntime] = []
    calls: list[str] = []

    async def handler(outcome: Outcome) -> None:
        calls.append(outcome.request_id)
        raise RuntimeError("bug in the app")

    async with quick_simulator(box) as sim:
        runtime = DispatchRuntime(
            sim.client(), callback_url="http://app.test/hook", on_outcome=handler, keep=2
        )
        box.append(runtime)
        async with runtime:
            with capture_logs() as logs:
                for n in range(3):
                    await runtime.submit(f"task {n}")
                # Each outcome comes back after a failure: three deliveries, then given up.
                await wait_until(
                    lambda: [e["event"] for e in logs].count("outcome_handler_gave_up") >= 3
                )
            # Three deliveries of each of the three outcomes.
            assert sorted(Counter(calls).values()) == [3, 3, 3]
            assert len(runtime.outcomes) == 2
            latest = list(dict.fromkeys(reversed(calls)))[:2]  # the two delivered last
            assert list(runtime.outcomes) == latest[::-1]
            assert [e["event"] for e in logs].count("outcome_handler_failed") == 9
            with pytest.raises(TypeError):
                runtime.outcomes[calls[0]] = None  # type: ignore[index]
        with pytest.raises(RuntimeError, match="only once"):
            await runtime.__aenter__()


@pytest.mark.anyio
async def test_runtime_without_callback_url_polls() -> None:
    box: list[DispatchRuntime] = []
    async with quick_simulator(box) as sim:
        runtime = DispatchRuntime(sim.client(), callback_url=None, initial_interval=0.1)
        box.append(runtime)
        async with runtime:
            request_id = await runtime.submit("task")
            await wait_until(lambda: runtime.outcome(request_id) is not None)
        assert sim.app.tasks[request_id].callback is None
        assert "polling" in repr(runtime)


@pytest.mark.anyio
async def test_runtime_records_a_refused_key() -> None:
    box: list[DispatchRuntime] = []
    async with quick_simulator(box) as sim:
        runtime = DispatchRuntime(
            sim.client(api_key="wrong-key"), callback_url=None, initial_interval=0.05
        )
        async with runtime:
            await runtime.poller.track("req_abc123def456")
            await wait_until(lambda: runtime.error is not None)
        assert type(runtime.error).__name__ == "AuthenticationError"


# -- what the headers alone decide (adapters ask before reading the body) -----------------


def test_check_headers_refuses_a_missing_or_wrong_token_and_a_declared_excess() -> None:
    hook = receiver(header_name="Authorization", header_value=TOKEN, max_body_size=100)
    assert hook.check_headers({"authorization": TOKEN, "content-length": "100"}) is None
    assert hook.check_headers({"AUTHORIZATION": TOKEN}) is None  # names are case-blind
    for headers in ({}, {"authorization": TOKEN[:-1]}, {"authorization": TOKEN + "x"}):
        refused = hook.check_headers(headers)
        assert refused is not None
        assert (refused.status_code, refused.reason) == (401, "bad_token")
    too_big = hook.check_headers({"authorization": TOKEN, "content-length": "101"})
    assert too_big is not None
    assert (too_big.status_code, too_big.reason) == (413, "too_large")
    # Without a header token configured, only the size is the headers' to decide.
    assert receiver().check_headers({}) is None


def test_slow_and_abandoned_bodies_have_their_own_answers() -> None:
    hook = receiver(body_timeout=2.5)
    assert hook.body_timeout == 2.5
    assert (hook.too_slow().status_code, hook.too_slow().reason) == (408, "too_slow")
    assert hook.disconnected().reason == "disconnected"
    assert receiver().body_timeout == 10.0


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "10"])
def test_body_timeout_must_be_a_positive_number_of_seconds(bad: object) -> None:
    with pytest.raises(UsageError, match="body_timeout"):
        receiver(body_timeout=bad)
