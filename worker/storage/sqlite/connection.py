"""SQLite connections: the file behind a URL, the pragmas every connection gets, read-only
opening, and ``BEGIN IMMEDIATE`` for transactions that read first (see
:mod:`worker.storage.database`)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.core.config import QueueConfig
from worker.core.database_url import sqlite_location

#: The execution option of an engine whose transactions open with ``BEGIN IMMEDIATE``.
LOCK_FIRST = "worker_lock_first"


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a SQLite URL, or None (another backend, or in memory; see
    :func:`~worker.core.database_url.sqlite_location`)."""
    url = make_url(database_url)
    if not url.get_backend_name().startswith("sqlite"):
        return None
    location = sqlite_location(url.database or "", url.query)
    return None if location is None else Path(location)


def use_wal(cursor: Any, busy_timeout_s: float) -> None:
    """Switch the file to WAL (it stays so), waiting out other connections if need be.

    The switch needs the database to itself, and SQLite answers "database is locked" at once
    rather than calling the busy handler, so processes opening a new file together retry here.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            (mode,) = cursor.fetchone()
            if str(mode).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def writable(path: Path) -> bool:
    """Whether this process may write the file and create its ``-wal`` beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def read_only_url(database_url: str, path: Path) -> URL:
    """The SQLite URI that opens ``path`` read-only (``file:PATH?mode=ro``)."""
    uri = "file:" + quote(str(path.absolute()))
    return make_url(database_url).set(database=uri, query={"mode": "ro", "uri": "true"})


def install_sqlite_hooks(
    engine: AsyncEngine,
    config: QueueConfig,
    *,
    path: Path | None,
    checkpoints: bool,
    read_only: bool = False,
) -> None:
    """Pragmas for every new connection. ``checkpoints=False``: its commits never checkpoint
    the WAL (a :class:`~worker.storage.sqlite.checkpoints.Checkpointer` does). ``read_only``:
    the file's journal mode is left as it is (switching it writes)."""
    busy_ms = int(config.busy_timeout * 1000)
    synchronous = config.sqlite_synchronous

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver opens a transaction (BEGIN IMMEDIATE) before a statement that writes;
        # the "begin" event below opens one explicitly for transactions that read first.
        dbapi_connection.isolation_level = "IMMEDIATE"
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if path is not None and not read_only:
                use_wal(cursor, config.busy_timeout)
                if not checkpoints:
                    cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if read_only:
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(LOCK_FIRST, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
