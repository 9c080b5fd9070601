"""What is PostgreSQL's own: many processes opening one new database at the same moment, and
wake-ups pushed by NOTIFY."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.postgres_server import ScratchDatabases
from tests.runtime_worker import wait_until
from tests.support import database_of, make_task, raw_sql
from worker import QueueConfig, WorkerQueue
from worker.storage.postgres.listener import Listener
from worker.storage.revision import HEAD_REVISION


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


async def _woken(queue: WorkerQueue, other: WorkerQueue) -> float:
    """Seconds from ``other``'s enqueue to ``queue``'s notifier being poked."""
    poked = asyncio.Event()
    queue.notifier.subscribe(poked)
    await asyncio.sleep(0)
    poked.clear()
    sent = time.monotonic()
    await other.enqueue([make_task()])
    async with asyncio.timeout(10):
        await poked.wait()
    return time.monotonic() - sent


async def _listening(queue: WorkerQueue) -> Listener:
    """``queue``'s LISTEN connection, once it listens."""
    queue.receive_wakeups()
    listener = queue._listener
    assert isinstance(listener, Listener)
    async with asyncio.timeout(10):
        await listener.listening.wait()
    return listener


async def test_an_enqueue_elsewhere_wakes_this_process_and_so_after_a_lost_connection(
    postgres_url: str,
) -> None:
    """NOTIFY at the enqueue's commit reaches the LISTEN connection of another queue; when
    that connection is killed it is opened again, and wake-ups go on."""
    async with (
        WorkerQueue(QueueConfig(database_url=postgres_url)) as queue,
        WorkerQueue(QueueConfig(database_url=postgres_url)) as other,
    ):
        listener = await _listening(queue)
        assert await _woken(queue, other) < 5.0
        killed = await raw_sql(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND datname = current_database()",
        )
        assert killed == [(True,)]

        async def reopened() -> bool:
            return listener.opened == 2 and listener.listening.is_set()

        await wait_until(reopened, 10, "the LISTEN connection reopened")
        assert await _woken(queue, other) < 5.0


async def test_url_options_reach_the_driver_and_the_listen_connection(postgres_url: str) -> None:
    """``timeout=5`` and ``statement_cache_size=0`` reach asyncpg as numbers (as text they
    failed inside it with a TypeError), and ``ssl=disable`` reaches the LISTEN connection as
    an argument (in its DSN, asyncpg sent it to the server as a setting, which refused it, so
    no wake-up ever came)."""
    options = {"ssl": "disable", "timeout": "5", "statement_cache_size": "0"}
    url = make_url(postgres_url).update_query_dict(options).render_as_string(False)
    async with (
        WorkerQueue(QueueConfig(database_url=url)) as queue,
        WorkerQueue(QueueConfig(database_url=url)) as other,
    ):
        await _listening(queue)
        assert await _woken(queue, other) < 5.0
        claimed = await queue.dequeue(1)
        assert len(claimed) == 1


async def test_notify_off_sends_and_listens_for_nothing(postgres_url: str) -> None:
    """QUEUE_POSTGRES_NOTIFY=false (PgBouncer in transaction mode): no NOTIFY in the
    enqueue, no LISTEN connection; workers poll."""
    config = QueueConfig(database_url=postgres_url, postgres_notify=False)
    async with WorkerQueue(config) as queue:
        queue.receive_wakeups()
        assert queue._listener is None
        assert database_of(queue).statements.wake_tasks is None
        await queue.enqueue([make_task()])
    assert await raw_sql(
        postgres_url, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
    ) == [(0,)]


async def test_a_row_locked_by_a_frozen_transaction_does_not_stall_the_sweep(
    postgres_url: str,
) -> None:
    """A worker frozen in the middle of a transaction holds a lock on one expired task's
    row: the sweep skips that row (SKIP LOCKED) and returns the others, instead of waiting
    for a process that may never wake."""
    config = QueueConfig(database_url=postgres_url, default_visibility_timeout=0.01)
    async with WorkerQueue(config) as queue:
        await queue.enqueue([make_task(str(n)) for n in range(3)])
        claimed = await queue.dequeue(3)
        await asyncio.sleep(0.05)  # every lease has expired
        locked = claimed[0].id
        engine = create_async_engine(postgres_url)
        try:
            async with engine.connect() as frozen:
                await frozen.execute(
                    sa.text("SELECT id FROM tasks WHERE id = :id FOR UPDATE"), {"id": locked}
                )
                async with asyncio.timeout(10):
                    moved = await queue.retry()
                assert sorted(t.id for t in moved) == sorted(t.id for t in claimed[1:])
                await frozen.rollback()
        finally:
            await engine.dispose()
        async with asyncio.timeout(10):
            later = await queue.retry()
        assert [t.id for t in later] == [locked]


async def test_a_bulk_enqueue_copies_each_value_as_written(postgres_url: str) -> None:
    """The binary COPY stores what the rows hold: JSON text as written (``json`` keeps key
    order and spacing), ``errors`` as ``jsonb``, NULLs, booleans, integers and floats."""
    config = QueueConfig(database_url=postgres_url)
    task = make_task(
        name="copied", metadata={"z": 1, "a": [1.5, None]}, priority=7, schedule_at=12.25
    )
    async with WorkerQueue(config) as queue:
        assert await queue.enqueue([task, make_task("other")]) == 2
    (row,) = await raw_sql(
        postgres_url,
        "SELECT metadata::text, jsonb_typeof(errors), errors::text, priority, schedule_at, "
        "held, needs_gpu, memory_bytes, idempotency_key IS NULL, depends_on IS NULL "
        "FROM tasks WHERE name = 'copied'",
    )
    assert row == ('{"z":1,"a":[1.5,null]}', "array", "[]", 7, 12.25, False, False, 0, True, True)


async def test_producers_on_many_machines_enqueueing_one_key_get_one_task(
    postgres_url: str,
) -> None:
    """Five queues (five machines' producers) enqueue the same idempotency key at the same
    moment, over and over: each round makes exactly one task, and every producer is handed
    its id, rather than one of them failing on the unique key (the key locks make them take
    turns, as SQLite's one writer does)."""
    queues = [WorkerQueue(QueueConfig(database_url=postgres_url)) for _ in range(5)]
    try:
        await asyncio.gather(*(queue.initialize() for queue in queues))
        for round_ in range(10):
            tasks = [make_task(idempotency_key=f"order-{round_}") for _ in queues]
            inserted = await asyncio.gather(
                *(queue.enqueue([task]) for queue, task in zip(queues, tasks, strict=True))
            )
            assert sum(inserted) == 1, inserted
            assert len({task.id for task in tasks}) == 1
        assert (await queues[0].get_queue_stats())["total"] == 10
    finally:
        await asyncio.gather(*(queue.close() for queue in queues))
