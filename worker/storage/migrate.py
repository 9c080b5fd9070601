"""Bring a database to the newest schema revision with Alembic (called by ``initialize()``).

Imported only to migrate: :mod:`worker.storage.revision` checks a database without Alembic.

The revisions lie in the checkout's top-level ``migrations/``; the wheel carries them inside
the package as ``worker/migrations`` (pyproject.toml), so that it installs no top-level
``migrations`` to collide with another Alembic project's. :func:`script_location` finds them
in either place.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from worker.core.errors import SchemaMismatchError, SchemaOutdatedError
from worker.storage.revision import REVISIONS, missing_columns

logger = logging.getLogger(__name__)

#: The revisions in an installed wheel.
PACKAGED_MIGRATIONS = Path(__file__).parents[1] / "migrations"
#: The revisions in a source checkout (the editable install: ``pip install -e .``).
CHECKOUT_MIGRATIONS = Path(__file__).parents[2] / "migrations"


def script_location() -> Path:
    """Alembic's script directory: inside the package when installed from a wheel, else the
    checkout's ``migrations/``. The checkout's counts only beside its ``pyproject.toml``, so an
    installed ``worker`` whose own revisions went missing cannot run the revisions of another
    project's top-level ``migrations`` lying next to it in site-packages."""
    if (PACKAGED_MIGRATIONS / "env.py").is_file():
        return PACKAGED_MIGRATIONS
    checkout = CHECKOUT_MIGRATIONS.parent
    if (CHECKOUT_MIGRATIONS / "env.py").is_file() and (checkout / "pyproject.toml").is_file():
        logger.debug("Alembic revisions from the source checkout %s", checkout)
        return CHECKOUT_MIGRATIONS
    raise FileNotFoundError(
        f"the queue's Alembic revisions are missing: neither {PACKAGED_MIGRATIONS}/env.py"
        f" (an installed wheel) nor {CHECKOUT_MIGRATIONS}/env.py beside {checkout}/pyproject.toml"
        " (a source checkout) exists; reinstall worker-queue"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
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
    current, head = current_revision(connection), head_revision()
    if current is not None and current not in REVISIONS:  # Alembic's CommandError, else
        url = connection.engine.url.render_as_string()
        raise SchemaOutdatedError(url, current, head or REVISIONS[-1], newer=True)
    if current != head:
        command.upgrade(alembic_config(connection), "head")
    missing = missing_columns(connection)
    if missing:
        raise SchemaMismatchError(connection.engine.url.render_as_string(), missing)
