"""What a fleet writes to Redis, and what it never does (issue #20 item 17).

Redis is inside a fleet's trust boundary: whoever can write to the fleet's keys can forge
an outcome (an XADD to the stream is delivered like any other), and contexts and the
service's answers are stored in clear. What a fleet never writes there is tested here: the
API key (only an HMAC fingerprint of it), the callback secret, header tokens, every other
secret-bearing submit option, and the prompt (a submit intent keeps its SHA-256 only).
Every key under the fleet's prefix is read back after a real run through a poller.
"""

from __future__ import annotations

import hashlib

import anyio
import attrs
import pytest

from async_dispatch import Poller
from async_dispatch.redis import RedisConnection, RedisStore, RedisTokenBucket
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations
from test_secrets import OPTION_SECRETS, SECRET_OPTIONS

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PROMPT = "/Operator pay the invoice PROMPT-LEAK-10 with the card on file"


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


async def everything_stored(connection: RedisConnection, name: str) -> dict[bytes, bytes]:
    """Every key of fleet `name`, with everything in it as one blob."""
    client = connection.client
    stored: dict[bytes, bytes] = {}
    cursor = 0
    while True:
        cursor, keys = await client.scan(cursor=cursor, match=RedisConnection.key(name, "*"))
        for key in keys:
            parts: list[bytes] = [key]
            raw_kind = await client.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            if kind == "hash":
                for field, item in (await client.hgetall(key)).items():
                    parts += [field, item]
            elif kind == "zset":
                parts += list(await client.zrange(key, 0, -1))
            elif kind == "stream":
                for entry in await client.xrange(key):
                    for name_, value in entry.field_values.items():
                        parts += [_bytes(name_), _bytes(value)]
            elif kind == "string":
                parts.append(await client.get(key) or b"")
            else:
                raise AssertionError(f"a fleet key of an unexpected type: {key!r} {kind}")
            stored[key] = b"\n".join(parts)
        if cursor == 0:
            return stored


@pytest.mark.parametrize("fleet_secret", [None, "FLEET-SECRET-LEAK-0123456789"])
async def test_no_secret_and_no_prompt_reaches_redis(
    redis_url: str, redis_name: str, fleet_secret: str | None
) -> None:
    connection = RedisConnection(redis_url)
    bucket = RedisTokenBucket(connection, name=redis_name, rate=50, burst=5)
    # A fleet secret signs what is written (its MACs are kept), never itself.
    store = RedisStore(connection, name=redis_name, lease=2.0, secret=fleet_secret)
    # Webhooks to a loopback port nobody listens on: the secrets travel with each submit.
    options = attrs.evolve(SECRET_OPTIONS, callback_url="http://127.0.0.1:9/hook")
    async with simulator(seed=4, durations=Durations.fixed(0.2)) as sim:  # noqa: SIM117
        async with connection, sim.client(bucket=bucket) as client:
            api_key = sim.config.default_key
            async with Poller(client, store=store, initial_interval=0.1) as poller:
                for i in range(3):
                    await poller.submit(PROMPT, options, context={"n": i})
                # A submit on the wire that never got its answer keeps what is needed:
                ticket = await store.begin_submit()
                await store.submit_sending(ticket, {"n": 9}, PROMPT)
                stored_mid_run = await everything_stored(connection, redis_name)
                await store.end_submit(ticket, None)
                with anyio.fail_after(20):
                    async for _ in poller:
                        pass
            after = await everything_stored(connection, redis_name)
    intents = stored_mid_run[RedisConnection.key(redis_name, "intent_sent").encode()]
    assert hashlib.sha256(PROMPT.encode()).hexdigest().encode() in intents
    # The prompt is not written by the fleet; the service's answers are, in clear (tasks'
    # statuses, outcomes), and the simulator's answer text quotes the prompt.
    answers = (b":tasks", b":outcomes")  # the task records, the outcome stream
    stored = b"\n".join([*stored_mid_run.values(), *after.values()])
    for secret in OPTION_SECRETS.values():
        assert secret.encode() not in stored, secret
    for key, blob in (*stored_mid_run.items(), *after.items()):
        if any(key.endswith(part) for part in answers):
            blob = blob.replace(b"PROMPT-LEAK-10", b"")  # quoted by the service's answer
        # Not even a fragment of a secret (each one holds LEAK), nor the prompt elsewhere.
        assert b"LEAK" not in blob, (key, blob[max(0, blob.find(b"LEAK") - 200) :][:300])
    assert api_key.encode() not in stored  # only its fingerprint (an HMAC) is kept
