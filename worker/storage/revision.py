"""Which schema revision a database is at, and whether this code can use it, without Alembic.

``initialize(create=False)`` and read-only opening check here instead of migrating: Alembic
(a tenth of a second to import) is loaded only to migrate (:mod:`worker.storage.migrate`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from worker.core.errors import SchemaMismatchError, SchemaOutdatedError
from worker.storage.schema import metadata

#: Every revision under ``migrations/versions`` (``worker/migrations/versions`` once installed),
#: oldest first (a test holds it to Alembic's).
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
HEAD_REVISION = REVISIONS[-1]
VERSION_TABLE = "alembic_version"


def current_revision(connection: Connection) -> str | None:
    """The revision recorded in the database, None when it records none (a new file)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    return connection.execute(sa.select(version.c.version_num)).scalar()


def missing_columns(connection: Connection) -> dict[str, list[str]]:
    """Columns :mod:`worker.storage.schema` declares that the database's tables lack, by table."""
    inspector = sa.inspect(connection)
    missing: dict[str, list[str]] = {}
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        lacking = [column.name for column in table.columns if column.name not in present]
        if lacking:
            missing[table.name] = lacking
    return missing


def check_schema(connection: Connection, database_url: str) -> None:
    """Raise unless the database is at :data:`HEAD_REVISION` with every declared column:
    :class:`SchemaOutdatedError` for another revision (none, older, or one this code does
    not know), :class:`SchemaMismatchError` for missing columns."""
    revision = current_revision(connection)
    if revision != HEAD_REVISION:
        newer = revision is not None and revision not in REVISIONS
        raise SchemaOutdatedError(database_url, revision, HEAD_REVISION, newer=newer)
    missing = missing_columns(connection)
    if missing:
        raise SchemaMismatchError(database_url, missing)
