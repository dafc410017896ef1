"""The reference tables of the documentation, read from the code at build time.

Every log event, metric and CLI exit code the library has is listed from the code itself,
so a new one appears in the documentation the day it is written, and one that is removed
disappears. What the code cannot say (what an event means to you, what to do about it)
is in `EVENT_NOTES`: a new log event without a note fails the build and
tests/test_docs_reference.py, which is how it gets one.

- Log events: the calls ``logger.<level>("event", field=...)`` in ``src/async_dispatch``,
  found by parsing the source (not by running it), with their level, fields and where
  they are emitted.
- Metrics: the Prometheus hook's, read from a registry of its own after building it; the
  OpenTelemetry hook's instruments, recorded as it creates them.
- Exit codes: the CLI's ``ExitCode`` enum, with the ``#:`` comment above each member.

Used by MkDocs as a hook (``hooks:`` in mkdocs.yml): a page holding
``<!-- reference:NAME -->`` gets the table NAME in its place.
"""

from __future__ import annotations

import ast
import enum
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
SOURCE: Final = ROOT / "src" / "async_dispatch"
LEVELS: Final = ("debug", "info", "warning", "error", "exception")
MARKER: Final = re.compile(r"<!-- reference:(?P<name>[a-z-]+) -->")

#: What each log event means to the person reading the log, and what to do about it.
EVENT_NOTES: Final[dict[str, str]] = {
    "rate_limited": "The service answered 429 (or 408/425): the whole key pauses for "
    "`seconds`. Once per pause. Frequent ones: lower `rate` to the key's limit.",
    "webhook_refused": "A webhook delivery was refused (bad secret, bad JSON, too large, "
    "unknown request...). `reason` says which; a forged or misrouted delivery is expected "
    "to show up here.",
    "task_retrying": "An attempt of a task ended in `kind` (`error`, or `failed` when the "
    "policy names it) and the poller's `ResubmitPolicy` resubmits it in `wait` seconds, "
    "within the poller's budget. The iterator yields only the task's final outcome, with "
    "every attempt's id in `Outcome.attempts`.",
    "resubmit_predicate_failed": "`ResubmitPolicy.when` raised (`error` is the exception's "
    "type): the attempt is not resubmitted, and its outcome is final. Fix the predicate.",
    "resubmission_not_tracked": "A resubmission was accepted (`request_id`) but the task "
    "was no longer this replica's to swap (its claim ran out while submitting, and "
    "another replica ended it SUBMIT_UNCERTAIN). The new attempt runs at the service "
    "untracked: track it by hand if its result matters.",
    "checked": "One status check and what it learned.",
    "submitted": "One submit and its result.",
    "resolved": "The poller yielded an outcome.",
    "status_read": "One status request answered (the request itself; a check may retry).",
    "retrying": "A transient failure (5xx, transport error, garbled body) is retried after "
    "`delay` seconds.",
    "budget_exhausted": "Checks run later than the cadence allows: the tracked load needs "
    "more budget than the key has. Said once per poller, with advice that depends on "
    "why: after 429s, lower `rate` to what the key allows (raising it makes things worse); "
    "otherwise raise `rate` if the key allows, or track fewer tasks. Tasks the budget "
    "never reaches end `TIMED_OUT` with `timeout_cause` `never-checked`.",
    "interrupted": "Ctrl-C (KeyboardInterrupt) stopped a `SyncPoller`: `open` tasks had "
    "no final outcome yet (`request_ids` names the first 20; the `Interrupted` exception "
    "raised next carries all of them and a snapshot). They go on at the service: track "
    "them again to collect their outcomes. `submit_cut_off`: a submit was cut off and may "
    "have created a task whose id is unknown.",
    "api_key_refused": "The service refused the key (401/403). The poller stops checking "
    "and raises the error from its iterator. Fix the key or its permissions.",
    "coordination_unavailable": "A shared limiter or store (Redis, in fleet mode) is "
    "unreachable for one job (`job`: the poller's workers and reaper, or one of the "
    "store's own background jobs). It waits and retries; nothing is lost. Said once per "
    "outage and job.",
    "coordination_recovered": "That job reaches the shared limiter or store again after an "
    "outage; `failures` counts the failed attempts.",
    "ack_failed": "Fleet mode: an outcome could not be acknowledged in Redis; the store "
    "keeps it (no other replica gets it) and acknowledges it once Redis answers.",
    "outcome_readers_forgotten": "Fleet mode: replicas that stopped reading outcomes "
    "(dead, or gone) were removed from the outcome stream's group.",
    "outcome_taken_over": "Fleet mode: an outcome another replica read but never "
    "acknowledged (within `outcome_idle`) is delivered here instead; `deliveries` counts "
    "its deliveries so far.",
    "outcome_unreadable": "Fleet mode: an entry of the outcome stream could not be "
    "decoded here and is left for another replica (perhaps a newer version). A sign of "
    "a version mismatch between replicas.",
    "outcome_integrity_failed": "Fleet mode with a fleet secret: an entry of the outcome "
    "stream fails the secret's check (no MAC, a MAC of other text, a TIMED_OUT or "
    "SUBMIT_UNCERTAIN whose signed pieces do not hold): written by something without the "
    "secret. Not delivered; moved to the dead-letter stream with the `reason`. Find who "
    "writes to the fleet's keys.",
    "task_record_integrity_failed": "Fleet mode with a fleet secret: a task's record (its "
    "context, trace context or spec) was changed in Redis by something without the secret. "
    "The task ends FAILED with `FleetIntegrityError` and no context, once.",
    "parked_webhook_integrity_failed": "Fleet mode with a fleet secret: a webhook reading "
    "held in Redis for a submit in flight was not written by a replica. Ignored: the task "
    "is tracked and checked as usual.",
    "outcome_dead_lettered": "Fleet mode: an outcome no replica could read after three "
    "deliveries, or whose `on_outcome` handler failed at each of three deliveries, or that "
    "failed the fleet secret's check, moved to the fleet's dead-letter stream (`stream`, "
    "with the `reason`), so that it is kept "
    "and finite iterators can end. Inspect it with `XRANGE`; `async-dispatch fleet` "
    "counts them.",
    "fleet_state_lost": "Fleet mode: Redis lost the fleet's state (a restart without "
    "persistence, `FLUSHDB`, eviction): its epoch marker is gone. The iterator raises "
    "`FleetStateLost` instead of ending as if every task had finished. Give Redis "
    "persistence and `maxmemory-policy noeviction`, then track the tasks again.",
    "redis_may_evict": "Fleet mode: the Redis server's `maxmemory-policy` can evict fleet "
    "keys (said at attach). Use `noeviction` for the fleet's Redis.",
    "redis_eviction_policy_unknown": "Fleet mode: the store could not read the server's "
    "`maxmemory-policy` (the ACL user may not run `CONFIG`); make sure it is `noeviction`.",
    "sqlite_store_write_failed": "A `SQLiteStore` could not write its file (disk full, "
    "permissions): the store stops taking changes and raises; the file keeps everything "
    "up to the failed write. Fix the cause and start again.",
    "sqlite_context_not_kept": "A `SQLiteStore` could not write a task's context as JSON "
    "where it must not refuse (a task restored or handed over): the task is kept, its "
    "context is not.",
    "webhook_error": "The webhook receiver failed on a delivery (a bug): answered 500 so "
    "that the service retries. Only the error's type is logged, never the payload.",
    "dispatch_stopped": "A `DispatchRuntime` stopped consuming outcomes because the key "
    "was refused; `runtime.error` holds the error and webhooks are answered 503.",
    "outcome_handler_failed": "Your `on_outcome` handler raised; logged with its "
    "traceback and the outcome's `deliveries`. The outcome is not acknowledged: it is "
    "delivered again (three deliveries at most), and the other outcomes go on.",
    "submit_tracked_late": "Fleet mode: a submit the service accepted while the task "
    "store was unreachable (`submit()` raised `SubmitNotTrackedError` with this "
    "`request_id`) is tracked now that the store answers; its outcome comes as usual.",
    "submit_not_tracked": "Fleet mode: the poller closed before the store answered again, "
    "so the task of this `request_id`, accepted by the service, is tracked by nobody: "
    "track it with `Poller.track()` from another process (its intent becomes "
    "SUBMIT_UNCERTAIN meanwhile).",
    "outcome_taken_over_elsewhere": "Fleet mode: this replica stalled (a stop, a long "
    "pause, a blocked loop) past `outcome_idle` with an outcome queued in memory, and "
    "another replica took it over meanwhile: it is dropped here, and delivered there.",
    "outcome_redelivered": "Fleet mode: an outcome this replica gave back after its "
    "`on_outcome` handler failed is delivered again (`deliveries` counts this one).",
    "outcome_handler_gave_up": "Your `on_outcome` handler failed at three deliveries of "
    "one outcome, with a store that keeps outcomes in this process only (no dead-letter "
    "place): the outcome is dropped; this line, with its `request_id`, is its record.",
    "outcome_redelivery_deferred": "Fleet mode: an `on_outcome` handler failed while Redis "
    "was unreachable; the outcome, no longer renewed, is delivered again once it has "
    "been idle for the store's `outcome_idle`.",
    "instrumentation_hook_failed": "A hook raised on an event; logged once per hook, and "
    "the hook keeps being called.",
}


# -- log events ----------------------------------------------------------------------------


def _calls(tree: ast.AST) -> Iterator[tuple[ast.Call, str]]:
    """Every ``<name>.<level>("event", ...)`` call, with the function it is in."""
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, where = stack.pop()
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{where}.{child.name}" if where else child.name
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in LEVELS
                and isinstance(child.func.value, ast.Name)
                and "log" in child.func.value.id
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and isinstance(child.args[0].value, str)
            ):
                yield child, where
            stack.append((child, inner))


def log_events(source: Path = SOURCE) -> list[dict[str, Any]]:
    """Every log event of the library: name, level, fields, and where it is emitted."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(source.rglob("*.py")):
        module = ".".join(("async_dispatch", *path.relative_to(source).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        for call, where in _calls(ast.parse(path.read_text(), str(path))):
            assert isinstance(call.func, ast.Attribute)
            assert isinstance(call.args[0], ast.Constant)
            name = str(call.args[0].value)
            level = "error" if call.func.attr == "exception" else call.func.attr
            fields = [k.arg for k in call.keywords if k.arg is not None and k.arg != "exc_info"]
            entry = found.setdefault(name, {"event": name, "levels": [], "fields": [], "where": []})
            entry["levels"] += [level] if level not in entry["levels"] else []
            entry["fields"] += [f for f in fields if f not in entry["fields"]]
            entry["where"].append(f"{module.removeprefix('async_dispatch.')}: {where}")
    order = {level: n for n, level in enumerate(reversed(LEVELS))}
    return sorted(found.values(), key=lambda e: (min(order[lv] for lv in e["levels"]), e["event"]))


def events_table() -> str:
    rows = ["| event | level | fields | meaning | emitted in |", "|---|---|---|---|---|"]
    missing = []
    for event in log_events():
        note = EVENT_NOTES.get(event["event"])
        if note is None:
            missing.append(event["event"])
            continue
        fields = ", ".join(f"`{f}`" for f in event["fields"]) or "-"
        where = "<br>".join(f"`{w}`" for w in event["where"])
        rows.append(
            f"| `{event['event']}` | {', '.join(event['levels'])} | {fields} | {note} | {where} |"
        )
    if missing:
        raise LookupError(
            f"log events without a note: {', '.join(missing)}: describe each in "
            "EVENT_NOTES of docs/_reference.py"
        )
    return "\n".join(rows)


# -- metrics --------------------------------------------------------------------------------


def prometheus_metrics() -> list[dict[str, Any]]:
    """The Prometheus hook's metrics, from a registry that holds nothing else."""
    from prometheus_client import CollectorRegistry

    from async_dispatch.instrumentation.prometheus import PrometheusHook

    registry = CollectorRegistry()
    PrometheusHook(registry=registry)
    metrics = []
    for family in registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        labels = sorted(
            {
                label
                for sample in family.samples
                for label in sample.labels
                if label not in ("le", "quantile")
            }
        )
        metrics.append(
            {
                "name": family.name + suffix,
                "type": family.type,
                "labels": labels,
                "help": family.documentation,
            }
        )
    return sorted(metrics, key=lambda m: str(m["name"]))


class _Instrument:
    """An instrument that takes every measurement and keeps none."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        return None

    def record(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Recorder:
    """A meter provider that records the instruments created on it, and nothing else."""

    def __init__(self) -> None:
        self.instruments: list[dict[str, Any]] = []

    def get_meter(self, *args: Any, **kwargs: Any) -> _Recorder:
        return self

    def __getattr__(self, attribute: str) -> Callable[..., object]:
        if not attribute.startswith("create_"):
            raise AttributeError(attribute)
        kind = attribute.removeprefix("create_")

        def create(name: str, unit: str = "", description: str = "", **_: Any) -> object:
            self.instruments.append(
                {"name": name, "kind": kind, "unit": unit, "description": description}
            )
            return _Instrument()

        return create


def otel_instruments() -> list[dict[str, Any]]:
    from async_dispatch.instrumentation.otel import OpenTelemetryHook

    recorder = _Recorder()
    OpenTelemetryHook(meter_provider=recorder)  # type: ignore[arg-type]
    return sorted(recorder.instruments, key=lambda i: str(i["name"]))


def prometheus_table() -> str:
    rows = ["| metric | type | labels | what it counts |", "|---|---|---|---|"]
    for m in prometheus_metrics():
        labels = ", ".join(f"`{label}`" for label in m["labels"]) or "-"
        rows.append(f"| `{m['name']}` | {m['type']} | {labels} | {m['help']} |")
    return "\n".join(rows)


def otel_table() -> str:
    rows = ["| instrument | kind | unit | what it counts |", "|---|---|---|---|"]
    for i in otel_instruments():
        kind = i["kind"].replace("_", " ")
        rows.append(f"| `{i['name']}` | {kind} | `{i['unit']}` | {i['description']} |")
    return "\n".join(rows)


# -- exit codes -----------------------------------------------------------------------------


def exit_codes() -> list[dict[str, Any]]:
    """The CLI's exit codes, each with the ``#:`` comment written above it."""
    from async_dispatch._cli import ExitCode

    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(ExitCode).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped.removeprefix("#:").strip())
            continue
        match = re.match(r"([A-Z_]+)\s*=", stripped)
        if match:
            comments[match[1]] = " ".join(pending)
        pending = []
    members: list[enum.IntEnum] = list(ExitCode)
    return [
        {
            "code": int(m),
            "name": m.name,
            "meaning": comments.get(m.name) or _DEFAULT.get(m.name, ""),
        }
        for m in members
    ]


_DEFAULT: Final = {
    "OK": "The command did what was asked.",
    "INTERRUPTED": "Interrupted (Ctrl-C, SIGINT): 128 + the signal's number, as shells do.",
}


def exit_codes_table() -> str:
    rows = ["| code | name | meaning |", "|---|---|---|"]
    rows += [f"| {e['code']} | `{e['name']}` | {e['meaning']} |" for e in exit_codes()]
    return "\n".join(rows)


TABLES: Final[dict[str, Callable[[], str]]] = {
    "log-events": events_table,
    "prometheus-metrics": prometheus_table,
    "otel-metrics": otel_table,
    "exit-codes": exit_codes_table,
}


def expand(markdown: str) -> str:
    """`markdown` with every ``<!-- reference:NAME -->`` replaced by its table."""

    def table(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise LookupError(f"unknown reference table {name!r} (known: {', '.join(TABLES)})")
        return TABLES[name]()

    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """The MkDocs hook."""
    return expand(markdown)
