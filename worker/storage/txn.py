"""A write transaction as one synchronous function of a :class:`Txn`, run in one go.

The hot path writes its transactions as plain functions of a :class:`Txn` (``body(txn)``)
that :meth:`worker.storage.database.Database.transaction` runs whole: on SQLite on aiosqlite's raw
connection
(:mod:`worker.storage.sqlite.driver`), on any other driver through SQLAlchemy's ``run_sync``
(:class:`ConnectionTxn`, the same body). Statements are compiled once per dialect
(:class:`worker.storage.statements.Prepared`); driver errors surface as SQLAlchemy's
``DBAPIError`` subclasses either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from worker.storage.statements import Buildable, Prepared, Statements

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

    def load(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """Insert rows (:data:`~worker.storage.statements.INSERT_COLUMNS` values, or
        :data:`~worker.storage.statements.PLAIN_INSERT_COLUMNS` values, all alike) into
        ``tasks`` by the backend's bulk-load path
        (:meth:`~worker.storage.backend.Backend.bulk_load`); False, with nothing done, when
        it has none."""
        ...


class Compiling:
    """Statements given as builders are compiled once, on first use, per dialect."""

    def __init__(self, statements: Statements) -> None:
        self._statements = statements

    def _prepared(self, statement: Statement) -> Prepared:
        return statement if isinstance(statement, Prepared) else self._statements.of(statement)


class ConnectionTxn(Compiling):
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

    def load(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        load = self._statements.loader(len(rows[0]))
        if load is None:
            return False
        load(self._conn, rows)
        return True
