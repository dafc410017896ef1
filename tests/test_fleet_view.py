"""`read_fleet()` and ``async-dispatch fleet``, against a fleet populated on real Redis.

One scene for every test: store A (attached, as a running replica) and store B (only
claiming, as a replica that died) share one fleet name with a bucket:

    t1  claimed by A (lease 30 s: live)        t4  a last check, due in 20 s
    t2  claimed by B, whose 0.2 s lease ran out   t5  a routine check, due in 10 s
    t3  due now, unclaimed                      t6  resolved by a webhook: an outcome,
                                                    read by A and not acknowledged
    one submit in flight (A), one early webhook parked, three tokens taken, a 30 s pause.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import anyio
import attrs
import pytest
from rich.console import Console

from async_dispatch._cli import ExitCode, run
from async_dispatch._cli._output import fleet_lines, fleet_renderable
from async_dispatch._models import TaskStatus
from async_dispatch._outcome import Outcome, OutcomeKind
from async_dispatch._store import TrackedTask, make_outcome
from async_dispatch._wire import parse_status_payload
from async_dispatch.redis import (
    FleetView,
    RedisConnection,
    RedisStore,
    RedisTokenBucket,
    read_fleet,
)
from async_dispatch.redis._fleet_view import fleet_names
from redis_support import delete_keys, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

RATE = 10.0
LEAD = 45.0  # how long before its deadline a task's last check falls
PASSWORD = "hunter2-very-secret"


@attrs.frozen
class Scene:
    connection: RedisConnection
    name: str
    a: str  # replica A's consumer name
    b: str  # replica B's


def _task(rid: str, *, due: float) -> TrackedTask:
    """A task due in `due` seconds, with its deadline in 60 s: a check due in 15 s or more
    is its last (see `LEAD`)."""
    now = anyio.current_time()
    task = TrackedTask(rid, started=now, deadline=now + 60, context={"n": rid})
    task.due = now + due
    return task


def _status(rid: str) -> TaskStatus:
    payload = {
        "requestId": rid,
        "status": "success",
        "createdAt": datetime.now(timezone.utc).isoformat(),
        "response": {"text": "done"},
    }
    return parse_status_payload(rid, payload)


@pytest.fixture
async def scene(redis_url: str, redis_name: str) -> AsyncIterator[Scene]:
    received: list[Outcome] = []
    async with RedisConnection(redis_url) as connection:
        a = RedisStore(connection, name=redis_name, lease=30.0)
        b = RedisStore(connection, name=redis_name, lease=0.2)
        bucket = RedisTokenBucket(connection, name=redis_name, rate=RATE, burst=5)
        sink = lambda outcome, receipt: received.append(outcome)  # noqa: E731
        async with a.attach(sink, anyio.current_time, lambda: None, last_check_lead=LEAD):
            for rid, due in (("t1", -3.0), ("t2", -2.0), ("t3", -1.0), ("t5", 10.0)):
                assert await a.add(_task(rid, due=due))
            assert await a.add(_task("t4", due=20.0))
            claimed = await a.claim(anyio.current_time())
            assert claimed is not None
            assert claimed.request_id == "t1"
            lost = await b.claim(anyio.current_time())  # B never renews: it "died"
            assert lost is not None
            assert lost.request_id == "t2"
            t6 = _task("t6", due=5.0)
            assert await a.add(t6)
            outcome = make_outcome(
                t6, OutcomeKind.SUCCESS, anyio.current_time(), status=_status("t6")
            )
            assert await a.resolve(t6, outcome, fenced=False)
            await a.begin_submit()
            assert await a.park("early", _status("early"))
            for _ in range(3):
                await bucket.acquire()
            await bucket.pause(30.0)
            with anyio.fail_after(5):
                while not received:  # A's reader took the outcome  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await anyio.sleep(0.4)  # B's 0.2 s lease runs out
            yield Scene(connection, redis_name, a.consumer, b.consumer)


async def test_the_view_counts_what_the_fleet_holds(scene: Scene) -> None:
    view = await read_fleet(scene.connection, scene.name, rate=RATE)
    assert view.name == scene.name
    assert view.tracked == 5
    assert view.due_now == 2  # t3, and t2 whose lease ran out
    assert view.last_checks == 1
    assert view.next_check_in is not None
    assert view.next_check_in < 0  # overdue: t2's expired lease
    assert view.next_deadline_in is not None
    assert 50 < view.next_deadline_in <= 60
    assert view.leased == 1
    assert view.leases_by_replica == {scene.a: 1}
    assert view.stale_leases == 1
    assert (view.inspected, view.truncated) == (5, False)
    assert view.outcomes_waiting == 1
    assert view.outcomes_pending == 1
    assert view.outcomes_pending_by_replica == {scene.a: 1}
    assert view.submits_in_flight == 1
    assert view.oldest_submit_age is not None
    assert 0 <= view.oldest_submit_age < 30
    assert view.parked_webhooks == 1
    assert 25 < view.paused_for <= 30
    # After a pause the bucket restarts with (burst - 1) intervals of lead: 4 tokens.
    assert view.schedule_ahead == pytest.approx(0.4, abs=1e-3)
    assert view.tokens_in_use == pytest.approx(4.0, abs=1e-2)
    assert view.replicas == [scene.a]


async def test_a_fleet_that_ran_is_found_after_its_tasks_are_gone(
    redis_url: str, redis_name: str
) -> None:
    async with RedisConnection(redis_url) as connection:
        assert not (await read_fleet(connection, redis_name)).found
        bucket = RedisTokenBucket(connection, name=redis_name, rate=RATE, burst=5)
        await bucket.acquire()  # a bucket alone: its hash marks the fleet
        assert (await read_fleet(connection, redis_name)).found
        other = redis_name + "-store"
        try:
            store = RedisStore(connection, name=other)
            sink = lambda outcome, receipt: None  # noqa: E731
            async with store.attach(sink, anyio.current_time, lambda: None, last_check_lead=LEAD):
                task = _task("gone", due=5.0)
                assert await store.add(task)
                assert await store.forget("gone")
            view = await read_fleet(connection, other)
            assert view.tracked == 0
            assert view.found  # idle, not absent: the outcome stream stays
            assert other in await fleet_names(connection, limit=10_000)
        finally:
            delete_keys(redis_url, other)


async def test_a_limit_on_inspection_is_reported(scene: Scene) -> None:
    view = await read_fleet(scene.connection, scene.name, limit=2)
    assert (view.inspected, view.truncated) == (2, True)
    assert view.tokens_in_use is None  # no rate given


async def test_an_empty_fleet_reads_as_zeros(redis_url: str, redis_name: str) -> None:
    async with RedisConnection(redis_url) as connection:
        view = await read_fleet(connection, redis_name)
    data = view.as_dict()
    assert data["found"] is False  # nothing under this name: zeros, and it says so
    assert data["signed"] is None  # no replica said whether it signs
    assert data["tasks"] == {
        "tracked": 0,
        "due_now": 0,
        "last_checks": 0,
        "next_check_in": None,
        "next_deadline_in": None,
    }
    assert data["outcomes"] == {
        "waiting": 0,
        "pending": 0,
        "pending_by_replica": {},
        "dead_letters": 0,
    }
    assert data["budget"]["paused_for"] == 0.0
    assert data["budget"]["schedule_ahead"] == 0.0


# -- the command ------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def fleet_cli(*argv: str, env: dict[str, str], tty: bool = False) -> tuple[int, str, str]:
    out: io.StringIO = _Terminal() if tty else io.StringIO()
    err = io.StringIO()
    code = await run(["fleet", *argv], stdout=out, stderr=err, environ=env)
    return code, out.getvalue(), err.getvalue()


async def test_json_is_one_object_with_the_views_numbers(redis_url: str, scene: Scene) -> None:
    env = {"DISPATCH_REDIS_URL": redis_url}
    code, out, err = await fleet_cli("--name", scene.name, "--json", "--rate", "10", env=env)
    assert (code, err) == (ExitCode.OK, "")
    (line,) = out.splitlines()
    data: dict[str, Any] = json.loads(line)
    assert data["name"] == scene.name
    assert data["signed"] is False  # the scene's replicas have no fleet secret
    assert data["tasks"]["tracked"] == 5
    assert data["tasks"]["due_now"] == 2
    assert data["tasks"]["last_checks"] == 1
    assert data["leases"]["by_replica"] == {scene.a: 1}
    assert data["leases"]["stale"] == 1
    assert data["outcomes"] == {
        "waiting": 1,
        "pending": 1,
        "pending_by_replica": {scene.a: 1},
        "dead_letters": 0,
    }
    assert data["submits_in_flight"] == 1
    assert data["parked_webhooks"] == 1
    assert data["budget"]["rate"] == 10.0
    assert data["budget"]["tokens_in_use"] == pytest.approx(4.0, abs=1e-2)
    assert 25 < data["budget"]["paused_for"] <= 30


async def test_json_watch_prints_one_line_per_read(redis_url: str, scene: Scene) -> None:
    argv = ["--name", scene.name, "--json", "--watch", "--count", "3", "--interval", "0.01"]
    code, out, _ = await fleet_cli(*argv, "--redis-url", redis_url, env={})
    assert code == ExitCode.OK
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert all(line["tasks"]["tracked"] == 5 for line in lines)
    assert lines[0]["server_time"] < lines[2]["server_time"]


async def test_plain_lines_when_piped(redis_url: str, scene: Scene) -> None:
    code, out, _ = await fleet_cli("--name", scene.name, env={"REDIS_URL": redis_url})
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert lines[0] == f"fleet {scene.name} at {redis_url}"
    assert "tasks tracked: 5" in lines
    assert "due now: 2" in lines
    assert "checks leased: 1 (1 ran out: replica gone?)" in lines
    assert "outcomes waiting: 1 (1 read, not yet acked)" in lines
    assert any(line.startswith("paused: ") and line.endswith("s left") for line in lines)
    assert f"replica {scene.a}: leases=1 outcomes_pending=1" in lines
    assert "outcomes signed: no (no fleet secret: Redis is trusted)" in lines


async def test_a_fleet_with_a_secret_reads_as_signed(redis_url: str, redis_name: str) -> None:
    secret = "fleet-view-secret-0123456789abcdef"
    async with RedisConnection(redis_url) as connection:
        store = RedisStore(connection, name=redis_name, secret=secret)
        sink = lambda outcome, receipt: None  # noqa: E731
        async with store.attach(sink, anyio.current_time, lambda: None, last_check_lead=LEAD):
            assert (await read_fleet(connection, redis_name)).signed is True
    code, out, _ = await fleet_cli("--name", redis_name, env={"REDIS_URL": redis_url})
    assert code == ExitCode.OK
    assert "outcomes signed: yes (a fleet secret)" in out.splitlines()
    assert secret not in out


async def test_a_terminal_gets_a_live_view(redis_url: str, scene: Scene) -> None:
    argv = ["--name", scene.name, "--count", "2", "--interval", "0.01"]
    code, out, _ = await fleet_cli(*argv, env={"REDIS_URL": redis_url}, tty=True)
    assert code == ExitCode.OK
    assert "tasks tracked" in out
    assert "by replica" in out


async def test_the_rich_view_fits_80_columns(scene: Scene) -> None:
    view = await read_fleet(scene.connection, scene.name, rate=RATE)
    text = _render(view, "redis://:***@redis.internal.example:6379/0")
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert "tasks tracked" in text
    assert "checks leased" in text
    assert "4.0 tokens at 10/s" in text
    assert scene.a[:20] in text
    assert "redis://:***@redis.internal.example:6379/0" in text


def test_long_replica_names_still_fit_80_columns() -> None:
    long_name = "a-very-long-kubernetes-pod-name-" * 3 + "1234-abcdef01"
    view = FleetView(
        name="prod",
        server_time=1.0,
        tracked=100_000,
        due_now=12_345,
        last_checks=17,
        next_check_in=-0.25,
        next_deadline_in=599.9,
        leased=8,
        leases_by_replica={long_name: 5, "web-2-77-0123abcd": 3},
        stale_leases=2,
        inspected=10_000,
        truncated=True,
        outcomes_waiting=40,
        outcomes_pending=12,
        outcomes_pending_by_replica={long_name: 12},
        submits_in_flight=3,
        oldest_submit_age=1.5,
        parked_webhooks=0,
        schedule_ahead=0.8,
        paused_for=12.0,
        rate=40.0,
    )
    text = _render(view, "redis://127.0.0.1:6379")
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "web-2-77-0123abcd" in text
    assert "(first 10000 checks read)" in text
    assert "12.0s left" in text
    assert fleet_lines(view, "redis://127.0.0.1:6379")[0] == "fleet prod at redis://127.0.0.1:6379"


def _render(view: FleetView, url: str) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(fleet_renderable(view, url))
    return console.export_text()


# coredis 6 leaves a failed connection's memory streams unclosed, and each one warns when
# collected (see test_redis_bucket.py): not ours to fix.
@pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")
async def test_the_password_is_never_printed(redis_url: str, redis_name: str) -> None:
    """An unreachable Redis (exit 5) and one that refuses the login: the URL is masked."""
    unreachable = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    code, out, err = await fleet_cli("--name", redis_name, env={"DISPATCH_REDIS_URL": unreachable})
    assert code == ExitCode.UNREACHABLE
    assert "redis://:***@127.0.0.1" in err
    assert PASSWORD not in out + err
    host = redis_url.split("://", 1)[1].rsplit("@", 1)[-1]
    wrong = f"redis://:{PASSWORD}@{host}"
    code, out, err = await fleet_cli("--name", redis_name, "--redis-url", wrong, env={})
    assert PASSWORD not in out + err
    if code in (ExitCode.OK, ExitCode.NO_SUCH_FLEET):  # no requirepass: password ignored
        assert "redis://:***@" in out + err
    else:
        assert code == ExitCode.UNREACHABLE
        assert "redis://:***@" in err
    with contextlib.suppress(Exception):
        async with RedisConnection(wrong) as connection:
            assert PASSWORD not in repr(connection) + connection.url
    gc.collect()  # the failed connections' warnings, while they are filtered


async def test_a_name_that_holds_nothing_is_not_shown_as_an_idle_fleet(
    redis_url: str, scene: Scene
) -> None:
    typo = scene.name + "-typo"
    for extra in ([], ["--json"]):
        code, out, err = await fleet_cli("--name", typo, *extra, env={"REDIS_URL": redis_url})
        assert code == ExitCode.NO_SUCH_FLEET
        assert out == ""
        assert err.startswith(f"async-dispatch: error: no fleet named {typo!r} in {redis_url}")
        assert "check --name (fleets there: " in err
        assert err.count("\n") == 1
    async with RedisConnection(redis_url) as connection:
        names = await fleet_names(connection, limit=10_000)
    assert scene.name in names
    assert typo not in names


async def test_usage_errors(redis_name: str) -> None:
    code, _, err = await fleet_cli("--name", redis_name, env={})
    assert code == ExitCode.USAGE
    assert "DISPATCH_REDIS_URL" in err
    code, _, err = await fleet_cli("--name", "a{b}", env={"REDIS_URL": "redis://127.0.0.1"})
    assert code == ExitCode.USAGE
    code, _, err = await fleet_cli("--name", "x", env={"REDIS_URL": "http://127.0.0.1"})
    assert code == ExitCode.USAGE
