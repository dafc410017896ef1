"""Resubmitting failed tasks (`ResubmitPolicy`): in memory, in a fleet's Redis, in SQLite.

Each behaviour runs through a real poller against the simulator, on every store, so the
rule is the store's and the poller's together: an attempt that ends in ``error`` goes
again within the poller's one budget, the final outcome lists every attempt's id, one
deadline bounds them all, and no store keeps a secret.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _third_store import ListStore
from async_dispatch import (
    MemoryStore,
    Outcome,
    OutcomeKind,
    Poller,
    RateLimitedError,
    ResubmitPolicy,
    SubmitOptions,
    SubmitUncertainError,
    TaskSpec,
    TaskStore,
    UsageError,
)
from async_dispatch.instrumentation import Event, TaskRetrying
from async_dispatch.redis._connection import FLEET_ACL
from async_dispatch.sqlite import SQLiteStore
from async_dispatch.testing import Simulator, simulator
from redis_support import RedisServer, redis_command, unique_name

pytestmark = pytest.mark.anyio

STORES = ["memory", "redis", "sqlite", "list"]
#: The simulator's override of how one task ends (a field the library passes through).
ERROR: Any = {"simulate": {"outcome": "error"}}
SUCCESS: Any = {"simulate": {"outcome": "success"}}


def error_then(outcome: str) -> ResubmitPolicy:
    """A quick policy whose resubmissions end in `outcome` (the simulator's override is in
    `extra`, a secret field: `secret_options` gives it back, as it would a credential)."""
    return ResubmitPolicy(
        attempts=3,
        wait=0.05,
        secret_options=lambda context: SubmitOptions(extra={"simulate": {"outcome": outcome}}),
    )


class Stores:
    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
        self.request, self.tmp_path, self.kind = request, tmp_path, kind

    def open(self) -> TaskStore:
        if self.kind == "redis":
            from async_dispatch.redis import RedisStore

            url = self.request.getfixturevalue("redis_url")
            name = self.request.getfixturevalue("redis_name")
            return RedisStore(url, name=name, lease=2.0)
        if self.kind == "sqlite":
            return SQLiteStore(self.tmp_path / "tasks.db")
        return MemoryStore() if self.kind == "memory" else ListStore()


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    return Stores(request, tmp_path, str(request.param))


@contextlib.asynccontextmanager
async def polling(
    sim: Simulator, store: TaskStore, **settings: Any
) -> AsyncIterator[tuple[Poller, list[Event]]]:
    events: list[Event] = []
    settings.setdefault("rate", 200)
    settings.setdefault("burst", 50)
    settings.setdefault("initial_interval", 0.01)
    async with (
        sim.client(hooks=[events.append]) as client,
        Poller(client, store=store, **settings) as poller,
    ):
        yield poller, events


async def drain(poller: Poller, timeout: float = 20) -> list[Outcome]:
    got = []
    with anyio.fail_after(timeout):
        async for outcome in poller:
            got.append(outcome)
    return got


async def test_an_error_is_resubmitted_and_the_outcome_lists_every_attempt(
    stores: Stores,
) -> None:
    async with (
        simulator(seed=5, time_scale=0.002) as sim,
        polling(sim, stores.open(), resubmit=error_then("success")) as (poller, events),
    ):
        first = await poller.submit("/Operator find jobs", context={"n": 1}, extra=ERROR)
        (outcome,) = await drain(poller)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.context == {"n": 1}
    assert outcome.attempts[0] == first
    assert len(outcome.attempts) == 2
    assert outcome.request_id == outcome.attempts[-1] != first
    assert sim.stats.tasks_created == 2  # the simulator's own count: one resubmission
    assert all(
        sim.app.tasks[rid].prompt_excerpt == "/Operator find jobs" for rid in outcome.attempts
    )
    retried = [e for e in events if isinstance(e, TaskRetrying)]
    assert [(e.request_id, e.attempt, e.kind) for e in retried] == [(first, 1, OutcomeKind.ERROR)]
    assert 0 < retried[0].wait <= 0.05


async def test_attempts_are_bounded_and_the_last_error_is_final(stores: Stores) -> None:
    async with (
        simulator(seed=6, time_scale=0.002) as sim,
        polling(sim, stores.open(), resubmit=error_then("error")) as (poller, _),
    ):
        await poller.submit("/Operator fail", extra=ERROR)
        await poller.submit("/Operator fine", extra=SUCCESS)
        outcomes = {len(o.attempts): o for o in await drain(poller)}
    assert sorted(outcomes) == [1, 3]
    assert outcomes[1].kind is OutcomeKind.SUCCESS  # never failed: never resubmitted
    failed = outcomes[3]
    assert failed.kind is OutcomeKind.ERROR
    assert len(set(failed.attempts)) == 3
    assert failed.status is not None
    assert failed.status.request_id == failed.request_id == failed.attempts[-1]
    assert sim.stats.tasks_created == 4


async def test_the_predicate_and_the_per_submit_opt_out_keep_an_error_final(
    stores: Stores,
) -> None:
    seen: list[Outcome] = []

    def only_marked(outcome: Outcome) -> bool:
        seen.append(outcome)
        return bool(outcome.context and outcome.context.get("retry"))

    policy = ResubmitPolicy(
        wait=0.05,
        when=only_marked,
        secret_options=lambda context: SubmitOptions(extra=SUCCESS),
    )
    async with (
        simulator(seed=7, time_scale=0.002) as sim,
        polling(sim, stores.open(), resubmit=policy) as (poller, _),
    ):
        await poller.submit("/Operator a", context={"retry": False}, extra=ERROR)
        await poller.submit("/Operator b", context={"retry": True}, extra=ERROR)
        await poller.submit("/Operator c", context={"retry": True}, extra=ERROR, resubmit=False)
        outcomes = await drain(poller)
    by_attempts = sorted((len(o.attempts), o.kind.value, o.context["retry"]) for o in outcomes)
    assert by_attempts == [(1, "error", False), (1, "error", True), (2, "success", True)]
    # The opted-out task never reached the predicate; the others did, once each.
    assert sorted(o.context["retry"] for o in seen) == [False, True]
    assert sim.stats.tasks_created == 4


async def test_a_resubmission_that_would_pass_the_deadline_is_not_made() -> None:
    """One deadline for the whole task: a wait past its last check leaves the error final."""
    policy = ResubmitPolicy(wait=30.0, secret_options=lambda context: SubmitOptions(extra=SUCCESS))
    async with (
        simulator(seed=8, time_scale=0.002) as sim,
        polling(sim, MemoryStore(), resubmit=policy) as (poller, events),
    ):
        await poller.submit("/Operator soon", extra=ERROR, deadline=10)
        (outcome,) = await drain(poller)
    assert (outcome.kind, len(outcome.attempts)) == (OutcomeKind.ERROR, 1)
    assert not [e for e in events if isinstance(e, TaskRetrying)]
    assert sim.stats.tasks_created == 1


def test_the_policy_refuses_the_kinds_that_could_run_a_task_twice() -> None:
    for kind in (OutcomeKind.TIMED_OUT, OutcomeKind.SUBMIT_UNCERTAIN, OutcomeKind.SUCCESS):
        with pytest.raises(UsageError, match="never resubmitted"):
            ResubmitPolicy(on=frozenset({kind}))
    assert ResubmitPolicy(on=frozenset({OutcomeKind.ERROR, OutcomeKind.FAILED})).on
    with pytest.raises(UsageError):
        ResubmitPolicy(attempts=0)
    with pytest.raises(UsageError):
        ResubmitPolicy(jitter=2)


async def test_failed_is_resubmitted_only_when_the_policy_names_it() -> None:
    """A 404 is FAILED: only a policy that names FAILED sends the prompt again."""
    async with simulator(seed=9, time_scale=0.002) as sim:
        for on, expected in (
            (frozenset({OutcomeKind.ERROR}), 1),
            (frozenset({OutcomeKind.ERROR, OutcomeKind.FAILED}), 2),
        ):
            policy = ResubmitPolicy(on=on, attempts=2, wait=0.05)
            async with polling(sim, MemoryStore(), resubmit=policy) as (poller, _):
                rid = await poller.submit("/Operator vanishing", deadline=30)
                sim.app.tasks.pop(rid)  # the service forgets it: the next check gets 404
                outcomes = await drain(poller)
            kinds = [o.kind for o in outcomes]
            assert kinds == [OutcomeKind.SUCCESS if expected == 2 else OutcomeKind.FAILED]
            assert len(outcomes[0].attempts) == expected


async def test_secret_options_without_the_hook_are_refused_at_submit() -> None:
    async with (
        simulator(seed=10, time_scale=0.002) as sim,
        polling(sim, MemoryStore(), resubmit=ResubmitPolicy()) as (poller, _),
    ):
        with pytest.raises(UsageError, match="secret_variables") as caught:
            await poller.submit("/Operator log in", secret_variables={"password": "hunter2"})
        assert "hunter2" not in str(caught.value)
        # Opted out, or with no policy, the same submit is fine.
        await poller.submit(
            "/Operator log in", secret_variables={"password": "hunter2"}, resubmit=False
        )
        assert [o.kind for o in await drain(poller)]
    assert sim.stats.tasks_created == 1


SECRETS = ("cb-SECRET-4f1e", "hdr-TOKEN-77aa", "pw-SECRET-9c0d")


async def _everything_in_redis(store: Any, name: str) -> str:
    """Every value under the fleet's keys, as one text (hashes, zsets, streams, strings)."""
    client = store.connection.client
    texts: list[str] = []
    glob = "".join(f"\\{c}" if c in "[]*?\\" else c for c in name)  # a literal name
    keys = await client.keys(f"async_dispatch:{{{glob}}}:*")
    assert keys, "no key of the fleet found: the scan would prove nothing"
    for key in keys:
        kind = await client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        texts.append(repr(key))
        if kind == "hash":
            texts.append(repr(await client.hgetall(key)))
        elif kind == "zset":
            texts.append(repr(await client.zrange(key, 0, -1)))
        elif kind == "stream":
            texts.append(repr(await client.xrange(key)))
        elif kind == "string":
            texts.append(repr(await client.get(key)))
    return "\n".join(texts)


def _file_texts(directory: Path) -> list[str]:
    """The SQLite file and its journal, byte for byte."""
    return [path.read_bytes().decode("latin-1") for path in directory.glob("tasks.db*")]


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
async def test_no_secret_reaches_the_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The webhook secret and headers the poller fills in, and the secret variables the
    policy's hook gives back, go to the service on every attempt and never to the store."""
    stores = Stores(request, tmp_path, kind)
    store = stores.open()
    policy = ResubmitPolicy(
        wait=0.05,
        secret_options=lambda context: SubmitOptions(
            secret_variables={"password": SECRETS[2]}, extra=SUCCESS
        ),
    )
    dumps: list[str] = []
    async with (
        simulator(seed=11, time_scale=0.01) as sim,
        polling(
            sim,
            store,
            resubmit=policy,
            callback_url="http://127.0.0.1:9/hook",
            callback_secret=SECRETS[0],
            callback_headers={"Authorization": SECRETS[1]},
            safety_interval=0.02,  # the hook's URL answers nothing: polling finds the ends
        ) as (poller, events),
    ):
        await poller.submit(
            "/Operator log in", secret_variables={"password": SECRETS[2]}, extra=ERROR
        )
        with anyio.fail_after(20):
            while not any(isinstance(e, TaskRetrying) for e in events):  # noqa: ASYNC110
                await anyio.sleep(0.01)  # (the hook is a plain callable)
            if kind == "redis":
                dumps.append(
                    await _everything_in_redis(store, request.getfixturevalue("redis_name"))
                )
            outcomes = []
            async for outcome in poller:
                outcomes.append(outcome)
                if kind == "redis":
                    dumps.append(
                        await _everything_in_redis(store, request.getfixturevalue("redis_name"))
                    )
    (outcome,) = outcomes
    assert len(outcome.attempts) == 2
    # The service got the secrets with both attempts (the poller's, and the hook's).
    for rid in outcome.attempts:
        task = sim.app.tasks[rid]
        assert task.callback is not None
        assert task.callback.secret == SECRETS[0]
    if kind == "sqlite":
        dumps.extend(_file_texts(tmp_path))
    stored = "\n".join(dumps)
    assert "/Operator log in" in stored or kind == "sqlite"  # the spec was there to look at
    for secret in SECRETS:
        assert secret not in stored


async def test_a_resubmission_cut_short_ends_submit_uncertain_not_twice(tmp_path: Path) -> None:
    """A process that stops while resubmitting leaves the mark on disk: the next one ends
    the task SUBMIT_UNCERTAIN instead of sending it a second time."""
    path = tmp_path / "tasks.db"
    policy = ResubmitPolicy(wait=0.05, secret_options=lambda context: SubmitOptions(extra=SUCCESS))
    async with simulator(seed=12, time_scale=0.002) as sim:
        marked = anyio.Event()
        with anyio.CancelScope() as scope:
            async with polling(sim, SQLiteStore(path), resubmit=policy) as (poller, _):
                store = poller.store
                mark = store.begin_resubmit

                async def mark_then_stall(task: Any) -> bool:
                    # On disk now; the process "dies" before the submit is sent.
                    assert await mark(task)
                    marked.set()
                    await anyio.sleep_forever()
                    return True  # pragma: no cover - never reached

                store.begin_resubmit = mark_then_stall  # type: ignore[method-assign]
                await poller.submit("/Operator once", extra=ERROR)
                with anyio.fail_after(20):
                    await marked.wait()
                scope.cancel()
        assert sim.stats.tasks_created == 1
        async with polling(sim, SQLiteStore(path), resubmit=policy) as (poller, _):
            (outcome,) = await drain(poller)
    assert sim.stats.tasks_created == 1  # never sent again
    assert outcome.kind is OutcomeKind.SUBMIT_UNCERTAIN
    assert isinstance(outcome.error, SubmitUncertainError)
    assert len(outcome.attempts) == 1


async def test_run_awaits_the_final_attempt() -> None:
    async with (
        simulator(seed=13, time_scale=0.002) as sim,
        polling(sim, MemoryStore(), resubmit=error_then("success")) as (poller, _),
    ):
        outcome = await poller.run("/Operator awaited", extra=ERROR)
        assert await drain(poller) == []
    assert (outcome.kind, len(outcome.attempts)) == (OutcomeKind.SUCCESS, 2)


async def test_the_retry_is_logged_for_people(caplog: pytest.LogCaptureFixture) -> None:
    from async_dispatch.instrumentation import LoggingHook

    caplog.set_level(logging.INFO, logger="async_dispatch")
    async with (
        simulator(seed=14, time_scale=0.002) as sim,
        sim.client(hooks=[LoggingHook()]) as client,
        Poller(client, rate=200, initial_interval=0.01, resubmit=error_then("success")) as poller,
    ):
        await poller.submit("/Operator logged", extra=ERROR)
        await drain(poller)
    assert any("task_retrying" in record.getMessage() for record in caplog.records)


async def test_a_replica_resubmits_what_another_planned(request: pytest.FixtureRequest) -> None:
    """The policy works across replicas: one sees the attempt fail and plans the
    resubmission in Redis, then leaves; another, with the same policy, sends it."""
    from async_dispatch.redis import RedisStore

    url, name = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_name")
    policy = ResubmitPolicy(
        wait=1.0, jitter=0, secret_options=lambda context: SubmitOptions(extra=SUCCESS)
    )
    async with simulator(seed=15, time_scale=0.002) as sim:
        store = RedisStore(url, name=name, lease=1.0)
        async with polling(sim, store, resubmit=policy) as (planner, events):
            first = await planner.submit("/Operator elsewhere", context=[1], extra=ERROR)
            with anyio.fail_after(20):
                while not any(isinstance(e, TaskRetrying) for e in events):  # noqa: ASYNC110
                    await anyio.sleep(0.01)  # (the hook is a plain callable)
        assert sim.stats.tasks_created == 1  # planned, not sent: the wait is not over
        async with polling(sim, RedisStore(url, name=name, lease=1.0), resubmit=policy) as (
            sender,
            others,
        ):
            (outcome,) = await drain(sender)
    assert (outcome.kind, outcome.context) == (OutcomeKind.SUCCESS, [1])
    assert outcome.attempts[0] == first
    assert len(outcome.attempts) == 2
    assert sim.stats.tasks_created == 2
    assert not [e for e in others if isinstance(e, TaskRetrying)]  # it only sent it


_SECRET_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=20)


@settings(max_examples=100, deadline=None)
@given(
    secrets=st.lists(_SECRET_TEXT, min_size=6, max_size=6, unique=True),
    time_zone=st.sampled_from(["UTC", "Europe/Paris"]),
)
def test_a_spec_keeps_every_plain_option_and_no_secret(secrets: list[str], time_zone: str) -> None:
    options = SubmitOptions(
        time_zone=time_zone,
        input_variables={"q": "plain"},
        callback_url="http://127.0.0.1:9/hook",
        callback_secret=secrets[0],
        callback_headers={"Authorization": secrets[1]},
        secret_variables={"password": secrets[2]},
        user_resource_credentials={"jira": {"token": secrets[3]}},
        mcp_servers=[{"url": "http://127.0.0.1:9", "token": secrets[4]}],
        extra={"apiToken": secrets[5]},
    )
    spec = TaskSpec.of("/Operator go", options, "mod:Type")
    text = spec.to_json()
    for secret in secrets:
        assert secret not in text
    again = TaskSpec.from_json(text)
    assert again == spec
    assert again is not None
    rebuilt = again.submit_options()
    assert (rebuilt.time_zone, rebuilt.input_variables, rebuilt.callback_url) == (
        time_zone,
        {"q": "plain"},
        "http://127.0.0.1:9/hook",
    )
    assert rebuilt.callback_secret is None
    assert rebuilt.secret_variables is None
    assert rebuilt.extra is None


async def test_a_resubmission_refused_for_now_goes_again_later(stores: Stores) -> None:
    """A 429 (or a connection that never opened) sent nothing: the same resubmission is
    planned again after the pause, still within the one deadline."""
    async with (
        simulator(seed=16, time_scale=0.002) as sim,
        polling(sim, stores.open(), resubmit=error_then("success")) as (poller, _),
    ):
        submit = poller.client._submit_with
        refused: list[str] = []

        async def once_rate_limited(bucket: Any, prompt: str, options: SubmitOptions) -> str:
            if not refused:  # the first submit goes through; the first resubmission is refused
                refused.append("first")
                return await submit(bucket, prompt, options)
            if len(refused) == 1:
                refused.append("429")
                raise RateLimitedError(
                    "HTTP 429", status_code=429, request_id=None, retry_after=0.05
                )
            return await submit(bucket, prompt, options)

        poller.client._submit_with = once_rate_limited  # type: ignore[method-assign]
        await poller.submit("/Operator busy", extra=ERROR)
        (outcome,) = await drain(poller)
    assert refused == ["first", "429"]
    assert (outcome.kind, len(outcome.attempts)) == (OutcomeKind.SUCCESS, 2)
    assert sim.stats.tasks_created == 2


async def test_a_raising_predicate_or_hook_ends_the_task_it_does_not_stop_the_poller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(outcome: Outcome) -> bool:
        raise LookupError("the caller's bug")

    def no_vault(context: Any) -> SubmitOptions:
        raise KeyError(context)

    caplog.set_level(logging.WARNING, logger="async_dispatch")
    outcomes = []
    async with simulator(seed=17, time_scale=0.002) as sim:
        for policy in (
            ResubmitPolicy(wait=0.05, when=broken, secret_options=lambda c: SubmitOptions()),
            ResubmitPolicy(wait=0.05, secret_options=no_vault),
        ):
            async with polling(sim, MemoryStore(), resubmit=policy) as (poller, _):
                await poller.submit("/Operator b", context="user-1", extra=ERROR)
                await poller.submit("/Operator fine", context="other", extra=SUCCESS)
                outcomes.append({o.context: o for o in await drain(poller)})
    for got in outcomes:  # the other task went on as usual
        assert got["other"].kind is OutcomeKind.SUCCESS
        assert (got["user-1"].kind, len(got["user-1"].attempts)) == (OutcomeKind.ERROR, 1)
    assert "secret_options raised KeyError" in str(outcomes[1]["user-1"].error)
    assert any("resubmit_predicate_failed" in r.getMessage() for r in caplog.records)
    assert sim.stats.tasks_created == 4


async def test_a_resubmission_runs_under_the_documented_acl(
    private_redis: RedisServer,
) -> None:
    """The resubmission's scripts need no right beyond the README's fleet ACL."""
    from async_dispatch.redis import RedisStore

    reply = redis_command(
        private_redis.url, "ACL", "SETUSER", "fleet", "reset", "on", ">s3cret-pw",
        *FLEET_ACL.split(),
    )  # fmt: skip
    assert reply == "OK"
    url = f"redis://fleet:s3cret-pw@127.0.0.1:{private_redis.port}/0"
    store = RedisStore(url, name=unique_name("acl-resubmit"), lease=2.0)
    async with (
        simulator(seed=18, time_scale=0.002) as sim,
        polling(sim, store, resubmit=error_then("success")) as (poller, _),
    ):
        await poller.submit("/Operator under acl", extra=ERROR)
        (outcome,) = await drain(poller)
    assert (outcome.kind, len(outcome.attempts)) == (OutcomeKind.SUCCESS, 2)
