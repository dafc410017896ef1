"""One replica of a fleet sharing a `RedisStore`, as a process (tests/test_fleet_replicas.py).

    python tests/fleet_store_replica.py --base-url URL --redis-url URL --name NAME \\
        --submit 10 --rounds 1 --run-for 20 --lease 2

Submits ``--submit`` tasks per round (0: only serves the fleet), and prints one JSON line
per event, flushed at once so a test that kills it reads everything it did:
``{"submitted": id}``, ``{"outcome": id, "kind": ..., "final": ..., "deliveries": n}``,
``{"error": message}`` (Redis unreachable: the poller stopped; a new one is opened after a
short sleep, in the same process), ``{"ready": true}`` when the poller is open.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import anyio

from async_dispatch import DispatchClient, Poller
from async_dispatch.redis import CoordinationError, RedisStore, RedisTokenBucket


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def coordination_error(exc: BaseException) -> CoordinationError | None:
    if isinstance(exc, CoordinationError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = coordination_error(inner)
        if found is not None:
            return found
    cause = exc.__cause__ or exc.__context__
    return coordination_error(cause) if cause is not None else None


async def one_poller(args: argparse.Namespace, client: DispatchClient, store: RedisStore) -> None:
    async with Poller(
        client, store=store, initial_interval=0.2, max_interval=0.5, deadline=60
    ) as poller:
        say(ready=True)
        for index in range(args.submit):
            say(submitted=await poller.submit(f"/Operator replica task {index}"))
        async for outcome in poller.results(forever=True):
            say(
                outcome=outcome.request_id,
                kind=outcome.kind.value,
                final=outcome.final,
                deliveries=outcome.deliveries,
            )


async def replica(args: argparse.Namespace) -> None:
    bucket = RedisTokenBucket(args.redis_url, name=args.name, rate=200, burst=20, timeout=1.0)
    async with (
        bucket,
        DispatchClient(api_key="sim-key", base_url=args.base_url, bucket=bucket) as client,
    ):
        with anyio.move_on_after(args.run_for):
            while True:
                store = RedisStore(
                    bucket.connection, name=args.name, lease=args.lease, outcome_idle=args.lease
                )
                try:
                    await one_poller(args, client, store)
                except Exception as exc:
                    error = coordination_error(exc)
                    if error is None:
                        raise
                    say(error=str(error), at=time.time())
                    args.submit = args.submit_after_error
                    await anyio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--submit", type=int, default=0)
    parser.add_argument("--submit-after-error", type=int, default=0)
    parser.add_argument("--run-for", type=float, default=20.0)
    parser.add_argument("--lease", type=float, default=2.0)
    args = parser.parse_args()
    anyio.run(replica, args)


if __name__ == "__main__":
    main()
