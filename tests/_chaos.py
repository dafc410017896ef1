"""A tiny fault-injecting Remote Dispatch service, in process, for poller and chaos tests.

Each task's *true* state is a timeline (status steps at virtual times); every status request
first consumes the next entry of a fault schedule (HTTP errors, 429s, dropped connections,
timeouts, broken bodies, unknown statuses...) and only answers truthfully once that entry
is `Fault.NONE` or the schedule is spent. Everything is a pure function of the timeline,
the schedule and the order of requests, so a hypothesis example replays exactly.

The service records every request (time, id, fault), counts requests still running and
those that were cancelled, so tests can check that a poller leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import anyio
import attrs
import httpx

from async_dispatch import DispatchClient, RetryPolicy

__all__ = [
    "BASE_URL",
    "KEY",
    "ChaosService",
    "Fault",
    "Step",
    "Timeline",
    "client_for",
    "fault_names",
    "status_payload",
]

BASE_URL: Final = "http://127.0.0.1:9/fast/v2"
KEY: Final = "sk-chaos-SECRET-0123456789"
_PREFIX: Final = "/fast/v2/remote-dispatch/responses/"
_EPOCH: Final = datetime(2024, 12, 19, tzinfo=timezone.utc)


class Fault(enum.Enum):
    """One way a single status request can go wrong."""

    NONE = "none"
    HTTP_500 = "500"
    HTTP_502_HTML = "502-html"
    HTTP_503 = "503"
    HTTP_504 = "504"
    HTTP_408 = "408"
    RATE_LIMITED = "429"
    RATE_LIMITED_AFTER = "429-retry-after"
    RATE_LIMITED_DATE = "429-retry-after-date"
    RESET = "reset"
    PROTOCOL = "protocol"
    TIMEOUT = "timeout"
    SLOW_TIMEOUT = "slow-timeout"
    TRUNCATED = "truncated"
    HTML_200 = "html-200"
    EMPTY_200 = "empty-200"
    UNKNOWN_STATUS = "unknown-status"
    ODD_STATUS = "418"


@attrs.frozen
class Step:
    """From virtual time `at` on, the task reads as `status` (with `text` and metadata)."""

    at: float
    status: str
    text: str | None = None
    hitl: Mapping[str, Any] | None = None


@attrs.frozen
class Timeline:
    """The true life of one task: steps in time order; the first one is at 0."""

    steps: tuple[Step, ...]

    @classmethod
    def finishing(cls, at: float, status: str = "success") -> Timeline:
        return cls((Step(0.0, "pending"), Step(at, status, text=f"{status} text")))

    @classmethod
    def never(cls) -> Timeline:
        return cls((Step(0.0, "pending"),))

    def state_at(self, now: float) -> Step:
        current = self.steps[0]
        for step in self.steps:
            if step.at <= now:
                current = step
        return current

    @property
    def final(self) -> Step | None:
        """The terminal step, if the task ever finishes."""
        last = self.steps[-1]
        return last if last.status in ("success", "error") else None


def status_payload(request_id: str, step: Step, *, origin: float = 0.0) -> dict[str, Any]:
    """The documented JSON for a task in `step` (plus `requestId`, as webhooks carry)."""
    finished = step.status in ("success", "error")
    return {
        "requestId": request_id,
        "status": step.status,
        "response": None if step.status == "pending" else {"text": step.text or ""},
        "createdAt": _EPOCH.isoformat(timespec="microseconds"),
        "completedAt": (
            (_EPOCH + timedelta(seconds=origin + step.at)).isoformat(timespec="microseconds")
            if finished
            else None
        ),
        "hitlInputMetadata": dict(step.hitl) if step.hitl is not None else None,
        "someFutureField": [1, 2, 3],
    }


@attrs.define
class Request:
    """One status request as the service saw it."""

    at: float
    request_id: str
    fault: Fault
    answered: str = ""


class ChaosService:
    """Answers status requests from timelines, misbehaving as the fault schedule says.

    Args:
        timelines: Each tracked id's true life, in seconds since `start()` (virtual time).
        faults: Consumed one per request, in arrival order; then every answer is honest.
        retry_after: Seconds sent with `Fault.RATE_LIMITED_AFTER`.
        slow: Seconds a `SLOW_TIMEOUT` request hangs before failing.
        hang: Make every request hang until cancelled (for cancellation tests).
        key: The API key the service accepts; anything else gets 401.
        leaky: Echo the caller's API key in every error body and connection error, as a
            careless proxy might, to check the client never passes it on.
    """

    def __init__(
        self,
        timelines: Mapping[str, Timeline],
        faults: Iterable[Fault] = (),
        *,
        retry_after: float = 2.0,
        slow: float = 3.0,
        hang: bool = False,
        key: str = KEY,
        leaky: bool = False,
    ) -> None:
        self.timelines = dict(timelines)
        self.faults: deque[Fault] = deque(faults)
        self.retry_after = retry_after
        self.slow = slow
        self.hang = hang
        self.key = key
        self.leaky = leaky
        self.origin = 0.0
        self.log: list[Request] = []
        self.active = 0
        self.cancelled = 0
        self.injected = 0
        self.forced: dict[str, int] = {}

    def start(self) -> None:
        """Make now virtual time 0 of every timeline."""
        self.origin = anyio.current_time()

    def now(self) -> float:
        return anyio.current_time() - self.origin

    def truth(self, request_id: str) -> Step:
        return self.timelines[request_id].state_at(self.now())

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.active += 1
        try:
            return await self._answer(request)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        request_id = path[len(_PREFIX) :] if path.startswith(_PREFIX) else path
        fault = self.faults.popleft() if self.faults else Fault.NONE
        entry = Request(self.now(), request_id, fault)
        self.log.append(entry)
        if self.hang:
            await anyio.sleep_forever()
        if request.headers.get("x-api-key") != self.key:
            entry.answered = "401"
            said = f"bad key {self._key_of(request)}" if self.leaky else "bad key"
            return httpx.Response(401, json={"detail": said})
        if forced := self.forced.get(request_id):
            entry.answered = str(forced)
            return httpx.Response(forced, json={"error": "forced"})
        if fault is not Fault.NONE:
            self.injected += 1
            try:
                response = await self._misbehave(fault, request)
            except httpx.TransportError as exc:
                if self.leaky:
                    raise type(exc)(f"{exc} (key {self._key_of(request)})") from None
                raise
            if self.leaky and response.status_code >= 400:
                leak = f"<p>denied for x-api-key: {self._key_of(request)}</p>"
                return httpx.Response(response.status_code, text=leak, headers=response.headers)
            return response
        timeline = self.timelines.get(request_id)
        if timeline is None:
            entry.answered = "404"
            return httpx.Response(404, json={"detail": "Not Found"})
        step = timeline.state_at(self.now())
        entry.answered = step.status
        body = status_payload(request_id, step, origin=self.origin)
        del body["requestId"]
        return httpx.Response(200, json=body)

    @staticmethod
    def _key_of(request: httpx.Request) -> str:
        return str(request.headers.get("x-api-key", ""))

    async def _misbehave(self, fault: Fault, request: httpx.Request) -> httpx.Response:
        html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        pending = status_payload("x", Step(0.0, "pending"))
        del pending["requestId"]
        if fault is Fault.HTTP_500:
            return httpx.Response(500, json={"error": "internal"})
        if fault is Fault.HTTP_502_HTML:
            return httpx.Response(502, content=html, headers={"content-type": "text/html"})
        if fault is Fault.HTTP_503:
            return httpx.Response(503, text="Service Unavailable")
        if fault is Fault.HTTP_504:
            return httpx.Response(504, content=b"")
        if fault is Fault.HTTP_408:
            return httpx.Response(408, json={"detail": "timeout"})
        if fault is Fault.RATE_LIMITED:
            return httpx.Response(429, json={"detail": "slow down"})
        if fault is Fault.RATE_LIMITED_AFTER:
            return httpx.Response(
                429, json={"detail": "slow down"}, headers={"retry-after": f"{self.retry_after:g}"}
            )
        if fault is Fault.RATE_LIMITED_DATE:
            return httpx.Response(
                429, headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, text="slow"
            )
        if fault is Fault.RESET:
            raise httpx.ReadError("connection reset by peer", request=request)
        if fault is Fault.PROTOCOL:
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        if fault is Fault.TIMEOUT:
            raise httpx.ReadTimeout("timed out", request=request)
        if fault is Fault.SLOW_TIMEOUT:
            await anyio.sleep(self.slow)
            raise httpx.ReadTimeout("timed out", request=request)
        if fault is Fault.TRUNCATED:
            return httpx.Response(200, content=json.dumps(pending).encode()[:25])
        if fault is Fault.HTML_200:
            return httpx.Response(200, content=html, headers={"content-type": "text/html"})
        if fault is Fault.EMPTY_200:
            return httpx.Response(200, content=b"")
        if fault is Fault.UNKNOWN_STATUS:
            return httpx.Response(200, json={**pending, "status": "paused-for-maintenance"})
        assert fault is Fault.ODD_STATUS
        return httpx.Response(418, text="I'm a teapot")

    def requests_for(self, request_id: str) -> list[Request]:
        return [r for r in self.log if r.request_id == request_id]


@contextlib.asynccontextmanager
async def client_for(
    service: ChaosService | httpx.AsyncBaseTransport, *, key: str = KEY, **kwargs: Any
) -> AsyncIterator[DispatchClient]:
    """An open `DispatchClient` whose HTTP goes to `service` in process."""
    transport = service.transport() if isinstance(service, ChaosService) else service
    kwargs.setdefault("retry", RetryPolicy(attempts=1))
    kwargs.setdefault("execution_mode", "cloud")  # a submit the service accepts
    async with (
        httpx.AsyncClient(transport=transport) as http,
        DispatchClient(api_key=key, base_url=BASE_URL, http_client=http, **kwargs) as client,
    ):
        yield client


def fault_names(faults: Sequence[Fault]) -> dict[str, int]:
    """How many of each fault a schedule holds, for reports."""
    counts: dict[str, int] = {}
    for fault in faults:
        counts[fault.value] = counts.get(fault.value, 0) + 1
    return counts
