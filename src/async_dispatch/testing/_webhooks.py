"""Webhook delivery: one scheduler over a heap of due deliveries, a few workers to send.

A task with a ``callbackUrl`` adds a heap entry per status change it will report (its
finish, and its input requests if asked), timed when the task is created: no sleeping
coroutine per task. The scheduler sleeps on the library's `Alarm` until the earliest entry
is due (woken early when an earlier one arrives) and hands due deliveries to a small pool
of workers, so one slow receiver does not hold up the rest. Delivery is at least once and
may fail, like the real service: retried with doubling backoff, and on purpose sometimes
dropped or sent twice.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random

import anyio
import httpx
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .._alarm import Alarm
from ._config import Webhooks
from ._stats import SimulatorStats
from ._tasks import Task

__all__ = ["WebhookDispatcher"]

_USER_AGENT = "async-dispatch-simulator"


class _Delivery:
    """One webhook to send: which task, the moment it reports, and how it went so far."""

    __slots__ = ("attempt", "event_time", "task", "variant")

    def __init__(self, task: Task, event_time: float, variant: str = "") -> None:
        self.task = task
        self.event_time = event_time
        self.attempt = 0
        self.variant = variant
        """"" for an original delivery, "send" once it was judged, "duplicate" for a copy."""


class WebhookDispatcher:
    """Schedules and sends the webhooks of a simulator run."""

    __slots__ = (
        "_alarm",
        "_client",
        "_config",
        "_heap",
        "_idle_waiters",
        "_in_flight",
        "_owns_client",
        "_rng",
        "_seq",
        "_stats",
    )

    def __init__(
        self,
        config: Webhooks,
        rng: random.Random,
        stats: SimulatorStats,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = config
        self._rng = rng
        self._stats = stats
        self._client = client
        self._owns_client = client is None
        self._heap: list[tuple[float, int, _Delivery]] = []
        self._seq = itertools.count()
        #: The scheduler's: woken when a delivery earlier than the one it waits for arrives.
        self._alarm = Alarm()
        self._in_flight = 0
        self._idle_waiters: list[anyio.Event] = []

    @property
    def pending(self) -> int:
        """Deliveries scheduled or being sent (retries to come included)."""
        return len(self._heap) + self._in_flight

    def schedule_task(self, task: Task) -> None:
        """Plan the webhooks of a newly created task, if it asked for any."""
        if task.callback is None:
            return
        for t in task.events(include_input=self._config.notify_input_required):
            self._push(t, _Delivery(task, t))

    async def wait_idle(self) -> None:
        """Return once nothing is scheduled or in flight (retries included)."""
        while self.pending:
            event = anyio.Event()
            self._idle_waiters.append(event)
            await event.wait()

    async def run(self) -> None:
        """Deliver webhooks until cancelled; the simulator's task group runs this."""
        send, receive = anyio.create_memory_object_stream[_Delivery](self._config.concurrency)
        try:
            async with send, receive, anyio.create_task_group() as tg:
                for _ in range(self._config.concurrency):
                    tg.start_soon(self._work, receive)
                await self._schedule(send)
        finally:
            if self._owns_client and self._client is not None:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()
                self._client = None

    def _push(self, due: float, delivery: _Delivery) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), delivery))
        self._alarm.wake_by(due)

    def _done(self) -> None:
        self._in_flight -= 1
        if not self.pending:
            for event in self._idle_waiters:
                event.set()
            self._idle_waiters.clear()

    async def _schedule(self, send: ObjectSendStream[_Delivery]) -> None:
        while True:
            now = anyio.current_time()
            while self._heap and self._heap[0][0] <= now:
                delivery = heapq.heappop(self._heap)[2]
                self._in_flight += 1
                if not self._judge(delivery, now):
                    self._done()
                    continue
                await send.send(delivery)
            await self._alarm.sleep_until(self._heap[0][0] if self._heap else math.inf)

    def _judge(self, delivery: _Delivery, now: float) -> bool:
        """Decide drop and duplicate for a first attempt, here in heap order so a seeded
        run makes the same decisions every time. False: do not send it."""
        if delivery.variant:
            return True
        delivery.variant = "send"
        dropped = self._rng.random() < self._config.drop
        duplicated = self._rng.random() < self._config.duplicate
        if dropped:
            self._stats.webhooks_dropped += 1
            return False
        if duplicated:
            self._stats.webhooks_duplicated += 1
            self._push(now, _Delivery(delivery.task, delivery.event_time, "duplicate"))
        return True

    async def _work(self, receive: ObjectReceiveStream[_Delivery]) -> None:
        async for delivery in receive:
            try:
                await self._attempt(delivery)
            finally:
                self._done()

    async def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        self._stats.webhooks_sent += 1
        if await self._post(delivery):
            self._stats.webhooks_delivered += 1
            return
        self._stats.webhooks_failed += 1
        if delivery.attempt >= self._config.max_attempts:
            self._stats.webhooks_abandoned += 1
            return
        delay = self._config.backoff * 2 ** (delivery.attempt - 1)
        self._push(anyio.current_time() + delay, delivery)

    async def _post(self, delivery: _Delivery) -> bool:
        task = delivery.task
        callback = task.callback
        assert callback is not None
        payload = task.body_at(delivery.event_time)
        payload["requestId"] = task.request_id
        payload["callbackSecret"] = callback.secret
        headers = {"content-type": "application/json", "user-agent": _USER_AGENT}
        headers.update(callback.headers)
        if self._client is None:
            self._client = httpx.AsyncClient()
        try:
            response = await self._client.post(
                callback.url,
                content=json.dumps(payload).encode(),
                headers=headers,
                timeout=self._config.timeout,
            )
        except Exception:  # whatever breaks is the receiver's problem: retry it
            return False
        return 200 <= response.status_code < 300
