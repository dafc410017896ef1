"""`SQLiteStore` beyond the shared contract (`tests/test_store_contract.py`): a poller
that stops abruptly, or is killed with SIGKILL, resumes every task from the file; one
process at a time; the event loop keeps running while the file is written."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from async_dispatch import (
    DispatchClient,
    Outcome,
    Poller,
    SubmitOptions,
    TrackedTask,
    UsageError,
)
from async_dispatch.sqlite import SQLiteStore
from async_dispatch.testing import Durations, OutcomeMix, SimulatorConfig, serve, simulator

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"initial_interval": 0.1, "max_interval": 0.3, "rate": 500, "burst": 50}
#: What the simulator will soon require of a submit; accepted already.
CLOUD = SubmitOptions(execution_mode="cloud")


def _ignore(outcome: Outcome, receipt: Any) -> None:
    return None


async def test_a_second_poller_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    async with first.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
        with pytest.raises(UsageError, match="in use by another Poller") as caught:
            async with second.attach(
                _ignore, anyio.current_time, lambda: None, last_check_lead=1.0
            ):
                pass  # pragma: no cover - refused
        assert str(path) in str(caught.value)
    # Released with the first: the file opens again.
    async with second.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
        assert len(second) == 0


async def test_a_context_the_file_cannot_hold_is_refused_before_tracking(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "tasks.db")
    async with store.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
        task = TrackedTask("req_obj", started=0.0, deadline=60.0, context=object())
        with pytest.raises(UsageError, match="JSON"):
            await store.add(task)
        assert await store.get("req_obj") is None
        assert await store.idle()


async def test_writes_leave_the_event_loop_running(tmp_path: Path) -> None:
    """20,000 tracked in one `add_many`: the transaction runs in the worker thread, so a
    ticker on the loop keeps ticking while it commits."""
    store = SQLiteStore(tmp_path / "tasks.db")
    ticks = 0
    writing = True

    async def tick() -> None:
        nonlocal ticks
        while writing:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with store.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
        now = anyio.current_time()
        tasks = [
            TrackedTask(f"req_{n}", started=now, deadline=now + 60, context={"n": n}, due=now + 1)
            for n in range(20_000)
        ]
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            await anyio.lowlevel.checkpoint()
            ticks = 0
            added = await store.add_many(tasks)
            writing = False
        assert len(added) == 20_000
        assert ticks > 0


def _finals(outcomes: list[Outcome]) -> Counter[str]:
    """Final outcomes per id."""
    return Counter(o.request_id for o in outcomes if o.final)


async def test_a_poller_stopped_abruptly_resumes_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    mix = OutcomeMix(success=0.7, error=0.2, input_required=0.1)
    durations = Durations(median=1.0, sigma=0.6, minimum=0.2, maximum=2.5)
    before: list[Outcome] = []
    after: list[Outcome] = []
    async with simulator(seed=5, durations=durations, outcomes=mix) as sim:
        async with sim.client() as client:
            with anyio.CancelScope() as scope:
                async with Poller(client, store=SQLiteStore(path), **FAST) as poller:
                    ids = [
                        await poller.submit(
                            f"task {n}", deadline=30, context={"n": n}, options=CLOUD
                        )
                        for n in range(50)
                    ]
                    async for outcome in poller:
                        before.append(outcome)
                        if sum(o.final for o in before) >= 15:
                            scope.cancel()  # leave `async with` by cancellation, mid-run
            assert scope.cancelled_caught
        async with sim.client() as client:
            store = SQLiteStore(path)
            async with Poller(client, store=store, **FAST) as poller:
                assert len(store) > 0  # resumed from the file, with no user code
                with anyio.fail_after(20):
                    async for outcome in poller:
                        after.append(outcome)
        assert sim.stats.tasks_created == 50
    first, second = _finals(before), _finals(after)
    assert set(first + second) == set(ids)  # none lost
    assert max((first + second).values()) == 1  # none twice...
    # ...but the one the application held when the first poller stopped: not
    # acknowledged, so it comes again, flagged as a redelivery.
    again = [o for o in after if o.final and o.request_id in first]
    assert len(again) <= 1
    assert all(o.deliveries > 1 for o in again)
    contexts = {o.request_id: o.context for o in before + after if o.final}
    assert all(contexts[rid] == {"n": n} for n, rid in enumerate(ids))


_CHILD = textwrap.dedent(
    """
    import sys

    import anyio

    from async_dispatch import DispatchClient, Poller, SubmitOptions
    from async_dispatch.sqlite import SQLiteStore


    async def main(base_url: str, path: str, count: int) -> None:
        async with DispatchClient("sim-key", base_url) as client:
            poller = Poller(client, store=SQLiteStore(path), initial_interval=0.1, rate=200)
            async with poller:
                for n in range(count):
                    request_id = await poller.submit(
                        f"task {n}", deadline=30, context={"n": n},
                        options=SubmitOptions(execution_mode="cloud"),
                    )
                    print(request_id, flush=True)
                print("ready", flush=True)
                async for outcome in poller:
                    print("outcome", outcome.request_id, outcome.deliveries, flush=True)
                await anyio.sleep_forever()


    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


async def test_a_poller_killed_with_sigkill_resumes_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    # Long enough for the kill to land mid-run; what the child took first is counted too.
    config = SimulatorConfig(
        seed=9, durations=Durations(median=2.0, sigma=0.3, minimum=1.5, maximum=3.0)
    )
    count = 20
    outcomes: list[Outcome] = []
    async with serve(config) as running:
        command = [sys.executable, str(script), running.base_url, str(path), str(count)]
        async with await anyio.open_process(command, stderr=None) as child:
            assert child.stdout is not None
            lines = BufferedByteReceiveStream(child.stdout)
            ids: list[str] = []
            with anyio.fail_after(30):
                while (line := (await lines.receive_until(b"\n", 1024)).decode()) != "ready":
                    ids.append(line)
            # The file is the child's while it runs.
            with pytest.raises(UsageError, match="in use by another Poller"):
                async with SQLiteStore(path).attach(
                    _ignore, anyio.current_time, lambda: None, last_check_lead=1.0
                ):
                    pass  # pragma: no cover - refused
            os.kill(child.pid, signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
            rest = bytearray()
            with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
                while True:
                    rest += await lines.receive()
        taken = [
            line.split()[1:] for line in rest.decode().splitlines() if line.startswith("outcome ")
        ]
        async with (
            DispatchClient("sim-key", running.base_url) as client,
            Poller(client, store=SQLiteStore(path), **FAST) as poller,
        ):
            with anyio.fail_after(20):
                async for outcome in poller:
                    outcomes.append(outcome)
        assert running.simulator.stats.tasks_created == count
    # Every task has one final outcome: taken by the child before it died, or by the
    # resumed poller; only the one the child held unacknowledged comes twice, flagged.
    child_took = Counter(rid for rid, _ in taken)
    resumed = _finals(outcomes)
    assert set(child_took + resumed) == set(ids)
    assert max((child_took + resumed).values()) <= 2
    again = [o for o in outcomes if o.final and o.request_id in child_took]
    assert len(again) <= 1
    assert all(o.deliveries > 1 for o in again)
    contexts = {o.request_id: o.context for o in outcomes}
    assert all(contexts[rid] == {"n": n} for n, rid in enumerate(ids) if rid in contexts)


async def test_a_submit_named_by_submitting_keeps_its_context_through_a_crash(
    tmp_path: Path,
) -> None:
    """The intent of a submit in a `submitting` block carries its context: a crash
    mid-submit (here: the file copied as it is mid-submit, as a killed process leaves
    it) gives the SUBMIT_UNCERTAIN outcome that context at the next start."""
    path, crashed = tmp_path / "tasks.db", tmp_path / "crashed.db"
    store = SQLiteStore(path)
    async with (
        store.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0),
        store.submitting({"line": 7}),
    ):
        ticket = await store.begin_submit()
        for suffix in ("", "-wal"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                crashed.with_name(crashed.name + suffix).write_bytes(source.read_bytes())
        await store.end_submit(ticket, None)
    taken: list[Outcome] = []
    resumed = SQLiteStore(crashed)
    sink = lambda outcome, receipt: taken.append(outcome)  # noqa: E731
    async with resumed.attach(sink, anyio.current_time, lambda: None, last_check_lead=1.0):
        assert resumed.resumed_contexts == [{"line": 7}]
    assert [(o.kind.value, o.context) for o in taken] == [("submit-uncertain", {"line": 7})]
    # The original ended its submit as a failure that is certain (no exception in the
    # block): no trace is left.
    again: list[Outcome] = []
    sink = lambda outcome, receipt: again.append(outcome)  # noqa: E731
    async with SQLiteStore(path).attach(
        sink, anyio.current_time, lambda: None, last_check_lead=1.0
    ):
        pass
    assert again == []


async def test_a_submit_cancelled_in_submitting_is_uncertain_at_once(tmp_path: Path) -> None:
    taken: list[Outcome] = []
    store = SQLiteStore(tmp_path / "tasks.db")
    sink = lambda outcome, receipt: taken.append(outcome)  # noqa: E731
    async with store.attach(sink, anyio.current_time, lambda: None, last_check_lead=1.0):
        with anyio.CancelScope() as scope:
            async with store.submitting({"n": 1}):
                ticket = await store.begin_submit()
                scope.cancel()
                try:
                    await anyio.sleep_forever()  # the request, cut short
                finally:
                    await store.end_submit(ticket, None)
        assert [(o.kind.value, o.context) for o in taken] == [("submit-uncertain", {"n": 1})]
        assert "cancelled" in str(taken[0].error)
        assert await store.idle()
    # Delivered and not acknowledged: the file has it, with its context, for a restart.
    assert SQLiteStore(tmp_path / "tasks.db").resumed_contexts == []
    resumed = SQLiteStore(tmp_path / "tasks.db")
    async with resumed.attach(_ignore, anyio.current_time, lambda: None, last_check_lead=1.0):
        assert resumed.resumed_contexts == [{"n": 1}]


async def test_submitting_refuses_a_context_the_file_cannot_hold(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "tasks.db")
    with pytest.raises(UsageError, match="JSON-serialisable"):
        async with store.submitting({"when": object()}):
            pass  # pragma: no cover - refused
