"""The read commands' storage on a SQLite file: stdlib ``sqlite3``, no SQLAlchemy.

``wq status``, ``list``, ``why`` and ``stats`` spend most of their time importing; SQLAlchemy
and the event loop are a quarter of a second of it. Here they read through ``sqlite3`` with
the queue's own statements, compiled ahead (:mod:`worker.storage.sqlite.quick_sql`, made by
:mod:`worker.storage.sqlite.quick_statements`), and turn rows into results with the queue's
own code (:mod:`worker.storage.salvage`, :mod:`worker.storage.read_results`): a test holds
every read to what :class:`~worker.queue.worker_queue.WorkerQueue` returns for it.

The methods are coroutines that never wait (``sqlite3`` blocks), so a command can run them
to the end without an event loop. They are the reads of
:class:`~worker.storage.interface.Storage` that :class:`~worker.queue.admin.QueueAdmin`'s
read methods use; nothing here writes. Whatever is out of the ordinary (no file, not a
database, another schema revision, a missing column) raises :class:`NotQuick` from
:meth:`QuickReads.open`, and the command takes the queue's own path, which says what is
wrong; a database locked past the busy timeout is a :class:`StorageError` there and then.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from worker.core.callbacks import TaskCallback
from worker.core.errors import StorageError, TaskNotFoundError
from worker.core.models import Task
from worker.core.selection import TaskFilter
from worker.core.states import TaskState
from worker.storage import read_results
from worker.storage.garbled import decode
from worker.storage.payload import PayloadError
from worker.storage.salvage import readable
from worker.storage.sqlite.quick_sql import COLUMNS, REVISION, STATEMENTS

#: SQLite's result codes of a database another connection holds locked (SQLITE_BUSY, and
#: SQLITE_BUSY_SNAPSHOT / _RECOVERY / _TIMEOUT).
_BUSY = {5, 261, 517, 773}

#: The filters of :class:`TaskFilter` a quick list page takes (the read commands' own).
LIST_FILTERS = ("state", "queue")


class NotQuick(Exception):
    """This database is for the queue's own path (the message says why)."""


def list_key(state: TaskState | None, *, by_queue: bool, after: bool) -> str:
    """The name of the compiled statement of a list page chosen so."""
    return f"list:{'any' if state is None else state.value}:{int(by_queue)}:{int(after)}"


class QuickReads:
    """Reads of the SQLite file at ``path`` (see the module's text)."""

    def __init__(self, database_url: str, path: Path, *, busy_timeout: float) -> None:
        self._url = database_url
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Connect, read-only (``query_only``; ``mode=ro`` for a file this process cannot
        write, as the queue's own read-only opening does), or raise :class:`NotQuick`; a
        database locked past the busy timeout is a :class:`StorageError` at once (the
        queue's own path would only wait as long again)."""
        path = self._path
        try:
            if not path.is_file():
                raise NotQuick(f"no file at {path}")
            writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
            # Bytes, so that a name that is not UTF-8 (surrogate escapes) is the file's own.
            uri = "file:" + quote(os.fsencode(path.absolute()))
        except (OSError, ValueError) as error:
            raise NotQuick(f"cannot look at {path}: {error}") from error
        # mode=rw: a file removed since the look above is not created anew.
        uri += "?mode=rw" if writable else "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as error:
            raise NotQuick(f"cannot open {path}: {error}") from error
        try:
            conn.text_factory = decode
            conn.execute("PRAGMA query_only = ON")
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            lacking = self._lacking(conn) if revision == [(REVISION,)] else []
        except sqlite3.Error as error:
            conn.close()
            if getattr(error, "sqlite_errorcode", None) in _BUSY:
                raise StorageError(self._url, "opening the queue", error) from error
            raise NotQuick(f"cannot read {path}'s schema revision: {error}") from error
        if revision != [(REVISION,)] or lacking:
            conn.close()
            raise NotQuick(f"{path} is at schema revision {revision}, lacking {lacking}")
        self._conn = conn

    @staticmethod
    def _lacking(conn: sqlite3.Connection) -> list[str]:
        """The declared columns the file's tables lack, as ``table.column``."""
        lacking = []
        for table, columns in COLUMNS.items():
            rows = conn.execute("SELECT name FROM pragma_table_info(?)", (table,)).fetchall()
            present = {name for (name,) in rows}
            lacking += [f"{table}.{c}" for c in columns if c not in present]
        return lacking

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _cursor(self, action: str, name: str, values: dict[str, Any]) -> sqlite3.Cursor:
        assert self._conn is not None, "open() first"
        sql, names, constants = STATEMENTS[name]
        params = {**constants, **{bind: values[value] for bind, value in names}}
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as error:
            raise StorageError(self._url, action, error) from error

    def _rows(self, action: str, name: str, **values: Any) -> list[Any]:
        try:
            return self._cursor(action, name, values).fetchall()
        except sqlite3.Error as error:
            raise StorageError(self._url, action, error) from error

    def _named(self, action: str, name: str, **values: Any) -> list[dict[str, Any]]:
        try:
            cursor = self._cursor(action, name, values)
            columns = [column[0] for column in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        except sqlite3.Error as error:
            raise StorageError(self._url, action, error) from error

    def _scalar(self, action: str, name: str, **values: Any) -> Any:
        rows = self._rows(action, name, **values)
        return rows[0][0] if rows else None

    # -- the reads of Storage ----------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        rows = self._rows("get_task", "task", task_id=task_id)
        if not rows:
            raise TaskNotFoundError(task_id)
        task = readable(rows[0], tolerant=True)
        if task is None:
            cause = PayloadError(f"task {task_id}'s row cannot be read (see the log)")
            raise StorageError(self._url, "get_task", cause)
        return task

    async def list_tasks(
        self,
        chosen: TaskFilter,
        *,
        limit: int,
        after_id: str | None,
        after_priority: int | None = None,
    ) -> list[Task]:
        """A page as :meth:`~worker.storage.reads.ReadStore.list` reads it, for a filter of
        :data:`LIST_FILTERS` alone (``ValueError`` for any other)."""
        others = [f for f in ("kind", "name", "error", "created_after", "created_before")
                  if getattr(chosen, f) is not None]  # fmt: skip
        if others:
            raise ValueError(f"quick list pages filter by {LIST_FILTERS} only, not {others}")
        state = None if chosen.state is None else TaskState(chosen.state)
        pending = state is TaskState.PENDING
        if pending and after_id is not None and after_priority is None:
            priority = self._scalar("list_tasks", "priority", task_id=after_id)
            after_priority = read_results.after_priority(after_id, priority)
        key = list_key(state, by_queue=chosen.queue is not None, after=after_id is not None)
        rows = self._rows(
            "list_tasks",
            key,
            queue=chosen.queue,
            after_id=after_id,
            after_priority=after_priority,
            limit=limit,
        )
        return [task for row in rows if (task := readable(row, tolerant=True)) is not None]

    async def count_by_state(self, queue: str | None) -> dict[str, int]:
        if queue is None:
            rows = self._rows("get_queue_stats", "state_counts")
        else:
            rows = self._rows("get_queue_stats", "state_counts:queue", queue=queue)
        return read_results.state_counts(rows[0])

    async def position(self, task_id: str, queue: str, priority: int, now: float) -> int:
        found = self._scalar(
            "position", "position", task_id=task_id, queue=queue, priority=priority, now=now
        )
        return int(found)

    async def unfinished_dependencies(self, task_id: str) -> list[tuple[str, str]]:
        return read_results.id_states(self._rows("dependencies", "dependencies", task_id=task_id))

    async def window(self, since: float) -> dict[str, Any]:
        finished = self._rows("statistics", "finished_since", since=since)
        oldest = self._scalar("statistics", "oldest_pending")
        per_queue = self._rows("statistics", "per_queue_and_state")
        return read_results.window(finished, oldest, per_queue)

    async def task_callbacks(self, task_id: str) -> list[TaskCallback]:
        rows = self._named("callbacks rows", "callbacks", task_id=task_id)
        return [read_results.callback(row) for row in rows]

    async def paused(self) -> dict[str, float]:
        return read_results.paused(self._rows("paused queues", "paused"))

    async def live_workers(self, since: float) -> list[dict[str, Any]]:
        found = self._named("workers", "live_workers", since=since)
        running: Sequence[Any] = self._rows("workers", "running_per_worker") if found else []
        return read_results.live_workers(found, running)
