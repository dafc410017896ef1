"""Fleet mode on a Redis Cluster (issue 20, item 12): a private 3-master cluster per module.

A plain client on a node that does not own the fleet's slot got a bare MOVED; after a
slot migration the fleet stalled for good. These tests run the fleet through a URL to a
node that does NOT own the slot, and move the slot to another master while tasks are in
flight (twice: the second target has never run a script, so EVALSHA meets NOSCRIPT there).

Needs ``redis-server`` and ``redis-cli``: where they are installed the tests always run
(a skip would hide a broken cluster path); where they are not, they skip, or fail under
``ASYNC_DISPATCH_REQUIRE_REDIS=1`` as CI sets it.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator

import anyio
import pytest

from async_dispatch import Poller
from async_dispatch._cli import ExitCode, run
from async_dispatch._outcome import Outcome, OutcomeKind
from async_dispatch.redis import CoordinationError, RedisConnection, RedisStore, RedisTokenBucket
from async_dispatch.redis._connection import CLUSTER_ACL, FLEET_ACL
from async_dispatch.redis._fleet_view import fleet_names, read_fleet
from async_dispatch.testing import simulator
from async_dispatch.testing._config import Durations, OutcomeMix
from redis_support import REQUIRE_ENV, RedisClusterServers, RedisServer, redis_command, unique_name

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    """Three masters, no replicas, on free loopback ports; stopped by PID afterwards."""
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if missing:
        reason = f"cluster tests need {' and '.join(missing)}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1 forbids skipping)")
        pytest.skip(reason)
    with RedisClusterServers(masters=3) as servers:
        yield servers


def url_of(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}"


def others(cluster: RedisClusterServers, *not_these: RedisServer) -> list[RedisServer]:
    return [s for s in cluster.servers if all(s is not n for n in not_these)]


def errors(server: RedisServer, kind: str) -> int:
    """How many error replies of `kind` (ASK, MOVED, NOSCRIPT...) `server` has given."""
    info = redis_command(url_of(server), "INFO", "errorstats")
    assert isinstance(info, bytes)
    found = re.search(rb"errorstat_%s:count=(\d+)" % kind.encode(), info)
    return int(found.group(1)) if found else 0


def redirects(cluster: RedisClusterServers) -> int:
    """How many ASK, TRYAGAIN and MOVED replies the cluster's nodes have given so far."""
    return sum(errors(s, kind) for s in cluster.servers for kind in ("ASK", "TRYAGAIN", "MOVED"))


def fleet_slot(cluster: RedisClusterServers, name: str) -> int:
    return cluster.slot_of(RedisConnection.key(name, "tasks"))


@pytest.mark.parametrize(
    "secret", [None, "cluster-fleet-secret-0123456789"], ids=["unsigned", "signed"]
)
async def test_a_url_to_a_node_without_the_fleets_slot_runs_the_fleet(
    cluster: RedisClusterServers, secret: str | None
) -> None:
    """The URL names a master that does not own the slot: the connection finds it is a
    cluster, and the store and bucket are served by the owner (20 of 20 SUCCESS), signed
    with a fleet secret or not; the fleet's view, read through the same node, says which."""
    name = unique_name("cl")
    owner = cluster.owner(fleet_slot(cluster, name))
    connection = RedisConnection(url_of(others(cluster, owner)[0]))
    bucket = RedisTokenBucket(connection, name=name, rate=100, burst=10)
    store = RedisStore(connection, name=name, lease=3.0, secret=secret)
    seen: list[Outcome] = []
    mix = OutcomeMix.only("success")
    async with simulator(seed=12, durations=Durations.fixed(0.5), outcomes=mix) as sim:  # noqa: SIM117
        async with (
            bucket,
            sim.client(bucket=bucket) as client,
            Poller(client, store=store, initial_interval=0.2) as poller,
        ):
            assert connection.cluster
            ids = [await poller.submit(f"task {i}", deadline=30) for i in range(20)]
            with anyio.fail_after(30):
                async for outcome in poller:
                    seen.append(outcome)
            view = await read_fleet(connection, name)
    assert sorted(o.request_id for o in seen if o.final) == sorted(ids)
    assert {o.kind for o in seen} == {OutcomeKind.SUCCESS}
    assert (view.found, view.tracked, view.signed) == (True, 0, secret is not None)
    # Every key of the fleet is on the owner, in the fleet's one slot.
    keys = redis_command(
        url_of(owner), "CLUSTER", "COUNTKEYSINSLOT", str(fleet_slot(cluster, name))
    )
    assert isinstance(keys, int)
    assert keys > 0


async def test_a_resharding_of_the_fleets_slot_mid_run_loses_and_repeats_nothing(
    cluster: RedisClusterServers,
) -> None:
    """Two replicas on different nodes; the fleet's slot moves to another master, one key
    at a time with pauses (commands meet it half moved: ASK, TRYAGAIN), then to the third
    master, while 60 tasks are tracked, checked and resolved: each has exactly one final
    outcome, SUCCESS, and the fleet's keys end up on the last owner."""
    redirects_before = redirects(cluster)
    name = unique_name("reshard")
    slot = fleet_slot(cluster, name)
    first = cluster.owner(slot)
    second, third = others(cluster, first)
    connections = [RedisConnection(url_of(first)), RedisConnection(url_of(second))]
    stores = [RedisStore(c, name=name, lease=2.0, outcome_idle=4.0) for c in connections]
    seen: list[Outcome] = []
    moved: list[int] = []
    noscript_before: dict[int, int] = {}
    mix = OutcomeMix.only("success")
    async with simulator(seed=20, durations=Durations.fixed(2.0), outcomes=mix) as sim:  # noqa: SIM117
        async with (
            connections[0],
            connections[1],
            sim.client() as client_a,
            sim.client() as client_b,
            Poller(client_a, store=stores[0], rate=50, initial_interval=0.2) as a,
            Poller(client_b, store=stores[1], rate=50, initial_interval=0.2) as b,
        ):
            ids = [await (a, b)[i % 2].submit(f"task {i}", deadline=60) for i in range(60)]

            async def drain(poller: Poller) -> None:
                async for outcome in poller:
                    seen.append(outcome)

            async def reshard() -> None:
                await anyio.sleep(0.5)  # checks in flight, outcomes on the stream
                for target in (second, third):
                    # A node that never ran the fleet's scripts: EVALSHA meets NOSCRIPT there.
                    redis_command(url_of(target), "SCRIPT", "FLUSH")
                    noscript_before[target.port] = errors(target, "NOSCRIPT")
                    move = functools.partial(cluster.move_slot, slot, target, pause=0.15)
                    moved.append(await anyio.to_thread.run_sync(move))

            with anyio.fail_after(90):
                async with anyio.create_task_group() as group:
                    group.start_soon(reshard)
                    group.start_soon(drain, a)
                    group.start_soon(drain, b)
    finals = Counter(o.request_id for o in seen if o.final)
    assert sorted(finals) == sorted(ids)
    assert set(finals.values()) == {1}, [rid for rid, n in finals.items() if n > 1]
    assert {o.kind for o in seen if o.final} == {OutcomeKind.SUCCESS}
    assert all(n > 3 for n in moved), moved  # the fleet's keys really moved, twice
    assert cluster.owner(slot) is third
    # The fleet's commands did meet the slot half moved, and were redirected; each new
    # owner answered NOSCRIPT, and the script was sent again in full.
    assert redirects(cluster) > redirects_before
    for target in (second, third):
        assert errors(target, "NOSCRIPT") > noscript_before[target.port]


async def test_a_user_confined_to_one_fleets_keys_runs_it_on_the_cluster(
    cluster: RedisClusterServers,
) -> None:
    """The README's ACL, with the key pattern narrowed to one fleet's prefix
    (``~async_dispatch:{name}:*``) and the cluster's extra right: the fleet runs, and the
    same user is refused another fleet's keys."""
    name, password = unique_name("acl"), "cluster-pw"
    rules = [f"~async_dispatch:{{{name}}}:*", *FLEET_ACL.split()[1:], *CLUSTER_ACL.split()]
    for server in cluster.servers:  # ACL users are per node
        reply = redis_command(url_of(server), "ACL", "SETUSER", "fleet", "reset", "on",
                              f">{password}", *rules)  # fmt: skip
        assert reply == "OK"
    owner = cluster.owner(fleet_slot(cluster, name))
    url = f"redis://fleet:{password}@127.0.0.1:{others(cluster, owner)[0].port}"
    store = RedisStore(url, name=name, lease=3.0)
    seen: list[Outcome] = []
    async with simulator(seed=3, durations=Durations.fixed(0.3)) as sim:  # noqa: SIM117
        async with sim.client() as client, Poller(client, store=store, initial_interval=0.2) as p:
            assert store.connection.cluster
            ids = [await p.submit(f"task {i}", deadline=30) for i in range(5)]
            with anyio.fail_after(30):
                async for outcome in p:
                    seen.append(outcome)
    assert sorted(o.request_id for o in seen if o.final) == sorted(ids)
    other = RedisStore(url, name=unique_name("other"))
    async with other.connection:
        with pytest.raises(CoordinationError, match="denied"):
            await other.get("x")


async def test_the_fleet_listing_finds_the_fleets_every_master_holds(
    cluster: RedisClusterServers,
) -> None:
    """SCAN walks one node's keys: `fleet_names` (behind ``async-dispatch fleet``'s answer
    to a name that holds nothing) scans every primary, so three fleets whose slots three
    different masters own are all listed, whichever node the URL names. (Their names sort
    before the other tests' fleets: the command line shows the first ten.)"""
    by_owner: dict[int, str] = {}
    while len(by_owner) < len(cluster.servers):
        name = unique_name("0listed")
        by_owner.setdefault(cluster.owner(fleet_slot(cluster, name)).port, name)
    for port, name in by_owner.items():
        redis_command(f"redis://127.0.0.1:{port}", "SET", RedisConnection.key(name, "epoch"), "1")
    for server in cluster.servers:
        async with RedisConnection(url_of(server)) as connection:
            assert connection.cluster
            names = await fleet_names(connection, limit=10_000)
        assert set(by_owner.values()) <= set(names)
        out, err = io.StringIO(), io.StringIO()
        typo = unique_name("typo")
        code = await run(
            ["fleet", "--name", typo], stdout=out, stderr=err, environ={"REDIS_URL": url_of(server)}
        )
        assert code == ExitCode.NO_SUCH_FLEET
        hint = err.getvalue()
        assert "fleets there: " in hint
        assert all(name in hint for name in by_owner.values()), hint
