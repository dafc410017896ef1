"""One replica of a fleet sharing a `RedisStore`, as a process (tests/test_fleet_replicas.py).

    python tests/fleet_store_replica.py --base-url URL --redis-url URL --name NAME \\
        --submit 10 --rounds 1 --run-for 20 --lease 2 [--outcome-idle 1 --handle-delay 0.2]

Submits ``--submit`` tasks per round (0: only serves the fleet), and prints one JSON line
per event, flushed at once so a test that kills it reads everything it did:
``{"submitted": id}``, ``{"outcome": id, "kind": ..., "final": ..., "deliveries": n}``,
``{"error": message}`` (a submit met an unreachable Redis before it was sent, and is
tried again), ``{"submitted": id, "tracked_late": true}`` (sent, and tracked once Redis
answers),
``{"log": "coordination_unavailable" | "coordination_recovered", ...}`` (the poller riding
out an outage: one poller for the whole run), ``{"ready": true}`` when the poller is open.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import anyio

from async_dispatch import DispatchClient, Poller, SubmitNotTrackedError
from async_dispatch.redis import CoordinationError, RedisStore, RedisTokenBucket


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


class EventLines(logging.Handler):
    """Print the library's coordination events as JSON lines, and note a recovery."""

    def __init__(self, state: dict[str, bool]) -> None:
        super().__init__(logging.WARNING)
        self.state = state

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", "")
        if event.startswith("coordination_"):
            say(log=event, error=getattr(record, "error", None), at=time.time())
        if event == "coordination_recovered":
            self.state["recovered"] = True


async def submit(poller: Poller, count: int) -> None:
    """Submit `count` tasks, trying again while Redis is unreachable."""
    while count:
        try:
            say(submitted=await poller.submit("/Operator replica task"))
            count -= 1
        except SubmitNotTrackedError as exc:
            # Accepted by the service: submitting again would run it twice. The poller
            # tracks it once Redis answers.
            say(submitted=exc.request_id, tracked_late=True)
            count -= 1
        except CoordinationError as exc:
            say(error=str(exc), at=time.time())
            await anyio.sleep(0.5)


async def replica(args: argparse.Namespace) -> None:
    state = {"recovered": False}
    logging.getLogger("async_dispatch").addHandler(EventLines(state))
    bucket = RedisTokenBucket(args.redis_url, name=args.name, rate=200, burst=20, timeout=1.0)
    outcome_idle = args.outcome_idle or args.lease
    store = RedisStore(
        bucket.connection, name=args.name, lease=args.lease, outcome_idle=outcome_idle
    )
    async with (
        bucket,
        DispatchClient(
            api_key="sim-key", base_url=args.base_url, bucket=bucket, execution_mode="cloud"
        ) as client,
        Poller(client, store=store, initial_interval=0.2, max_interval=0.5, deadline=60) as poller,
        anyio.create_task_group() as tasks,
    ):
        say(ready=True, consumer=store.consumer)

        async def consume() -> None:
            async for outcome in poller.results(forever=True):
                say(
                    outcome=outcome.request_id,
                    kind=outcome.kind.value,
                    final=outcome.final,
                    deliveries=outcome.deliveries,
                )
                if args.handle_delay:
                    await anyio.sleep(args.handle_delay)  # a slow application

        tasks.start_soon(consume)
        with anyio.move_on_after(args.run_for):
            await submit(poller, args.submit)
            if args.submit_after_error:
                # One poller throughout: after Redis comes back, the same one goes on.
                while not state["recovered"]:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
                await submit(poller, args.submit_after_error)
            await anyio.sleep_forever()
        tasks.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--submit", type=int, default=0)
    parser.add_argument("--submit-after-error", type=int, default=0)
    parser.add_argument("--run-for", type=float, default=20.0)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--outcome-idle", type=float, default=0.0)  # 0: the lease
    parser.add_argument("--handle-delay", type=float, default=0.0)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    anyio.run(replica, args, backend=args.backend)


if __name__ == "__main__":
    main()
