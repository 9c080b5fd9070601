"""A bulk insert as one binary ``COPY``: asyncpg's ``copy_records_to_table``.

``COPY ... FROM STDIN (FORMAT binary)`` streams the rows without a statement to plan or a
parameter array to unpack, each value in its column's binary form. It runs on the driver's
own connection (SQLAlchemy's ``run_async``), in the transaction the body is
in. Values go as the rows hold them: JSON columns as their text, which the codecs SQLAlchemy
installs for ``json`` and ``jsonb`` on every connection encode.

SQLAlchemy's asyncpg adapter opens its transaction lazily, with the first statement that goes
through it; the copy opens it first when nothing has (two private names of the adapter,
``_transaction`` and ``_start_transaction``, which a test pins: a batch refused after its
copy leaves nothing written).

Errors are asyncpg's own here, not the DBAPI's: they are translated the way SQLAlchemy's
asyncpg cursor translates them, then wrapped as on any statement (a duplicate id is an
``IntegrityError``, which the store turns into ``DuplicateTaskError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection

#: How a failed copy is named in its error (there is no SQL text to show).
_STATEMENT = "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"


class Copy:
    """Copies rows of ``columns`` values into ``table`` on a SQLAlchemy connection."""

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.statement = _STATEMENT.format(table=table, columns=", ".join(columns))

    def __call__(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        adapted = conn.connection.dbapi_connection
        assert adapted is not None  # a connection in a transaction has one

        async def copy(driver: Any) -> None:
            # The adapter opens its transaction with the first statement it runs itself; a
            # COPY that came first would run outside it, in autocommit, and stay written
            # whatever the body did next. So the transaction is opened here if it is not.
            if adapted._transaction is None:
                await adapted._start_transaction()
            await driver.copy_records_to_table(self.table, records=rows, columns=self.columns)

        try:
            adapted.run_async(copy)
        except exc.DBAPIError:
            raise
        except Exception as error:
            wrapped = self._wrapped(conn, adapted, error)
            if wrapped is error:
                raise
            raise wrapped from error

    def _wrapped(self, conn: Connection, adapted: Any, error: Exception) -> BaseException:
        """``error`` as SQLAlchemy raises a statement's: the adapter's DBAPI error (its own
        translation, ``_handle_exception``, which raises it), wrapped by its class."""
        dbapi = conn.dialect.loaded_dbapi
        try:
            adapted._handle_exception(error)
        except dbapi.Error as translated:
            return exc.DBAPIError.instance(self.statement, None, translated, dbapi.Error)
        except Exception as other:  # not a database error: the adapter raised it again
            return other
        raise AssertionError("unreachable: _handle_exception raises")
