"""`RedisStore.add_many` builds its records in Python (redis/_msgpack.py) where `add` has
store_add.lua build them with `cmsgpack.pack`: whatever a task holds, the two must leave
the same record (every field, as the scripts read it back) and the same scores in every
set, or a task tracked in bulk would be checked, promoted or ended unlike one tracked
alone."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from async_dispatch._resubmit import TaskSpec
from async_dispatch._store import TrackedTask
from async_dispatch.redis import RedisStore
from async_dispatch.redis._connection import RedisConnection
from async_dispatch.redis._task_store import _text

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

LEAD = 2.0

#: Every field of a record, sorted, numbers with every digit; then the task's score in
#: each set ('' where it is in none).
_READ = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {}
end
local fields = {}
for key, value in pairs(cmsgpack.unpack(raw)) do
  if type(value) == 'number' then
    value = string.format('%.17g', value)
  end
  fields[#fields + 1] = key .. '=' .. type(value) .. ':' .. value
end
table.sort(fields)
for i = 2, 4 do
  fields[#fields + 1] = 'score=' .. (redis.call('ZSCORE', KEYS[i], ARGV[1]) or '')
end
return fields
"""

TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
SPEC = TaskSpec(
    prompt="/Operator again",
    options={"time_zone": "UTC", "response_format": {"type": "jsonSchema", "jsonSchema": {}}},
    output="tests.models:Invoice",
    attempts=("req_first",),
)


def _variants() -> list[dict[str, Any]]:
    """Tasks that take each form the encoder has: contexts and ids short and long (str
    heads of 1, 2, 3 and 5 bytes), non-ASCII text, a trace context, a spec, both, and
    each kind of first check (none, routine, last)."""
    contexts: list[Any] = [None, [], {"i": 1}, "x" * 40, "y" * 300, "z" * 70_000, "caf\u00e9"]
    out: list[dict[str, Any]] = [
        {"suffix": f"ctx{i}", "context": context} for i, context in enumerate(contexts)
    ]
    out += [
        {"suffix": "caf\u00e9 \u2603"},
        {"suffix": "long-" + "i" * 300},
        {"suffix": "trace", "trace": TRACE},
        {"suffix": "spec", "spec": SPEC},
        {"suffix": "both", "trace": TRACE, "spec": SPEC, "context": {"user": 7}},
        {"suffix": "hook", "due": math.inf},
        {"suffix": "routine", "due": 0.5},
        {"suffix": "at-last-check", "due": 60.0 - LEAD},
        {"suffix": "last", "due": 59.0},
    ]
    return out


def _task(rid: str, now: float, variant: dict[str, Any]) -> TrackedTask:
    task = TrackedTask(rid, started=now, deadline=now + 60.0, context=variant.get("context"))
    task.due = now + variant.get("due", 0.0)
    task.trace = variant.get("trace")
    task.spec = variant.get("spec")
    return task


@pytest.mark.parametrize("secret", [None, "add-many-fleet-secret-0123456789"])
async def test_add_many_writes_the_records_and_scores_add_writes(
    redis_url: str, redis_name: str, secret: str | None
) -> None:
    """With a fleet secret, the records carry their MAC too (``m``), and pass its check."""
    store = RedisStore(redis_url, name=redis_name, secret=secret)
    received: list[Any] = []
    async with store.attach(
        lambda *args: received.append(args), anyio.current_time, lambda: None,
        last_check_lead=LEAD,
    ):  # fmt: skip
        now = anyio.current_time()
        variants = _variants()
        for variant in variants:
            assert await store.add(_task("one-" + variant["suffix"], now, variant))
        bulk = [_task("many-" + variant["suffix"], now, variant) for variant in variants]
        assert await store.add_many(bulk) == bulk
        keys = [RedisConnection.key(redis_name, k) for k in ("tasks", "due", "last", "deadlines")]
        client = store.connection.client

        async def read(rid: str) -> list[str]:
            reply = await client.eval(_READ, keys=keys, args=[rid])
            assert isinstance(reply, list)
            return [_text(field) for field in reply]

        def unsigned(fields: list[str]) -> list[str]:
            return [field for field in fields if not field.startswith("m=")]

        for variant in variants:
            one = await read("one-" + variant["suffix"])
            assert one, variant["suffix"]
            many = await read("many-" + variant["suffix"])
            # The MAC covers the id, so it differs: `get` below checks each one.
            for fields in (one, many):
                assert any(field.startswith("m=") for field in fields) == (secret is not None)
            assert unsigned(many) == unsigned(one), variant["suffix"]
        for task in bulk:
            got = await store.get(task.request_id)
            assert got is not None, task.request_id
            assert got.context == task.context
