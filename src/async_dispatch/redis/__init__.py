"""Fleet mode: several processes sharing one API key coordinate through Redis.

Needs the ``redis`` extra (``pip install 'async-remote-dispatch[redis]'``), which brings
coredis (https://coredis.readthedocs.io): an anyio-based client, so fleet mode works
under asyncio and trio alike.

    from async_dispatch import DispatchClient, Poller
    from async_dispatch.redis import RedisTokenBucket

    bucket = RedisTokenBucket("redis://127.0.0.1:6379", name="prod-key", rate=10, burst=5)
    async with bucket, DispatchClient(bucket=bucket) as client:
        async with Poller(client) as poller:
            ...

Enter the bucket first, around the client (`RedisTokenBucket` says why). Every replica
configured with the same ``name`` shares one rate limit and one 429 pause.
Several fleet objects of one process can share one connection: pass a `RedisConnection`
instead of a URL. `read_fleet()` reads what a fleet is doing (``async-dispatch fleet``).
"""

from __future__ import annotations

from ._connection import RedisConnection
from ._errors import CoordinationError, FleetIntegrityError, FleetStateLost
from ._fleet_view import FleetView, read_fleet
from ._task_store import RedisStore
from ._token_bucket import RedisTokenBucket

__all__ = [
    "CoordinationError",
    "FleetIntegrityError",
    "FleetStateLost",
    "FleetView",
    "RedisConnection",
    "RedisStore",
    "RedisTokenBucket",
    "read_fleet",
]
