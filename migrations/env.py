"""Alembic environment: runs on the connection ``worker.storage.migrate`` hands over.

``initialize()`` calls Alembic inside the queue's own write transaction (``BEGIN IMMEDIATE`` on
SQLite), so processes starting at once upgrade one after the other, never concurrently. The
``alembic`` command line works too, with ``-x url=...`` or ``QUEUE_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from worker.core.config import QueueConfig
from worker.storage.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_standalone() -> None:
    from worker.storage.database import Database

    url = context.get_x_argument(as_dictionary=True).get("url")
    config = QueueConfig(database_url=url) if url else QueueConfig.from_env()

    async def run() -> None:
        db = Database(config)
        await db.open()
        try:
            async with db.write("migrate") as conn:
                await conn.run_sync(_run)
        finally:
            await db.close()

    asyncio.run(run())


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
else:
    _run_standalone()
