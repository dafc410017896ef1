"""Fleet mode on Redis as it is really deployed: the server's clock, ACL users, URLs with
passwords, and errors that say what happened (issue 20).

Tests that change server settings (ACL users, TLS) start a private redis-server of their own.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import pytest

from _logs import capture_logs
from async_dispatch import Poller, UsageError
from async_dispatch._outcome import Outcome, OutcomeKind
from async_dispatch._store import TrackedTask, make_outcome
from async_dispatch.redis import (
    CoordinationError,
    FleetStateLost,
    RedisConnection,
    RedisStore,
    RedisTokenBucket,
    read_fleet,
)
from async_dispatch.redis._connection import FLEET_ACL as FLEET_RULES
from async_dispatch.testing import RateLimit, simulator
from async_dispatch.testing._config import Durations, OutcomeMix
from redis_support import RedisServer, free_port, make_certificates, redis_command, unique_name

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

#: The ACL the README's fleet section documents: every right a fleet needs, and no more.
FLEET_ACL: tuple[str, ...] = tuple(FLEET_RULES.split())


def test_the_readme_documents_the_acl_that_is_tested() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    assert f"resetchannels {FLEET_RULES}" in readme


def raw_server_time(url: str) -> float:
    """TIME's reply over a plain socket, parsed here: the reference for the store's clock."""
    reply = redis_command(url, "TIME")
    assert isinstance(reply, list)
    seconds, micros = (int(part) for part in reply)
    return seconds + micros / 1e6


# -- the clock --------------------------------------------------------------------------


async def test_the_offset_to_the_server_clock_matches_the_raw_time_reply(
    redis_url: str, redis_name: str
) -> None:
    """coredis 6.9 parses TIME's microseconds as milliseconds; the store must not care.

    With that bug the offset is short by the server's sub-second fraction: five
    measurements all within 50 ms of the truth would then need five fractions below 0.05 s.
    """
    store = RedisStore(redis_url, name=redis_name)
    async with store.connection:
        for _ in range(5):
            await store._measure_offset()
            before = anyio.current_time()
            server = raw_server_time(redis_url)
            after = anyio.current_time()
            expected = server - (before + after) / 2
            assert abs(store._offset - expected) < 0.05, (store._offset, expected)
            await anyio.sleep(0.13)  # another sub-second fraction next time


async def test_checks_are_not_held_back_by_the_clock(redis_url: str, redis_name: str) -> None:
    """100 tasks at rate 100, each done after 3 s: all SUCCESS well before their 10 s
    deadline, with the poller's default check intervals.

    With the clock short by up to a second (coredis's TIME parsing), every "due now" looked
    up to 1 s ahead and deadlines fell early: 70 of these 100 timed out.
    """
    seen: list[Outcome] = []
    kwargs: dict[str, Any] = {"rate": 100}
    store = RedisStore(redis_url, name=redis_name, lease=5.0)
    mix = OutcomeMix.only("success")
    async with simulator(seed=5, durations=Durations.fixed(3.0), outcomes=mix) as sim:  # noqa: SIM117
        async with sim.client() as client, Poller(client, store=store, **kwargs) as poller:
            ids = [await poller.submit(f"task {i}", deadline=10) for i in range(100)]
            with anyio.fail_after(30):
                async for outcome in poller:
                    seen.append(outcome)
    kinds = Counter(o.kind for o in seen if o.final)
    assert kinds == {OutcomeKind.SUCCESS: 100}, kinds
    assert sorted(o.request_id for o in seen if o.final) == sorted(ids)


# -- ACL users -----------------------------------------------------------------------------


def acl_user(server: RedisServer, user: str, password: str, *rules: str) -> str:
    """Create `user` on `server` with exactly `rules`; the URL that logs in as it."""
    reply = redis_command(server.url, "ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    assert reply == "OK"
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


async def test_a_fleet_runs_with_the_documented_acl_through_a_429(
    private_redis: RedisServer,
) -> None:
    """A user with only the README's rights (no pub/sub, no admin commands) runs a poller
    over RedisStore and RedisTokenBucket through a 429 (a fleet-wide pause) to SUCCESS."""
    url = acl_user(private_redis, "fleet", "s3cret-pw", *FLEET_ACL)
    name = unique_name("acl")
    seen: list[Outcome] = []
    connection = RedisConnection(url)
    bucket = RedisTokenBucket(connection, name=name, rate=50, burst=5)
    store = RedisStore(connection, name=name, lease=5.0)
    limit = RateLimit(rate=1, burst=1)
    async with simulator(seed=2, durations=Durations.fixed(0.5), rate_limit=limit) as sim:
        async with (
            bucket,
            sim.client(bucket=bucket) as client,
            Poller(client, store=store, initial_interval=0.3) as poller,
        ):
            ids = [await poller.submit(f"task {i}", deadline=30) for i in range(3)]
            with anyio.fail_after(25):
                async for outcome in poller:
                    seen.append(outcome)
            view = await read_fleet(connection, name)  # `async-dispatch fleet` too
            assert view.as_dict()["tasks"]
        assert sim.stats.rate_limited >= 1  # the pause script ran, under this ACL
    assert sorted(o.request_id for o in seen if o.final) == sorted(ids)
    assert {o.kind for o in seen if o.final} == {OutcomeKind.SUCCESS}


# -- passwords in URLs -------------------------------------------------------------------

PASSWORD = "pa/ss#wo?rd@x%y:z"


def password_forms(password: str) -> list[str]:
    return [password, quote(password, safe=""), quote_plus(password)]


@pytest.mark.parametrize(
    "url",
    [
        "redis://u:{raw}@127.0.0.1:6379/0",
        "redis://:{raw}@127.0.0.1:6379",
        "rediss://u:{raw}@redis.example:6380/1",
        "redis://u:{raw}@127.0.0.1",
    ],
)
def test_a_raw_reserved_character_in_a_password_is_a_usage_error(url: str) -> None:
    """'/', '#', '?' or '@' written raw end the host part early: refused, never shown."""
    with pytest.raises(UsageError) as caught:
        RedisConnection(url.format(raw=PASSWORD))
    message = str(caught.value)
    assert "percent-encode" in message
    for secret in ("pa/ss", "wo?rd", "x%y", "ss#wo"):
        assert secret not in message, message


def test_every_form_of_password_is_masked_in_repr_and_url() -> None:
    encoded = quote(PASSWORD, safe="")
    for url in (
        f"redis://user:{encoded}@127.0.0.1:6379/0",
        f"redis://127.0.0.1:6379/0?password={encoded}",
        f"redis://127.0.0.1:6379/0?db=0&sentinel_password={encoded}&password={encoded}",
        f"rediss://:{encoded}@127.0.0.1:6379/0?ssl_ca_certs=/tmp/ca.pem",
    ):
        connection = RedisConnection(url)
        shown = [
            connection.url,
            repr(connection),
            repr(RedisStore(connection, name="f")),
            repr(RedisTokenBucket(connection, name="f", rate=1)),
        ]
        for text in shown:
            for form in password_forms(PASSWORD):
                assert form not in text, text
            assert "***" in text
    assert RedisConnection("redis://u:%2Fp@h:1/0?ssl_ca_certs=/x").url == (
        "redis://u:***@h:1/0?ssl_ca_certs=/x"
    )


async def test_percent_encoded_passwords_log_in_and_wrong_ones_are_not_shown(
    private_redis: RedisServer,
) -> None:
    """Userinfo is percent-decoded; ``?password=`` works too; no error shows a password."""
    acl_user(private_redis, "fleet", PASSWORD, *FLEET_ACL)
    encoded = quote(PASSWORD, safe="")
    host = f"127.0.0.1:{private_redis.port}"
    for url in (
        f"redis://fleet:{encoded}@{host}/0",
        f"redis://{host}/0?username=fleet&password={encoded}",
    ):
        async with RedisConnection(url) as connection:
            assert abs(await connection.server_time() - time.time()) < 5
    wrong = "wr/ong#pass?word"
    for url in (
        f"redis://fleet:{quote(wrong, safe='')}@{host}/0",
        f"redis://{host}/0?username=fleet&password={quote(wrong, safe='')}",
    ):
        with pytest.raises(CoordinationError) as caught:
            async with RedisConnection(url) as connection:
                await connection.server_time()
        message = str(caught.value)
        assert "***" in message
        for form in password_forms(wrong) + password_forms(PASSWORD):
            assert form not in message, message


@pytest.mark.parametrize(
    "query", ["db=abc", "ssl_cert_reqs=bogus", "ssl_ca_certs=/nonexistent/ca.pem"]
)
async def test_a_query_argument_coredis_cannot_use_is_a_usage_error(query: str) -> None:
    connection = RedisConnection(f"rediss://u:{quote(PASSWORD, safe='')}@127.0.0.1:1/0?{query}")
    with pytest.raises(UsageError, match="cannot use the Redis URL") as caught:
        async with connection:
            pass
    for form in password_forms(PASSWORD):
        assert form not in str(caught.value)


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def tls_redis() -> Iterator[tuple[RedisServer, int, dict[str, Path]]]:
    """A private redis-server with a TLS port that asks clients for a certificate."""
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        pytest.skip("TLS tests need redis-server and openssl")
    tls_port = free_port()
    with tempfile.TemporaryDirectory(prefix="async-dispatch-tls-") as directory:
        files = make_certificates(Path(directory))
        args = ["--tls-port", str(tls_port), "--tls-cert-file", str(files["server_cert"])]
        args += ["--tls-key-file", str(files["server_key"])]
        args += ["--tls-ca-cert-file", str(files["ca"]), "--tls-auth-clients", "yes"]
        with RedisServer(extra_args=args) as server:
            yield server, tls_port, files


async def test_tls_with_a_ca_and_a_client_certificate(
    tls_redis: tuple[RedisServer, int, dict[str, Path]],
) -> None:
    """rediss:// with ssl_ca_certs and ssl_certfile/ssl_keyfile, as the README says."""
    _, port, files = tls_redis
    base = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={files['ca']}"
    url = f"{base}&ssl_certfile={files['client_cert']}&ssl_keyfile={files['client_key']}"
    async with RedisConnection(url) as connection:
        assert abs(await connection.server_time() - time.time()) < 5
        name = unique_name("tls")
        bucket = RedisTokenBucket(connection, name=name, rate=100)
        await bucket.acquire()


async def test_tls_errors_say_what_is_wrong(
    tls_redis: tuple[RedisServer, int, dict[str, Path]],
) -> None:
    """An untrusted certificate is not "check that Redis is running"."""
    _, port, files = tls_redis
    client = f"ssl_certfile={files['client_cert']}&ssl_keyfile={files['client_key']}"
    with pytest.raises(CoordinationError) as untrusted:
        async with RedisConnection(f"rediss://127.0.0.1:{port}/0?{client}") as connection:
            await connection.server_time()
    assert "does not trust" in str(untrusted.value), untrusted.value
    assert "ssl_ca_certs" in str(untrusted.value)
    with pytest.raises(CoordinationError) as no_client_cert:
        async with RedisConnection(
            f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={files['ca']}"
        ) as connection:
            await connection.server_time()
    # TLS 1.3: the server drops the connection after the handshake, so only a hint helps.
    assert "client certificate" in str(no_client_cert.value), no_client_cert.value


# -- errors that say what happened -----------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        ("~async_dispatch:*", "+@read", "+@write", "+evalsha", "+time"),  # no EVAL
        ("~other:*", "+@read", "+@write", "+eval", "+evalsha", "+time"),  # not the keys
        ("~async_dispatch:*", "+@read", "+@write", "+eval", "+evalsha"),  # TIME in scripts
    ],
)
async def test_a_missing_acl_right_is_not_reported_as_a_failed_login(
    private_redis: RedisServer, rules: tuple[str, ...]
) -> None:
    url = acl_user(private_redis, "narrow", "pw", *rules)
    bucket = RedisTokenBucket(url, name=unique_name("acl"), rate=100)
    with pytest.raises(CoordinationError) as caught:
        async with bucket:
            await bucket.acquire()
    message = str(caught.value)
    assert "denied this user a command" in message, message
    assert "+eval +evalsha +time" in message  # what to grant
    assert "refused the login" not in message


async def test_a_wrong_password_is_reported_as_a_failed_login(private_redis: RedisServer) -> None:
    acl_user(private_redis, "fleet", "right", *FLEET_ACL)
    with pytest.raises(CoordinationError, match=r"refused the login.*user name and password"):
        async with RedisConnection(f"redis://fleet:wrong@127.0.0.1:{private_redis.port}/0") as c:
            await c.server_time()


# -- one API key per fleet name ----------------------------------------------------------------


async def test_a_second_api_key_cannot_use_a_fleet_name(redis_url: str, redis_name: str) -> None:
    """Tenant B on tenant A's fleet name is refused, clearly, and A's tasks are untouched."""
    keys = frozenset({"key-of-a", "key-of-b"})
    never = OutcomeMix.only("never")
    async with simulator(seed=4, api_keys=keys, outcomes=never) as sim:
        store_a = RedisStore(redis_url, name=redis_name, lease=5.0)
        async with (
            sim.client(api_key="key-of-a") as client_a,
            Poller(client_a, store=store_a) as poller_a,
        ):
            ids = [await poller_a.submit(f"task {i}", deadline=60) for i in range(5)]
            store_b = RedisStore(redis_url, name=redis_name, lease=5.0)
            bucket_b = RedisTokenBucket(redis_url, name=redis_name, rate=10)
            async with (
                sim.client(api_key="key-of-b") as client_b,
                sim.client(api_key="key-of-b", bucket=bucket_b) as client_b_fleet,
            ):
                for poller in (Poller(client_b, store=store_b), Poller(client_b_fleet)):
                    with pytest.raises(UsageError) as caught:
                        async with bucket_b, poller:
                            pass
                    message = str(caught.value)
                    assert f"fleet {redis_name!r}" in message
                    assert "another API key" in message
                    assert "pick another name" in message
                    for secret in ("key-of-a", "key-of-b"):
                        assert secret not in message
            async with store_a.connection:
                for request_id in ids:
                    task = await store_a.get(request_id)
                    assert task is not None
                    assert task.last_error is None
            assert len(poller_a.store) == 5
            assert redis_command(redis_url, "GET", f"async_dispatch:{{{redis_name}}}:key") == (
                client_a.key_fingerprint.encode()
            )
        # The same key again (another replica of tenant A) is welcome.
        async with (
            sim.client(api_key="key-of-a") as again,
            Poller(again, store=RedisStore(redis_url, name=redis_name)) as poller,
        ):
            assert len(poller.store) == 5


def test_the_key_fingerprint_tells_keys_apart_and_reveals_nothing() -> None:
    from async_dispatch import DispatchClient

    a = DispatchClient(api_key="secret-key-a").key_fingerprint
    assert a == DispatchClient(api_key="secret-key-a").key_fingerprint
    assert a != DispatchClient(api_key="secret-key-b").key_fingerprint
    assert len(a) == 16
    assert "secret" not in a


@pytest.mark.parametrize("name", ["", "a{b", "b}", "a\nb", "tab\there", "x" * 201, 7, None])
def test_the_store_and_the_bucket_refuse_the_same_fleet_names(name: object) -> None:
    with pytest.raises(UsageError, match="name must"):
        RedisStore("redis://127.0.0.1:6379", name=name)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="name must"):
        RedisTokenBucket("redis://127.0.0.1:6379", name=name, rate=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["team-key-1", "é", "x" * 200, "a:b c"])
def test_the_store_and_the_bucket_accept_the_same_fleet_names(name: str) -> None:
    assert RedisStore("redis://127.0.0.1:6379", name=name).name == name
    assert RedisTokenBucket("redis://127.0.0.1:6379", name=name, rate=1).name == name


# -- Redis loses the fleet's state -----------------------------------------------------------


async def drain(poller: Poller) -> None:
    async for outcome in poller:
        raise AssertionError(f"no outcome was due: {outcome}")


@pytest.mark.parametrize("loss", ["flushdb", "restart"])
async def test_lost_fleet_state_raises_from_the_iterator(
    private_redis: RedisServer, loss: str
) -> None:
    """A Redis restarted without persistence, or FLUSHDB: the iterator raises, never ends
    as if every task had finished (it did: 20 of 20 tasks vanished silently)."""
    name = unique_name("lost")
    store = RedisStore(private_redis.url, name=name, lease=2.0)
    never = OutcomeMix.only("never")
    async with (
        simulator(seed=6, outcomes=never) as sim,
        sim.client() as client,
        Poller(client, store=store, initial_interval=0.2) as poller,
    ):
        for i in range(5):
            await poller.submit(f"task {i}", deadline=60)
        assert len(store) == 5
        if loss == "flushdb":
            assert redis_command(private_redis.url, "FLUSHDB") == "OK"
        else:
            private_redis.stop()
            private_redis.start()
        with pytest.raises(FleetStateLost, match="lost the state of fleet"), anyio.fail_after(20):
            await drain(poller)


async def test_a_new_replica_starts_a_new_epoch_after_a_loss(
    private_redis: RedisServer,
) -> None:
    """Once the state is gone, a replica attaching afresh works under a new epoch."""
    name = unique_name("epoch")
    async with RedisStore(private_redis.url, name=name).attach(
        lambda *_: None, anyio.current_time, lambda: None, last_check_lead=1.0
    ):
        pass
    key = f"async_dispatch:{{{name}}}:epoch"
    first = redis_command(private_redis.url, "GET", key)
    assert isinstance(first, bytes)
    assert redis_command(private_redis.url, "FLUSHDB") == "OK"
    store = RedisStore(private_redis.url, name=name)
    async with store.attach(lambda *_: None, anyio.current_time, lambda: None, last_check_lead=1.0):
        assert await store.idle()
        assert redis_command(private_redis.url, "GET", key) not in (None, first)


@pytest.mark.parametrize(
    ("policy", "warned"), [("allkeys-lru", True), ("volatile-ttl", True), ("noeviction", False)]
)
async def test_a_server_that_may_evict_fleet_keys_is_warned_about(
    private_redis: RedisServer, policy: str, warned: bool
) -> None:
    redis_command(private_redis.url, "CONFIG", "SET", "maxmemory", "64mb")
    redis_command(private_redis.url, "CONFIG", "SET", "maxmemory-policy", policy)
    store = RedisStore(private_redis.url, name=unique_name("evict"))
    with capture_logs() as logs:
        async with store.attach(
            lambda *_: None, anyio.current_time, lambda: None, last_check_lead=1.0
        ):
            pass
    warnings = [e for e in logs if e.get("event") == "redis_may_evict"]
    assert [e["policy"] for e in warnings] == ([policy] if warned else [])


async def test_an_acl_user_without_config_rights_is_told_nothing_is_known(
    private_redis: RedisServer,
) -> None:
    url = acl_user(private_redis, "fleet", "pw", *FLEET_ACL)
    store = RedisStore(url, name=unique_name("evict"))
    with capture_logs() as logs:
        async with store.attach(
            lambda *_: None, anyio.current_time, lambda: None, last_check_lead=1.0
        ):
            pass
    assert [e["event"] for e in logs if "eviction" in e.get("event", "")] == [
        "redis_eviction_policy_unknown"
    ]


# -- eviction of finished markers ------------------------------------------------------------


async def test_finished_ids_survive_volatile_eviction() -> None:
    """Under a `volatile-*` policy another application's keys with a TTL evict keys with a
    TTL: finished markers with one let every re-tracked id get a second final outcome
    (20 of 20). They are one zset without a TTL now: 0 of 20."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    args = ["--maxmemory", "8mb", "--maxmemory-policy", "volatile-lru"]
    with RedisServer(extra_args=args) as server:
        store = RedisStore(server.url, name=unique_name("evict"), finished_ttl=3600)
        async with attached_nowhere(store):
            for i in range(20):
                await finish_one(store, f"req_{i}")
            filler = "for i = 1, 50 do redis.call('SET', ARGV[1] .. i, string.rep('x', 10000), "
            filler += "'EX', 3600) end return 1"
            for batch in range(80):  # 40 MB through an 8 MB server: evictions galore
                redis_command(server.url, "EVAL", filler, "0", f"filler:{batch}:")
            info = redis_command(server.url, "INFO", "stats")
            assert isinstance(info, bytes)
            assert b"evicted_keys:0\r" not in info  # the server did evict
            readded = [i for i in range(20) if await store.add(new_task(f"req_{i}"))]
            assert readded == []
            assert all([await store.finished(f"req_{i}") for i in range(20)])


@contextlib.asynccontextmanager
async def attached_nowhere(store: RedisStore) -> AsyncIterator[None]:
    async with store.attach(lambda *_: None, anyio.current_time, lambda: None, last_check_lead=1.0):
        yield


def new_task(request_id: str) -> TrackedTask:
    now = anyio.current_time()
    return TrackedTask(request_id, started=now, deadline=now + 60, context=None)


async def finish_one(store: RedisStore, request_id: str) -> None:
    task = new_task(request_id)
    assert await store.add(task)
    assert await store.resolve(task, make_outcome(task, OutcomeKind.SUCCESS, 0.0), fenced=False)
