"""Arguments that would switch a limit off (NaN, infinity, a bool for a count): refused
where they are given, before any request (first staged in #11)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from _foundation_helpers import (
    BASE_URL,
    KEY,
    SUCCESS,
    reply,
    service,
)
from _webhooks_helpers import RecordingDeliverer
from async_dispatch import (
    DispatchClient,
    RetryPolicy,
    UsageError,
)
from async_dispatch.webhooks import WebhookReceiver, generate_secret

pytestmark = pytest.mark.anyio

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
