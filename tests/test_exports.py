"""The public names, pinned: each package's ``__all__`` is part of the product.

As httpx's and anyio's exported-members tests do, this fails when a name is added to or
dropped from a public ``__all__`` without the list here changing with it, so no name
becomes public (or stops being) by accident. It also checks that every exported name can
be imported and says what it is: a docstring for a class or a function, a ``#:`` comment
(or a docstring under the assignment) for a constant or a type alias.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import typing
from pathlib import Path
from types import ModuleType

import pytest

import async_dispatch

EXPORTS: dict[str, list[str]] = {
    "async_dispatch": [
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
        "TrackedTask",
        "TransportError",
        "UploadError",
        "Usage",
        "UsageError",
        "Via",
        "__version__",
        "file_variable",
        "make_outcome",
    ],
    "async_dispatch.testing": [
        "DEFAULT_BASE_PATH",
        "INPUT_KINDS",
        "Durations",
        "Faults",
        "InputKind",
        "OutcomeMix",
        "RateLimit",
        "RunningSimulator",
        "Simulator",
        "SimulatorConfig",
        "SimulatorStats",
        "Upload",
        "Webhooks",
        "bind_socket",
        "run_forever",
        "serve",
        "serve_asgi",
        "simulator",
    ],
    "async_dispatch.webhooks": [
        "DEFAULT_BODY_TIMEOUT",
        "DEFAULT_MAX_WEBHOOK_BODY",
        "Deliverer",
        "DispatchRuntime",
        "OutcomeHandler",
        "WebhookReceiver",
        "WebhookResult",
        "generate_secret",
    ],
    "async_dispatch.fastapi": [
        "DEFAULT_WEBHOOK_PATH",
        "PollerDep",
        "RuntimeDep",
        "dispatch_lifespan",
        "get_poller",
        "get_runtime",
        "open_runtime",
        "webhook_router",
    ],
    "async_dispatch.aiohttp": [
        "DEFAULT_WEBHOOK_PATH",
        "RUNTIME_KEY",
        "dispatch_context",
        "get_poller",
        "get_runtime",
        "setup_dispatch",
        "webhook_handler",
    ],
    "async_dispatch.redis": [
        "CoordinationError",
        "FleetIntegrityError",
        "FleetStateLost",
        "FleetView",
        "RedisConnection",
        "RedisStore",
        "RedisTokenBucket",
        "read_fleet",
    ],
    "async_dispatch.instrumentation": [
        "CHECK_RESULTS",
        "OTHER",
        "RATE_LIMIT_SOURCES",
        "RESOLVED_VIA",
        "SPAN_CHECK",
        "SPAN_DELIVER",
        "SPAN_SUBMIT",
        "SPAN_TASK",
        "SPAN_TRACK",
        "SUBMIT_RESULTS",
        "WEBHOOK_REASONS",
        "CheckDone",
        "CheckResult",
        "Event",
        "Hook",
        "Instrumentation",
        "LoggingHook",
        "RateLimitPaused",
        "RateLimitSource",
        "ResolvedVia",
        "SpanKind",
        "SubmitDone",
        "SubmitResult",
        "TaskForgotten",
        "TaskResolved",
        "TaskRetrying",
        "TaskTracingHook",
        "TaskTracked",
        "TokenWaited",
        "TraceContext",
        "TracingHook",
        "WebhookAnswered",
        "WebhookReason",
    ],
    "async_dispatch.sqlite": [
        "SQLiteStore",
    ],
}

PACKAGE = Path(async_dispatch.__file__).parent


def documented_assignments() -> set[str]:
    """Module-level names of the package assigned with a ``#:`` comment just above, or
    a string literal just below (the two ways Sphinx and readers find a value's doc)."""
    documented: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        body = ast.parse(source).body
        for index, node in enumerate(body):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            elif isinstance(node, ast.AnnAssign):
                target = node.target
            else:
                continue
            if not isinstance(target, ast.Name):
                continue
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            following = body[index + 1] if index + 1 < len(body) else None
            below = (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            )
            if above.startswith("#:") or below:
                documented.add(target.id)
    return documented


def modules() -> list[str]:
    return list(EXPORTS)


#: The third-party package each optional subpackage needs (its extra).
NEEDS = {
    "async_dispatch.fastapi": "fastapi",
    "async_dispatch.aiohttp": "aiohttp",
    "async_dispatch.redis": "coredis",
}


def public(module_name: str) -> ModuleType:
    if module_name in NEEDS:
        pytest.importorskip(NEEDS[module_name])
    return importlib.import_module(module_name)


@pytest.mark.parametrize("module_name", modules())
def test_all_is_pinned(module_name: str) -> None:
    module = public(module_name)

    assert list(module.__all__) == EXPORTS[module_name]


@pytest.mark.parametrize("module_name", modules())
def test_every_exported_name_is_importable_and_documented(module_name: str) -> None:
    module = public(module_name)
    documented = documented_assignments()

    undocumented = []
    for name in module.__all__:
        value = getattr(module, name)  # an AttributeError here: exported but missing
        if name.startswith("__"):
            continue
        # A generic alias (`Callable[...]`) is a type alias, documented by its comment;
        # Python 3.10 still says `isinstance(list[int], type)`.
        alias = typing.get_origin(value) is not None
        if (inspect.isclass(value) and not alias) or inspect.isfunction(value):
            if not (value.__doc__ or "").strip():
                undocumented.append(name)
        elif name not in documented:
            undocumented.append(name)
    assert undocumented == []


def test_the_version_is_a_string() -> None:
    assert isinstance(async_dispatch.__version__, str)
    assert async_dispatch.__version__
