"""Track thousands of Remote Dispatch tasks concurrently on one event loop.

The public surface is re-exported here; the modules behind it are private.

    async with DispatchClient() as client:
        async with Poller(client, rate=10) as poller:
            for prompt in prompts:
                await poller.submit(prompt, deadline=300)
            async for outcome in poller:
                print(outcome.request_id, outcome.kind)

Without async (a script, a notebook): the same poller, blocking::

    with SyncPoller(rate=10) as poller:
        for prompt in prompts:
            poller.submit(prompt, deadline=300)
        for outcome in poller:
            print(outcome.request_id, outcome.kind)
"""

from ._blocking import Interrupted, PollerOptions, SyncPoller
from ._cadence import Cadence
from ._client import DEFAULT_BASE_URL, DispatchClient
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    CoordinationError,
    DeadlineExceeded,
    DispatchError,
    EndpointError,
    InvalidRequestIdError,
    InvalidResponseError,
    LifecycleError,
    NotFoundError,
    NotOpenError,
    OutputValidationError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SubmitNotTrackedError,
    SubmitUncertainError,
    TransportError,
    UploadError,
    UsageError,
)
from ._limiter import Limiter, TokenBucket
from ._models import InputKind, InputRequest, InputVariable, Status, TaskStatus, Usage
from ._options import ReasoningMode, SubmitFields, SubmitOptions
from ._outcome import SCHEMA_OUTPUT, Outcome, OutcomeKind, TimeoutCause, Via
from ._poller import DeliveryResult, Poller, PollerUnavailable
from ._resubmit import ResubmitPolicy, TaskSpec
from ._retry import RetryPolicy
from ._stats import PollerStats
from ._store import (
    CheckEnd,
    MemoryStore,
    OutcomeSink,
    RedeliveringStore,
    StoreCapabilities,
    SubmitSendingStore,
    TaskStore,
    TokenClaimingStore,
    TrackedTask,
    make_outcome,
)
from ._uploads import file_variable
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "SCHEMA_OUTPUT",
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "Cadence",
    "CheckEnd",
    "CoordinationError",
    "DeadlineExceeded",
    "DeliveryResult",
    "DispatchClient",
    "DispatchError",
    "EndpointError",
    "InputKind",
    "InputRequest",
    "InputVariable",
    "Interrupted",
    "InvalidRequestIdError",
    "InvalidResponseError",
    "LifecycleError",
    "Limiter",
    "MemoryStore",
    "NotFoundError",
    "NotOpenError",
    "Outcome",
    "OutcomeKind",
    "OutcomeSink",
    "OutputValidationError",
    "PermissionDeniedError",
    "Poller",
    "PollerOptions",
    "PollerStats",
    "PollerUnavailable",
    "RateLimitedError",
    "ReasoningMode",
    "RedeliveringStore",
    "RequestTimeoutError",
    "ResubmitPolicy",
    "RetryPolicy",
    "ServerError",
    "Status",
    "StoreCapabilities",
    "SubmitFields",
    "SubmitNotTrackedError",
    "SubmitOptions",
    "SubmitSendingStore",
    "SubmitUncertainError",
    "SyncPoller",
    "TaskSpec",
    "TaskStatus",
    "TaskStore",
    "TimeoutCause",
    "TokenBucket",
    "TokenClaimingStore",
    "TrackedTask",
    "TransportError",
    "UploadError",
    "Usage",
    "UsageError",
    "Via",
    "__version__",
    "file_variable",
    "make_outcome",
]
