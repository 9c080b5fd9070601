"""A write transaction as one synchronous function, run in one go.

aiosqlite runs every call (cursor, execute, fetch, close, commit) on its own thread, and
each trip costs about as much as SQLite spends on an acknowledgement of a hundred tasks. The
hot path therefore writes its transactions as plain functions of a :class:`Txn`
(``body(txn)``) that :meth:`worker.db.Database.transaction` runs whole: on aiosqlite's
connection either right away on the calling thread (:func:`run_now`, when the write lock is
free) or inside the driver's thread (:func:`run_in_driver`, :func:`run_waiting`: one trip),
both through :class:`DriverTxn`; on any other driver through SQLAlchemy's ``run_sync``
(:class:`ConnectionTxn`, the same body). Statements are compiled once per dialect
(:class:`worker.statements.Prepared`); driver errors surface as SQLAlchemy's
``DBAPIError`` subclasses either way.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import Connection

from worker.statements import Buildable, Prepared, Statements

T = TypeVar("T")
log = logging.getLogger(__name__)


Statement = Prepared | Callable[[], Buildable]


class Txn(Protocol):
    """What a transaction body may do: run compiled statements."""

    def rows(self, statement: Statement, **values: Any) -> list[tuple[Any, ...]]:
        """Execute once; the rows it returns (none for a statement without RETURNING)."""
        ...

    def many(
        self, statement: Statement, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        """Execute once per row of values (``executemany``); see ``Prepared.params_many``."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A block whose failed statement leaves the transaction usable (rolled back to the
        block's start). SQLite undoes only the failed statement anyway; PostgreSQL aborts
        the whole transaction on an error unless a savepoint was set."""
        ...


class _Compiling:
    """Statements given as builders are compiled once, on first use, per dialect."""

    def __init__(self, statements: Statements) -> None:
        self._statements = statements

    def _prepared(self, statement: Statement) -> Prepared:
        return statement if isinstance(statement, Prepared) else self._statements.of(statement)


class DriverTxn(_Compiling):
    """A body's view of the sqlite3 connection, inside aiosqlite's thread."""

    def __init__(self, conn: sqlite3.Connection, statements: Statements) -> None:
        super().__init__(statements)
        self._conn = conn

    def rows(self, statement: Statement, **values: Any) -> list[tuple[Any, ...]]:
        prepared = self._prepared(statement)
        params = prepared.params(**values)
        try:
            return self._conn.execute(prepared.sql, params).fetchall()
        except sqlite3.Error as error:
            raise _wrap(prepared.sql, params, error) from error

    def many(
        self, statement: Statement, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        if not rows:
            return
        prepared = self._prepared(statement)
        params = prepared.params_many(rows)
        try:
            self._conn.executemany(prepared.sql, params)
        except sqlite3.Error as error:
            raise _wrap(prepared.sql, params, error) from error

    def savepoint(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # a failed statement undoes only itself on SQLite

    def begin(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise _wrap("BEGIN IMMEDIATE", (), error) from error

    def commit(self) -> None:
        try:
            self._conn.commit()
        except sqlite3.Error as error:
            raise _wrap("COMMIT", (), error) from error


def _wrap(sql: str, params: Any, error: sqlite3.Error) -> BaseException:
    """The SQLAlchemy exception the same error would have raised on an engine connection."""
    return exc.DBAPIError.instance(sql, params, error, sqlite3.Error)


def run_in_driver(
    conn: sqlite3.Connection, statements: Statements, body: Callable[[Txn], T], lock_first: bool
) -> T:
    """Run ``body`` as one transaction on ``conn`` (call it in the connection's thread).

    The connection's ``isolation_level="IMMEDIATE"`` opens the transaction with the first
    statement that writes; ``lock_first`` opens it before a body that reads first.
    """
    txn = _fresh_txn(conn, statements)
    if lock_first:
        txn.begin()
    return _finish(conn, txn, body)


def run_waiting(
    conn: sqlite3.Connection,
    statements: Statements,
    body: Callable[[Txn], T],
    lock_first: bool,
    *,
    busy_ms: int,
    in_use: threading.Lock,
) -> T:
    """:func:`run_in_driver` on a connection whose busy timeout is 0 (see :func:`run_now`):
    this transaction waits up to ``busy_ms`` for the write lock. It holds ``in_use`` while it
    runs, even after its caller was cancelled, so that nothing runs the connection inline
    meanwhile."""
    with in_use:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        try:
            return run_in_driver(conn, statements, body, lock_first)
        finally:
            conn.execute("PRAGMA busy_timeout = 0")


class LockTaken(Exception):
    """The write lock is held elsewhere; :func:`run_now` did nothing."""


def run_now(conn: sqlite3.Connection, statements: Statements, body: Callable[[Txn], T]) -> T:
    """Run ``body`` as one transaction on ``conn`` in the calling thread, if the write lock
    is free: ``conn``'s busy timeout must be 0, so a lock held elsewhere raises
    :class:`LockTaken` at once, before anything was done, rather than waiting here."""
    txn = _fresh_txn(conn, statements)
    try:
        txn.begin()
    except exc.OperationalError as error:
        cause = error.orig
        if (
            isinstance(cause, sqlite3.Error)
            and cause.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
        ):
            raise LockTaken from error
        raise
    return _finish(conn, txn, body)


def _fresh_txn(conn: sqlite3.Connection, statements: Statements) -> DriverTxn:
    if conn.in_transaction:
        # Only an earlier rollback that failed leaves one open; never build on its writes.
        log.error("a transaction was left open on the connection; rolling it back")
        conn.rollback()
    return DriverTxn(conn, statements)


def _finish(conn: sqlite3.Connection, txn: DriverTxn, body: Callable[[Txn], T]) -> T:
    """Run ``body`` in the open (or first-statement-opened) transaction and commit it."""
    try:
        result = body(txn)
        txn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


class ConnectionTxn(_Compiling):
    """A body's view of a SQLAlchemy connection (any driver; used through ``run_sync``)."""

    def __init__(self, conn: Connection, statements: Statements) -> None:
        super().__init__(statements)
        self._conn = conn

    def rows(self, statement: Statement, **values: Any) -> list[tuple[Any, ...]]:
        prepared = self._prepared(statement)
        result = self._conn.exec_driver_sql(prepared.sql, prepared.params(**values))
        return [tuple(row) for row in result.all()] if result.returns_rows else []

    def many(
        self, statement: Statement, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        if rows:
            prepared = self._prepared(statement)
            self._conn.exec_driver_sql(prepared.sql, prepared.params_many(rows))

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        with self._conn.begin_nested():
            yield
