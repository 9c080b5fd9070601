"""wq's read commands on SQLite without SQLAlchemy: the same answers as the queue's own reads.

:class:`~worker.queue.quick_reads.QuickReadQueue` reads through stdlib ``sqlite3`` with
statements compiled ahead from the queue's own; every read here is compared with what
:class:`~worker.queue.worker_queue.WorkerQueue` returns on the same file, at the same time.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.engine import make_url

from tests.support import FakeClock, make_task, sqlite_url
from worker import QueueConfig, TaskState, WorkerQueue
from worker.core.database_url import async_database_url, file_url, in_memory, sqlite_file
from worker.queue.admin import QueueAdmin
from worker.queue.quick_reads import QuickReadQueue
from worker.storage.garbled import Garbled
from worker.storage.sqlite import quick_statements
from worker.storage.sqlite.quick_reads import NotQuick, list_key


def test_the_compiled_statements_are_current() -> None:
    """quick_sql.py is what the generator makes of today's statements (else: make quick-sql)."""
    assert quick_statements.TARGET.read_text(encoding="utf-8") == quick_statements.source()


def test_every_list_page_has_its_statement() -> None:
    from worker.storage.sqlite.quick_sql import STATEMENTS

    for state in (None, *TaskState):
        for by_queue in (False, True):
            for after in (False, True):
                assert list_key(state, by_queue=by_queue, after=after) in STATEMENTS


@pytest.mark.parametrize(
    "given",
    [
        "data/queue.db",
        "/tmp/x y/q.db",
        "a%b.db",
        "q?x.db",
        "q#1.db",
        "~/q.db",
        "sqlite:///rel/q.db",
        "sqlite:////abs/q.db",
        "sqlite+aiosqlite:////tmp/a%2Fb.db",
        "sqlite+pysqlite:///q.db",
        "sqlite+aiosqlite:///q.db?cached_statements=3",
        "sqlite+aiosqlite:///file:q.db?mode=ro&uri=true",
        "sqlite+aiosqlite:///:memory:",
        "sqlite://",
        "postgresql+asyncpg://u@h/db",
    ],
)
def test_plain_sqlite_urls_are_read_as_sqlalchemy_reads_them(given: str) -> None:
    url = make_url(file_url(given))
    database = url.database or ""
    plain = url.get_backend_name() == "sqlite" and not url.query and database != ""
    plain = plain and database != ":memory:" and not database.startswith("file:")
    assert sqlite_file(given) == (database if plain else None)
    if url.get_backend_name() == "sqlite":
        resolved = make_url(async_database_url(given))
        assert resolved.drivername == "sqlite+aiosqlite"
        assert resolved.database == url.database
        assert in_memory(given) == (not url.database or url.database == ":memory:")


# -- the same answers ------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> QueueConfig:
    return QueueConfig(database_url=sqlite_url(tmp_path / "q.db"), default_visibility_timeout=30.0)


@pytest.fixture
async def filled(config: QueueConfig, clock: FakeClock) -> AsyncIterator[WorkerQueue]:
    """A queue with tasks in every state, priorities, a delay, a hold, dependencies, a paused
    queue, a live worker, a task's callback runs and a row whose text is not UTF-8."""
    async with WorkerQueue(config, worker_id="w1", clock=clock) as queue:
        tasks = [make_task(f"t{n}", priority=n % 3, queue="a" if n % 2 else "b") for n in range(30)]
        await queue.enqueue(tasks)
        await queue.enqueue([make_task("later", schedule_at=clock.now + 600)])
        held = make_task("held")
        await queue.enqueue([held])
        await queue.hold(held.id)
        child = make_task("child", depends_on=[tasks[0].id, tasks[1].id])
        await queue.enqueue([child])
        await queue.register_worker(
            {"id": "w1", "hostname": "h", "pid": 1, "queues": ["a", "b"], "concurrency": 2}
        )
        a, b, c, d, _running = await queue.dequeue(size=5)
        clock.advance(2.5)
        await queue.mark_as_complete(a.id)
        await queue.mark_as_retry(b.id, "flaky")
        await queue.mark_as_discarded(c.id, "bad input")
        await queue.mark_as_retry(d.id, "x")
        await queue.mark_as_cancelled(d.id)
        await queue.pause_queue("b")
        clock.advance(1.0)
        db = sqlite3.connect(Path(str(make_url(config.database_url).database)))
        with db:
            db.execute(
                "INSERT INTO task_callbacks (task_id, event, target, state, attempts, "
                "next_attempt_at, last_error, done_at, finished_at, ending, created_at, "
                "updated_at) VALUES (?, 'success', 'pkg.mod:fn', 'pending', 2, ?, 'boom', "
                "NULL, ?, 1, ?, ?)",
                (a.id, clock.now + 5, clock.now, clock.now, clock.now),
            )
            db.execute(
                "UPDATE tasks SET name = CAST(X'6e616d65ff' AS TEXT) WHERE id = ?", (tasks[7].id,)
            )
        db.close()
        queue.ids = [t.id for t in [*tasks, held, child]]  # type: ignore[attr-defined]
        yield queue


@pytest.fixture
def quick(config: QueueConfig, clock: FakeClock) -> Iterator[QuickReadQueue]:
    path = sqlite_file(config.database_url)
    assert path is not None
    reads = QuickReadQueue(config, path, clock=clock)
    reads.open()
    yield reads
    reads.close()


async def _both(
    own: WorkerQueue, quick: QuickReadQueue, method: str, /, *args: Any, **kwargs: Any
) -> Any:
    """The read method's result on each, asserted equal (or the same refusal)."""

    def read(on: QueueAdmin) -> Awaitable[Any]:
        return cast("Awaitable[Any]", getattr(on, method)(*args, **kwargs))

    try:
        expected = await read(own)
    except Exception as error:
        with pytest.raises(type(error), match=f"^{re.escape(str(error))}$"):
            await read(quick)
        return error
    found = await read(quick)
    assert found == expected
    return found


async def test_a_task_and_why_it_waits(filled: WorkerQueue, quick: QuickReadQueue) -> None:
    for task_id in filled.ids:  # type: ignore[attr-defined]
        await _both(filled, quick, "get_task", task_id)
        await _both(filled, quick, "why", task_id)
        await _both(filled, quick, "task_callbacks", task_id)
    callbacks = await quick.task_callbacks(filled.ids[0])  # type: ignore[attr-defined]
    assert len(callbacks) <= 1
    for gone in ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "x"):
        await _both(filled, quick, "get_task", gone)
        await _both(filled, quick, "why", gone)


async def test_every_page_of_every_listing(filled: WorkerQueue, quick: QuickReadQueue) -> None:
    for state in (None, *TaskState):
        for queue_name in (None, "a", "b", "nowhere"):
            after: str | None = None
            priority: int | None = None
            pages = 0
            while True:
                page = await _both(
                    filled,
                    quick,
                    "list_tasks",
                    state=state,
                    queue=queue_name,
                    limit=4,
                    after_id=after,
                    after_priority=priority,
                )
                if len(page) < 4:
                    break
                pages += 1
                after = page[-1].id
                # Pending pages go on from the last task's place, with or without its priority.
                priority = page[-1].priority if state is TaskState.PENDING and pages % 2 else None
    assert len(await quick.list_tasks(limit=100)) == len(await filled.list_tasks(limit=100))


async def test_counts_statistics_workers_and_pauses(
    filled: WorkerQueue, quick: QuickReadQueue
) -> None:
    await _both(filled, quick, "get_queue_stats")
    for name in ("a", "b", "nowhere"):
        await _both(filled, quick, "get_queue_stats", name)
    figures = await _both(filled, quick, "get_statistics", window_s=60.0)
    assert figures["completed"] == 1
    assert figures["workers_alive"] == 1
    assert figures["workers"][0]["queues"] == ["a", "b"]
    assert figures["workers"][0]["running"] == 1
    await _both(filled, quick, "get_statistics", window_s=0.5)
    assert list(await _both(filled, quick, "paused_queues")) == ["b"]
    await _both(filled, quick, "live_workers")


async def test_refusals_are_the_same(filled: WorkerQueue, quick: QuickReadQueue) -> None:
    first = filled.ids[0]  # type: ignore[attr-defined]
    for method, kwargs in (
        ("list_tasks", {"state": "running"}),
        ("list_tasks", {"after_id": "notaulid"}),
        ("list_tasks", {"limit": 0}),
        ("list_tasks", {"state": "completed", "after_id": first, "after_priority": 1}),
        ("list_tasks", {"state": "pending", "after_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        ("get_statistics", {"window_s": -1.0}),
        ("get_queue_stats", {"queue": "bad queue name\x00"}),
        ("get_task", {"task_id": ""}),
    ):
        assert isinstance(await _both(filled, quick, method, **kwargs), Exception)


async def test_text_that_is_not_utf8_is_shown(filled: WorkerQueue, quick: QuickReadQueue) -> None:
    garbled = filled.ids[7]  # type: ignore[attr-defined]
    task = await _both(filled, quick, "get_task", garbled)
    assert task.name == "name\ufffd"
    assert isinstance(task.name, Garbled)


async def test_it_reads_and_writes_nothing(
    filled: WorkerQueue, quick: QuickReadQueue, config: QueueConfig
) -> None:
    assert quick._reads._conn is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        quick._reads._conn.execute("DELETE FROM tasks")
    with pytest.raises(AttributeError):
        await quick.hold(filled.ids[0])  # type: ignore[attr-defined]


def test_files_it_does_not_take(tmp_path: Path) -> None:
    """No file, a directory, a file that is no database, one at another revision: the
    queue's own path takes them (and says what is wrong)."""
    (tmp_path / "dir.db").mkdir()
    (tmp_path / "junk.db").write_bytes(b"not a database, not at all" * 100)
    sqlite3.connect(tmp_path / "empty.db").close()
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("INSERT INTO alembic_version VALUES ('0006')")
    db.close()
    for name in ("missing.db", "dir.db", "junk.db", "empty.db", "old.db"):
        path = tmp_path / name
        reads = QuickReadQueue(QueueConfig(database_url=sqlite_url(path)), str(path))
        with pytest.raises(NotQuick):
            reads.open()
    assert not (tmp_path / "missing.db").exists()


# -- wq's read commands --------------------------------------------------------------


def _wq(*args: str, cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``wq ARGS`` in a child and report its exit code, output, and whether it loaded
    SQLAlchemy, aiosqlite or an event loop."""
    probe = (
        "import json, sys\n"
        "from worker.cli import main\n"
        "sys.argv = ['wq', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "    code = 0\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        "loaded = [m for m in ('sqlalchemy', 'aiosqlite', 'asyncio') if m in sys.modules]\n"
        "sys.stderr.write('\\nPROBE ' + json.dumps({'code': code, 'loaded': loaded}))\n"
    )
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    env.pop("QUEUE_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    head, _, report = done.stderr.rpartition("\nPROBE ")
    return {**json.loads(report), "stdout": done.stdout, "stderr": head}


async def test_read_commands_load_no_sqlalchemy(filled: WorkerQueue, tmp_path: Path) -> None:
    first = filled.ids[0]  # type: ignore[attr-defined]
    for args in (
        ["status", first],
        ["why", first],
        ["list", "-s", "pending", "-q", "a", "-n", "3"],
        ["list", "--json"],
        ["stats"],
        ["stats", "--json", "-q", "a"],
    ):
        found = _wq("--db", "q.db", *args, cwd=tmp_path)
        assert found["code"] == 0, found
        assert found["loaded"] == [], found
    listed = json.loads(_wq("--db", "q.db", "list", "--json", "-n", "500", cwd=tmp_path)["stdout"])
    assert len(listed["tasks"]) == len(await filled.list_tasks(limit=500))
    why = _wq("--db", "q.db", "why", filled.ids[-1], cwd=tmp_path)  # type: ignore[attr-defined]
    assert "waiting on 2 dependencies" in why["stdout"], why


def test_files_it_does_not_take_get_the_queues_errors(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("INSERT INTO alembic_version VALUES ('0006')")
    db.close()
    found = _wq("--db", "old.db", "list", cwd=tmp_path)
    assert found["code"] == 3, found
    assert "schema revision 0006" in found["stderr"], found
    missing = _wq("--db", "missing.db", "stats", cwd=tmp_path)
    assert missing["code"] == 3, missing
    assert "no database at missing.db" in missing["stderr"], missing
    assert not (tmp_path / "missing.db").exists()


def _copy(tmp_path: Path, name: str) -> sqlite3.Connection:
    """A copy of the filled queue's file (its log included), open, in autocommit."""
    copy = sqlite3.connect(tmp_path / name, isolation_level=None)
    source = sqlite3.connect(tmp_path / "q.db")
    try:
        source.backup(copy)
    finally:
        source.close()
    return copy


async def test_a_file_lacking_a_column_gets_the_queues_error(
    filled: WorkerQueue, tmp_path: Path
) -> None:
    """At the right revision but without a column (a hand-edited file): the quick path
    failed on its first query ("no such column"), or answered ``wq stats`` as if nothing
    were wrong; now both say what the queue's own path says."""
    db = _copy(tmp_path, "lacking.db")
    db.execute("ALTER TABLE tasks DROP COLUMN checkpoint")
    db.close()
    for command in ("list", "stats"):
        found = _wq("--db", "lacking.db", command, cwd=tmp_path)
        assert found["code"] == 3, found
        assert "the tables lack columns" in found["stderr"], found
        assert "(tasks: checkpoint)" in found["stderr"], found


async def test_a_file_name_that_is_not_utf8(filled: WorkerQueue, tmp_path: Path) -> None:
    """A name the file system gave as bytes (surrogate escapes): an internal error, exit
    70, before; now the file itself is read, quickly."""
    name = os.fsdecode(b"\xff.db")
    _copy(tmp_path, name).close()
    found = _wq("--db", name, "list", "--json", cwd=tmp_path)
    assert found["code"] == 0, found
    assert found["loaded"] == [], found
    assert len(json.loads(found["stdout"])["tasks"]) == 33


async def test_a_locked_file_is_one_wait_and_exit_3(filled: WorkerQueue, tmp_path: Path) -> None:
    """A database another connection holds locked past the busy timeout: the quick path
    gave up and the queue's own path waited as long again; now it is one wait, then the
    storage error."""
    holder = _copy(tmp_path, "locked.db")
    try:
        holder.execute("PRAGMA journal_mode = DELETE")  # in WAL, readers go past a writer
        holder.execute("BEGIN EXCLUSIVE")
        env = {"QUEUE_BUSY_TIMEOUT": "0.5"}
        found = _wq("--db", "locked.db", "list", cwd=tmp_path, env=env)
    finally:
        holder.close()
    assert found["code"] == 3, found
    assert "database is locked" in found["stderr"], found
    assert found["loaded"] == [], found  # refused where it waited: no second open
