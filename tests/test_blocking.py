"""`SyncPoller`: the blocking poller, on a real portal thread, against the simulator.

Each test runs the simulator and the poller on one anyio blocking portal (asyncio and
trio: the ``anyio_backend`` fixture), and calls the poller from the test's own thread,
as a script would. Ctrl-C is a real SIGINT sent to the main thread once it is blocked
inside the poller (found from its stack, not guessed from a sleep), so the interrupted
call is always the one meant.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from async_dispatch import (
    DispatchClient,
    Interrupted,
    NotOpenError,
    OutcomeKind,
    Poller,
    PollerOptions,
    SyncPoller,
    UsageError,
)
from async_dispatch.testing import Durations, OutcomeMix, Simulator, SimulatorConfig, serve

CONFIG = SimulatorConfig(
    seed=11, durations=Durations.fixed(0.05), outcomes=OutcomeMix.only("success")
)
FAST: PollerOptions = {"rate": 200, "burst": 50, "initial_interval": 0.02, "max_interval": 0.05}
#: A task that outlives every test: only an interrupt or a deadline ends the wait for it.
NEVER_ENDS: dict[str, Any] = {"simulate": {"outcome": "success", "duration": 3600}}


def backend_name(anyio_backend: object) -> str:
    return anyio_backend if isinstance(anyio_backend, str) else str(anyio_backend[0])  # type: ignore[index]


@pytest.fixture
def portal(anyio_backend: object) -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal(backend_name(anyio_backend)) as portal:
        yield portal


@pytest.fixture
def sim(portal: anyio.from_thread.BlockingPortal) -> Iterator[Simulator]:
    with portal.wrap_async_context_manager(Simulator(CONFIG)) as sim:
        yield sim


@pytest.fixture
def poller(portal: anyio.from_thread.BlockingPortal, sim: Simulator) -> Iterator[SyncPoller]:
    with SyncPoller(sim.client(), portal=portal, **FAST) as poller:
        yield poller


def is_open(client: DispatchClient) -> bool:
    return client.is_open  # a function: mypy would narrow the property across calls


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "portal" in t.name]


# -- what it does -----------------------------------------------------------------------


def test_submits_many_and_yields_each_outcome_once_in_a_plain_for_loop(
    poller: SyncPoller, sim: Simulator
) -> None:
    ids = [poller.submit(f"/Operator task {n}", context=n) for n in range(30)]
    seen = {outcome.request_id: outcome for outcome in poller}
    assert set(seen) == set(ids)
    assert {o.kind for o in seen.values()} == {OutcomeKind.SUCCESS}
    assert sorted(o.context for o in seen.values()) == list(range(30))
    assert sim.stats.tasks_created == 30
    assert len(poller) == 0


def test_wait_for_takes_one_outcome_and_the_loop_yields_only_the_others(
    poller: SyncPoller,
) -> None:
    first, *others = [poller.submit(f"t{n}") for n in range(5)]
    outcome = poller.wait_for(first)
    assert outcome.request_id == first
    assert outcome.kind is OutcomeKind.SUCCESS
    assert {o.request_id for o in poller} == set(others)


def test_run_submits_and_blocks_until_the_final_outcome(poller: SyncPoller) -> None:
    outcome = poller.run("/Operator one", context="ctx", time_zone="Europe/Lisbon")
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.context == "ctx"
    assert outcome.status is not None
    assert outcome.status.text
    assert len(poller) == 0  # nothing left behind


def test_run_from_many_threads_shares_the_one_poller(poller: SyncPoller, sim: Simulator) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(poller.run, [f"p{n}" for n in range(16)]))
    assert {o.kind for o in outcomes} == {OutcomeKind.SUCCESS}
    assert len({o.request_id for o in outcomes}) == 16
    assert sim.stats.tasks_created == 16
    assert poller.stats.submits_sent == 16


def test_track_forget_and_snapshot_restore(poller: SyncPoller, sim: Simulator) -> None:
    client_ids = [poller.submit("a", extra=NEVER_ENDS) for _ in range(2)]
    assert all(request_id in poller for request_id in client_ids)
    snapshot = poller.snapshot()
    assert {entry["request_id"] for entry in snapshot} == set(client_ids)
    assert poller.forget(client_ids[0]) is True
    assert client_ids[0] not in poller
    assert poller.restore(snapshot) == 1  # the forgotten one, tracked again
    assert poller.forget(client_ids[0])
    assert poller.forget(client_ids[1])
    poller.track("req_bad id")  # an id that cannot be valid: FAILED, through the loop
    poller.track_many([])
    assert [o.kind for o in poller] == [OutcomeKind.FAILED]


def test_every_option_reaches_the_async_poller(sim: Simulator, portal: Any) -> None:
    options: PollerOptions = {
        "rate": 3,
        "burst": 2,
        "deadline": 42,
        "initial_interval": 0.5,
        "max_interval": 7,
        "max_in_flight": 3,
        "stop_on_input_required": True,
        "seed": 5,
    }
    with SyncPoller(sim.client(), portal=portal, **options) as p:
        assert repr(p.poller.bucket) == "TokenBucket(rate=3, burst=2)"
        assert p.poller.default_deadline == 42
        assert (p.poller.cadence.initial_interval, p.poller.cadence.max_interval) == (0.5, 7)
        assert p.poller.max_in_flight == 3
        assert p.poller.stop_on_input_required is True
    with pytest.raises(UsageError):
        SyncPoller(sim.client(), portal=portal, max_in_flight=0)


def test_submit_fields_are_checked_by_the_async_core_before_anything_is_sent(
    poller: SyncPoller, sim: Simulator
) -> None:
    with pytest.raises(UsageError, match="reasoning_mode"):
        poller.submit("x", reasoning_mode="extreme")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unexpected submit option"):
        poller.submit("x", no_such_option=1)  # type: ignore[call-arg]
    assert sim.stats.tasks_created == 0


def test_poller_options_mirror_the_poller_keywords_exactly() -> None:
    """A new `Poller` argument fails here until `PollerOptions` has it too (one line)."""
    params = inspect.signature(Poller.__init__).parameters
    keywords = [name for name, p in params.items() if p.kind is p.KEYWORD_ONLY]
    hints = typing.get_type_hints(Poller.__init__)
    options = typing.get_type_hints(PollerOptions)
    assert list(options) == keywords
    assert options == {name: hints[name] for name in keywords}
    assert PollerOptions.__total__ is False


@pytest.mark.parametrize(
    "name",
    ["submit", "run", "track", "track_many", "wait_for", "forget", "restore", "deliver", "results"],
)
def test_methods_take_the_async_methods_arguments(name: str) -> None:
    def shape(func: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
        sig = inspect.signature(func)
        return [(p.name, p.kind, p.default) for p in sig.parameters.values()]

    assert shape(getattr(SyncPoller, name)) == shape(getattr(Poller, name))


# -- lifecycle --------------------------------------------------------------------------


def test_leaving_the_block_closes_client_loop_and_thread(anyio_backend: object) -> None:
    """Its own portal, a client from the environment's kind, the simulator over TCP."""
    before = portal_threads()
    with (
        anyio.from_thread.start_blocking_portal(backend_name(anyio_backend)) as server_portal,
        server_portal.wrap_async_context_manager(serve(CONFIG)) as running,
    ):
        client = DispatchClient("sim-key", running.base_url, execution_mode="cloud")
        with SyncPoller(client, backend=backend_name(anyio_backend), **FAST) as poller:
            assert poller.run("one").kind is OutcomeKind.SUCCESS
            # Ctrl-C is left to the main thread: the loop's thread blocks SIGINT.
            mask = poller.portal.call(signal.pthread_sigmask, signal.SIG_BLOCK, set())
            assert signal.SIGINT in mask
            assert is_open(client)
            assert len(portal_threads()) == len(before) + 2  # the server's, the poller's
        assert not is_open(client)
        assert len(portal_threads()) == len(before) + 1
        with pytest.raises(NotOpenError):
            poller.submit("after")
        poller.close()  # idempotent


def test_usable_without_with_until_closed(sim: Simulator, portal: Any) -> None:
    poller = SyncPoller(sim.client(), portal=portal, **FAST)
    assert poller.run("lazy").kind is OutcomeKind.SUCCESS
    poller.close()
    with pytest.raises(NotOpenError):
        poller.run("again")


@pytest.mark.parametrize("own_portal", [True, False], ids=["own-portal", "given-portal"])
def test_closing_ends_calls_other_threads_wait_in(
    sim: Simulator, portal: Any, anyio_backend: object, own_portal: bool
) -> None:
    """A thread blocked in `wait_for` must not hold the close (or the loop) forever."""
    if own_portal:  # its requests run the in-process app on its own loop: enough here
        poller = SyncPoller(sim.client(), backend=backend_name(anyio_backend), **FAST)
    else:
        poller = SyncPoller(sim.client(), portal=portal, **FAST)
    request_id = poller.submit("long", extra=NEVER_ENDS)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(poller.wait_for, request_id)
        give_up = time.monotonic() + 10
        while not poller._running and time.monotonic() < give_up:
            time.sleep(0.01)
        assert poller._running, "the other thread never started waiting"
        poller.close()
        with pytest.raises(NotOpenError, match="closed while this call waited"):
            waiting.result(timeout=30)


def test_an_exception_in_the_block_comes_out_as_itself(sim: Simulator, portal: Any) -> None:
    with pytest.raises(ValueError, match="mine"), SyncPoller(sim.client(), portal=portal):
        raise ValueError("mine")


# -- a loop already running in this thread (a notebook) ------------------------------------


def test_works_inside_a_running_asyncio_loop(sim: Simulator, portal: Any) -> None:
    async def notebook_cell() -> list[OutcomeKind]:
        asyncio.get_running_loop()  # a loop runs in this very thread
        with SyncPoller(sim.client(), portal=portal, **FAST) as poller:
            poller.submit("a")
            first = poller.run("b")
            return [first.kind, *(o.kind for o in poller)]

    assert asyncio.run(notebook_cell()) == [OutcomeKind.SUCCESS] * 2


def test_works_from_a_loop_callback(sim: Simulator, portal: Any) -> None:
    async def main() -> OutcomeKind:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[OutcomeKind] = loop.create_future()

        def callback() -> None:  # what an IPython event hook or a GUI timer runs
            with SyncPoller(sim.client(), portal=portal, **FAST) as poller:
                done.set_result(poller.run("from a callback").kind)

        loop.call_soon(callback)
        return await asyncio.wait_for(done, 30)

    assert asyncio.run(main()) is OutcomeKind.SUCCESS


# -- Ctrl-C -----------------------------------------------------------------------------


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (Python's default), whatever ran before."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_once_blocked_in(method: str, *, to_process: bool = False) -> threading.Thread:
    """Send SIGINT to the main thread (or, as a terminal's Ctrl-C does, to the whole
    process) once the main thread waits for the loop inside `method`."""
    main = threading.main_thread()
    assert threading.current_thread() is main
    assert main.ident is not None
    ident = main.ident

    def blocked() -> bool:
        frame = sys._current_frames().get(ident)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        return names[:3] == ["wait", "result", "_call"] and method in names

    def watch() -> None:
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            if blocked():
                time.sleep(0.05)  # it is inside the lock's wait by now, or about to be
                if to_process:
                    os.kill(os.getpid(), signal.SIGINT)
                else:
                    signal.pthread_kill(ident, signal.SIGINT)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, name="interrupter", daemon=True)
    watcher.start()
    return watcher


@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_in_wait_for_stops_and_names_the_open_tasks(
    sim: Simulator, portal: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="async_dispatch")
    poller = SyncPoller(sim.client(), portal=portal, **FAST)
    with poller:
        done = poller.run("quick")
        ids = [poller.submit(f"long {n}", extra=NEVER_ENDS) for n in range(3)]
        watcher = interrupt_once_blocked_in("wait_for")
        with pytest.raises(Interrupted) as caught:
            poller.wait_for(ids[0])
        watcher.join()
    interrupted = caught.value
    assert isinstance(interrupted, KeyboardInterrupt)
    assert interrupted.request_ids == tuple(ids)
    assert done.request_id not in interrupted.request_ids
    assert interrupted.snapshot is not None
    assert {e["request_id"] for e in interrupted.snapshot} == set(ids)
    assert not interrupted.submit_cut_off
    assert str(len(ids)) in str(interrupted)
    assert ids[0] in str(interrupted)
    with pytest.raises(NotOpenError):
        poller.submit("after")
    events = [r for r in caplog.records if r.getMessage().startswith("interrupted")]
    assert len(events) == 1


def for_loop(poller: SyncPoller) -> None:
    for _ in poller:
        pytest.fail("no task ends")


@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_in_the_for_loop_stops_cleanly(anyio_backend: object) -> None:
    """With the poller's own loop thread: nothing of it is left running afterwards."""
    before = portal_threads()
    with (
        anyio.from_thread.start_blocking_portal(backend_name(anyio_backend)) as server_portal,
        server_portal.wrap_async_context_manager(serve(CONFIG)) as running,
    ):
        client = DispatchClient("sim-key", running.base_url, execution_mode="cloud")
        poller = SyncPoller(client, backend=backend_name(anyio_backend), **FAST)
        ids = [poller.submit(f"long {n}", extra=NEVER_ENDS) for n in range(4)]
        watcher = interrupt_once_blocked_in("results", to_process=True)
        with pytest.raises(Interrupted) as caught, poller:
            for_loop(poller)
        watcher.join()
        assert caught.value.request_ids == tuple(ids)
        assert not is_open(client)
        assert len(portal_threads()) == len(before) + 1  # the server's only


@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_in_the_callers_own_code_is_reported_on_the_way_out(
    poller: SyncPoller,
) -> None:
    request_id = poller.submit("long", extra=NEVER_ENDS)
    with pytest.raises(Interrupted) as caught, poller:
        raise KeyboardInterrupt
    assert caught.value.request_ids == (request_id,)
    assert isinstance(caught.value.__cause__, KeyboardInterrupt)


SCRIPT = """
import sys
from async_dispatch import DispatchClient, SyncPoller

with SyncPoller(DispatchClient(execution_mode="cloud"), rate=50, initial_interval=0.05) as poller:
    ids = [poller.submit(f"long {n}", extra={"simulate": {"duration": 3600}}) for n in range(3)]
    print(" ".join(ids), flush=True)
    poller.wait_for(ids[0])
"""


@pytest.mark.asyncio_only  # the script's own loop is asyncio; the server's does not matter
def test_a_real_ctrl_c_ends_a_script_as_ctrl_c_does(tmp_path: Path, anyio_backend: object) -> None:
    """A script in a process of its own gets SIGINT, as a terminal sends it: it ends at
    once, closed, its traceback naming the tasks still open."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    with (
        anyio.from_thread.start_blocking_portal() as server_portal,
        server_portal.wrap_async_context_manager(serve(CONFIG)) as running,
    ):
        env = {**os.environ, "DISPATCH_API_KEY": "sim-key", "DISPATCH_BASE_URL": running.base_url}
        process = subprocess.Popen(
            [sys.executable, str(script)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            ids = process.stdout.readline().split()
            assert len(ids) == 3, process.stderr.read() if process.stderr else ""
            time.sleep(0.5)  # into wait_for by now (earlier, `with` reports the same)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
    # An uncaught exception's status: only KeyboardInterrupt itself dies by the signal.
    assert process.returncode == 1, stderr
    assert "async_dispatch._blocking.Interrupted: interrupted with 3 task(s) still open" in stderr
    assert all(request_id in stderr for request_id in ids)
    assert "sim-key" not in stderr
