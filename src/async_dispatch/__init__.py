"""Track thousands of Remote Dispatch tasks concurrently on one event loop.

The public surface is re-exported here; the modules behind it are private.

    async with DispatchClient() as client:
        async with Poller(client, rate=10) as poller:
            for prompt in prompts:
                await poller.submit(prompt, deadline=300)
            async for outcome in poller:
                print(outcome.request_id, outcome.kind)
"""

from ._client import DEFAULT_BASE_URL, DispatchClient
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceeded,
    DispatchError,
    InvalidRequestIdError,
    InvalidResponseError,
    NotFoundError,
    NotOpenError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UsageError,
)
from ._limiter import Limiter, TokenBucket
from ._models import Status, TaskStatus, Usage
from ._outcome import Outcome, OutcomeKind
from ._poller import DeliveryResult, Poller
from ._retry import RetryPolicy, parse_retry_after
from ._stats import PollerStats
from ._version import __version__
from ._wire import parse_status_body, parse_status_payload

__all__ = [
    "DEFAULT_BASE_URL",
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "DeadlineExceeded",
    "DeliveryResult",
    "DispatchClient",
    "DispatchError",
    "InvalidRequestIdError",
    "InvalidResponseError",
    "Limiter",
    "NotFoundError",
    "NotOpenError",
    "Outcome",
    "OutcomeKind",
    "PermissionDeniedError",
    "Poller",
    "PollerStats",
    "RateLimitedError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "Status",
    "SubmitUncertainError",
    "TaskStatus",
    "TokenBucket",
    "TransportError",
    "Usage",
    "UsageError",
    "__version__",
    "parse_retry_after",
    "parse_status_body",
    "parse_status_payload",
]
