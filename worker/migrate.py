"""Bring a database to the newest schema revision with Alembic (called by ``initialize()``).

Imported only to migrate: :mod:`worker.revision` checks a database without Alembic.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import migrations
from worker.errors import SchemaMismatchError
from worker.revision import missing_columns


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade inside the caller's transaction (nothing to do when already at head), then
    check that every declared column is there."""
    if current_revision(connection) != head_revision():
        command.upgrade(alembic_config(connection), "head")
    missing = missing_columns(connection)
    if missing:
        raise SchemaMismatchError(connection.engine.url.render_as_string(), missing)
