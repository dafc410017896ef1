"""The SQLite file of a `SQLiteStore`: its schema, its lock, and the writes it takes.

Everything here blocks, so it runs in the store's worker thread, one call at a time
(never on the event loop). Times in the file are wall-clock seconds since the Unix epoch
(`time.time()`): a loop clock means nothing after a reboot.

Tables::

    tasks     one row per tracked task: its record (`TrackedTask`) as last written, with
              its trace context, its `TaskSpec` (JSON, never a secret) and resubmission
              phase
    outcomes  outcomes handed to the application and not acknowledged yet, in order
    finished  ids that got their final outcome, so a late re-track cannot give a second
    intents   submits in flight: a row left at the next open is a crashed submit (with
              the context `SQLiteStore.submitting` gave it, if any)

One process at a time: the connection runs in SQLite's exclusive locking mode and takes
the lock when it opens, and keeps it until it closes (the operating system releases it
when a process dies, even by ``kill -9``). A second opener is refused at once.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import attrs

from .._errors import SubmitUncertainError, UsageError
from .._outcome import Outcome, OutcomeKind
from .._store import RECENTLY_FINISHED
from ._codec import encode_outcome

__all__ = ["Loaded", "StoreFile", "Write", "submit_uncertain"]

#: Bumped when the schema changes incompatibly; a file of another version is refused.
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    request_id TEXT PRIMARY KEY,
    context TEXT,
    started REAL NOT NULL,
    deadline REAL NOT NULL,
    due REAL,
    polls INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_status TEXT,
    last_input TEXT,
    trace TEXT,
    spec TEXT,
    phase TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS finished (request_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS intents (id TEXT PRIMARY KEY, started REAL NOT NULL, context TEXT);
"""

#: One statement and the rows it runs for (``executemany``), all in one transaction.
Write = tuple[str, Sequence[Sequence[Any]]]

INSERT_TASK: Final = (
    "INSERT OR REPLACE INTO tasks (request_id, context, started, deadline, due, polls, "
    "errors, last_error, last_status, last_input, trace, spec, phase) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_TASK: Final = (
    "UPDATE tasks SET due = ?, polls = ?, errors = ?, last_error = ?, last_status = ?, "
    "last_input = ?, phase = ? WHERE request_id = ?"
)
#: Columns added to `tasks` after version 1 was first written: added when missing (a
#: version that does not know them reads and writes the file as before).
_ADDED_COLUMNS: Final = (
    ("trace", "TEXT"),
    ("spec", "TEXT"),
    ("phase", "TEXT NOT NULL DEFAULT ''"),
)
DELETE_TASK: Final = "DELETE FROM tasks WHERE request_id = ?"
INSERT_FINISHED: Final = "INSERT OR REPLACE INTO finished (request_id, at) VALUES (?, ?)"
INSERT_OUTCOME: Final = "INSERT INTO outcomes (id, body) VALUES (?, ?)"
DELETE_OUTCOME: Final = "DELETE FROM outcomes WHERE id = ?"
INSERT_INTENT: Final = "INSERT INTO intents (id, started, context) VALUES (?, ?, ?)"
DELETE_INTENT: Final = "DELETE FROM intents WHERE id = ?"


@attrs.frozen(kw_only=True)
class Loaded:
    """What a file holds when it is opened."""

    #: Rows of `tasks`, as stored (wall-clock times).
    tasks: list[tuple[Any, ...]]
    #: Unacknowledged outcomes in the order they were made: (id, body, deliveries), the
    #: delivery count already raised for this opening.
    outcomes: list[tuple[int, str, int]]
    #: The most recently finished ids.
    finished: set[str]


class StoreFile:
    """One open SQLite file, held exclusively. Blocking: call from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def open(self) -> Loaded:
        """Lock the file, create or check its schema, turn crashed submits into outcomes,
        and read everything there is to resume."""
        try:
            # timeout=0: a file held by another poller is refused now, not in 5 seconds.
            connection = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise UsageError(f"cannot open the SQLite store {str(self.path)!r}: {exc}") from exc
        try:
            connection.execute("PRAGMA locking_mode = EXCLUSIVE")
            connection.execute("PRAGMA journal_mode = WAL")
            # WAL with synchronous=NORMAL: a commit is durable against a process crash at
            # once, and against a power cut from the next checkpoint; no fsync per write.
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as exc:
            connection.close()
            if "locked" in str(exc):
                raise UsageError(
                    f"the SQLite store {str(self.path)!r} is in use by another Poller "
                    "(one process at a time): stop it first, or give this one its own file"
                ) from exc
            raise UsageError(f"cannot open the SQLite store {str(self.path)!r}: {exc}") from exc
        self._connection = connection
        try:
            loaded = self._load(connection)
            connection.execute("COMMIT")
        except BaseException:
            self.close()
            raise
        return loaded

    def _load(self, connection: sqlite3.Connection) -> Loaded:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        # A file written before tasks kept these: each column is optional (NULL or '':
        # none), so the file stays readable by those versions too.
        present = {info[1] for info in connection.execute("PRAGMA table_info(tasks)")}
        for column, declaration in _ADDED_COLUMNS:
            if column not in present:
                connection.execute(f"ALTER TABLE tasks ADD COLUMN {column} {declaration}")
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif row[0] != str(SCHEMA_VERSION):
            raise UsageError(
                f"the SQLite store {str(self.path)!r} has schema version {row[0]}; this "
                f"version of async_dispatch reads version {SCHEMA_VERSION}"
            )
        columns = {row[1] for row in connection.execute("PRAGMA table_info(intents)")}
        if "context" not in columns:  # a file from before intents had a context: additive
            connection.execute("ALTER TABLE intents ADD COLUMN context TEXT")
        now = time.time()
        next_id = connection.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM outcomes").fetchone()
        outcome_id = int(next_id[0])
        intents = connection.execute("SELECT id, started, context FROM intents").fetchall()
        for intent_id, started, context in intents:
            label = json.loads(context) if context is not None else None
            body = encode_outcome(submit_uncertain(float(started), now, context=label))
            # Not handed over yet: its first delivery is the one below.
            connection.execute(
                "INSERT INTO outcomes (id, body, deliveries) VALUES (?, ?, 0)", (outcome_id, body)
            )
            connection.execute(DELETE_INTENT, (intent_id,))
            outcome_id += 1
        connection.execute("UPDATE outcomes SET deliveries = deliveries + 1")
        outcomes = connection.execute(
            "SELECT id, body, deliveries FROM outcomes ORDER BY id"
        ).fetchall()
        # Only the most recent are remembered, as in memory (`RECENTLY_FINISHED`).
        connection.execute(
            "DELETE FROM finished WHERE request_id NOT IN "
            "(SELECT request_id FROM finished ORDER BY at DESC LIMIT ?)",
            (RECENTLY_FINISHED,),
        )
        finished = {rid for (rid,) in connection.execute("SELECT request_id FROM finished")}
        tasks = connection.execute(
            "SELECT request_id, context, started, deadline, due, polls, errors, last_error, "
            "last_status, last_input, trace, spec, phase FROM tasks"
        ).fetchall()
        return Loaded(
            tasks=tasks,
            outcomes=[(int(i), str(b), max(1, int(d))) for i, b, d in outcomes],
            finished=finished,
        )

    def write(self, writes: Sequence[Write]) -> None:
        """Run `writes` in one transaction: all of them, or none."""
        connection = self._connection
        assert connection is not None, "the SQLite store is not open"
        connection.execute("BEGIN")
        try:
            for statement, rows in writes:
                connection.executemany(statement, rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the file, which releases its lock."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def submit_uncertain(
    started: float, now: float, *, context: Any = None, error: Exception | None = None
) -> Outcome:
    """The outcome of a submit that a crash (or `error`) cut short: all that is known is
    when it began, and the context `SQLiteStore.submitting` gave it, if any.

    No task id is known (the answer, if any, died with the process), so none is made up:
    `request_id` is empty and the message says when the submit began.
    """
    if error is None:
        began = datetime.fromtimestamp(started, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        error = SubmitUncertainError(
            f"the process stopped during a submit that began at {began}: the task may exist "
            "at the service without being tracked; look for it there before resubmitting"
        )
    return Outcome(
        request_id="",
        kind=OutcomeKind.SUBMIT_UNCERTAIN,
        status=None,
        error=error,
        context=context,
        polls=0,
        elapsed=max(0.0, now - started),
    )
