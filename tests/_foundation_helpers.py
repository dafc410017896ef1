"""A scripted stand-in for the Remote Dispatch service, for the foundation's tests.

`FakeService` answers each request with the next scripted answer (the last one repeats)
and records every request it saw, so a test can say both what the client returned and
how many times it knocked. It plugs into `httpx.MockTransport`: no sockets, no sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Final

import attrs
import httpx

from async_dispatch import DispatchClient, RetryPolicy

#: A distinctive key: any test output containing it is a leak.
KEY: Final = "sk-SECRET-123"
BASE_URL: Final = "http://127.0.0.1:9"
#: Three tries, no waiting at all (429 pauses included): retries are counted, not timed.
INSTANT: Final = RetryPolicy.instant(attempts=3)
#: Three tries, no backoff, 429 pauses as in production: for virtual-time tests that
#: measure those pauses.
PAUSING: Final = RetryPolicy(attempts=3, initial_delay=0, max_delay=0)
NO_RETRY: Final = RetryPolicy(attempts=1, initial_delay=0, max_delay=0)

CREATED: Final = "2024-12-19T00:00:00.000000+00:00"
PENDING: Final[dict[str, Any]] = {
    "status": "pending",
    "response": None,
    "createdAt": CREATED,
    "completedAt": None,
}
SUCCESS: Final[dict[str, Any]] = {
    "status": "success",
    "response": {"text": "Found 42 software engineering jobs."},
    "createdAt": CREATED,
    "completedAt": "2024-12-19T00:01:10.000000+00:00",
}
ERROR: Final[dict[str, Any]] = {
    "status": "error",
    "response": {"text": "Failed to complete the task due to network timeout."},
    "createdAt": CREATED,
    "completedAt": "2024-12-19T00:02:30.000000+00:00",
}
INPUT_REQUIRED: Final[dict[str, Any]] = {
    "status": "input-required",
    "response": {"text": "The task requires authentication. Please log in to continue."},
    "createdAt": CREATED,
    "completedAt": None,
}

Answer = Callable[[httpx.Request], httpx.Response]


def reply(
    status_code: int = 200,
    body: object = None,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An answer: `body` is sent as JSON, or `content` as raw bytes."""

    def answer(request: httpx.Request) -> httpx.Response:
        raw = content if content is not None else json.dumps(body).encode()
        return httpx.Response(status_code, content=raw, headers=headers, request=request)

    return answer


def fail(error: type[httpx.TransportError], message: str = "simulated") -> Answer:
    """An answer that is no answer: the transport raises `error`."""

    def answer(request: httpx.Request) -> httpx.Response:
        raise error(message, request=request)

    return answer


def stream(chunks: Iterator[bytes], *, headers: Mapping[str, str] | None = None) -> Answer:
    """A 200 whose body arrives chunk by chunk from `chunks` (which may never end)."""

    class Body(httpx.AsyncByteStream):
        # An iterator object, not an async generator: abandoning it mid-body is harmless.
        def __aiter__(self) -> AsyncIterator[bytes]:
            return self

        async def __anext__(self) -> bytes:
            for chunk in chunks:
                return chunk
            raise StopAsyncIteration

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(), headers=headers, request=request)

    return answer


@attrs.define
class FakeService:
    """Answers requests from a script, in order; the last answer repeats forever."""

    answers: list[Answer]
    requests: list[httpx.Request] = attrs.field(factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.answers)) - 1
        return self.answers[index](request)

    def client(self, **kwargs: Any) -> DispatchClient:
        """A `DispatchClient` wired to this fake; keyword arguments override the defaults."""
        options: dict[str, Any] = {
            "api_key": KEY,
            "base_url": BASE_URL,
            "http_client": httpx.AsyncClient(transport=httpx.MockTransport(self)),
            "retry": INSTANT,
            "execution_mode": "cloud",  # a submit the service accepts
        }
        options.update(kwargs)
        return DispatchClient(**options)

    def json_bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


def service(*answers: Answer) -> FakeService:
    return FakeService(list(answers))


def texts_of(exc: BaseException) -> list[str]:
    """Everything an exception can show a person: str, repr, args and public attributes."""
    shown = [str(exc), repr(exc), *map(repr, exc.args)]
    shown += [repr(value) for name, value in vars(exc).items() if not name.startswith("__")]
    return shown
