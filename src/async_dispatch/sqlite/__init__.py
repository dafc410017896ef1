"""A durable local task store: `SQLiteStore`, on the standard library's `sqlite3`.

    from async_dispatch import DispatchClient, Poller
    from async_dispatch.sqlite import SQLiteStore

    async with DispatchClient() as client:
        async with Poller(client, store=SQLiteStore("tasks.db")) as poller:
            ...

Every tracked task, every outcome not yet taken by the application and every submit in
flight is in the file: after a crash, ``kill -9`` or a reboot, a new poller on the same
file resumes them (a submit cut short becomes a `SUBMIT_UNCERTAIN` outcome). One poller
at a time per file; no extra dependency.
"""

from __future__ import annotations

from ._store import SQLiteStore

__all__ = ["SQLiteStore"]
