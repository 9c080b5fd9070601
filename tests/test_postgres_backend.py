"""What is PostgreSQL's own: many processes opening one new database at the same moment."""

from __future__ import annotations

import asyncio

from tests.postgres_server import ScratchDatabases
from tests.support import make_task, raw_sql
from worker import QueueConfig, WorkerQueue
from worker.revision import HEAD_REVISION


async def test_queues_creating_one_database_at_once_migrate_it_once(
    postgres_databases: ScratchDatabases,
) -> None:
    """Eight queues open a new, empty database at once (as workers on many machines starting
    together would): the advisory lock lets one create the schema while the others wait and
    then find it done, instead of failing on tables that already exist."""
    url = postgres_databases.create()  # empty: no template
    queues = [WorkerQueue(QueueConfig(database_url=url)) for _ in range(8)]
    try:
        await asyncio.gather(*(queue.initialize() for queue in queues))
        await queues[0].enqueue([make_task()])
        assert (await queues[-1].get_queue_stats())["total"] == 1
    finally:
        await asyncio.gather(*(queue.close() for queue in queues))
    assert await raw_sql(url, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
