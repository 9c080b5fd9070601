"""A write-ahead log deleted under a running queue: it stops writing, and keeps what it had.

SQLite itself says nothing: a process goes on committing into the unlinked log, which is lost
when the process goes. The queue notices at its next commit (or at a failed checkpoint),
copies what its writer connection still holds into the database file, refuses every later
write with ``DatabaseLostError``, and a worker on it stops and exits non-zero.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.runtime_worker import job_task, runtime_config
from tests.spawning import Spawner, exit_code, lines
from tests.support import database_of, make_task
from worker import DatabaseLostError, QueueConfig, TaskState, WorkerQueue

pytestmark = pytest.mark.sqlite_only("SQLite's write-ahead log file and its checkpoints")


def tasks_in_the_file(db: Path) -> dict[str, str]:
    """Task states as the database file itself holds them (the log not read)."""
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'tasks'").fetchall():
            return {}
        return dict(conn.execute("SELECT id, state FROM tasks").fetchall())
    finally:
        conn.close()


def wal(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


async def test_a_deleted_log_stops_every_later_write_and_keeps_what_was_committed(
    config: QueueConfig, db_path: Path
) -> None:
    # No background checkpoint: every commit stays in the log until the rescue.
    async with WorkerQueue(config.model_copy(update={"sqlite_checkpoint_interval": 3600})) as queue:
        kept = [make_task(str(n)) for n in range(5)]
        await queue.enqueue(kept)
        (claimed,) = await queue.dequeue(size=1)
        await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id)
        assert tasks_in_the_file(db_path) == {}  # all of it is still in the log
        wal(db_path).unlink()
        late = make_task("late")
        with pytest.raises(DatabaseLostError, match=r"write-ahead log .* was deleted"):
            await queue.enqueue([late])  # committed into the unlinked log, then noticed
        assert queue.storage_lost.is_set()
        with pytest.raises(DatabaseLostError):
            await queue.dequeue(size=1)
        with pytest.raises(DatabaseLostError):
            await queue.hold(kept[1].id)
        # The rescue copied the log the queue held into the file: nothing committed is gone.
        in_file = tasks_in_the_file(db_path)
        assert {t.id for t in kept} <= set(in_file)
        assert in_file[claimed.id] == TaskState.COMPLETED.value


async def test_a_failed_checkpoint_stops_writes_and_a_busy_one_does_not(
    config: QueueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = config.model_copy(update={"sqlite_checkpoint_interval": 0.01})
    async with WorkerQueue(fast) as queue:
        checkpointer = database_of(queue)._checkpointer
        assert checkpointer is not None
        failures: list[sqlite3.Error] = []
        copy = checkpointer._checkpoint
        copied_after_a_failure = threading.Event()

        def failing(mode: str) -> int:
            if failures:
                raise failures.pop(0)
            copied_after_a_failure.set()
            return copy(mode)

        monkeypatch.setattr(checkpointer, "_checkpoint", failing)
        busy = sqlite3.OperationalError("database is locked")
        busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
        failures.append(busy)
        await queue.enqueue([make_task("one")])
        # Busy is a lock held elsewhere: the checkpointer goes on, and so do writes.
        assert await asyncio.to_thread(copied_after_a_failure.wait, 10)
        assert not queue.storage_lost.is_set()
        await queue.enqueue([make_task("one more")])
        failures.append(sqlite3.OperationalError("disk I/O error"))
        await queue.enqueue([make_task("two")])
        async with asyncio.timeout(10):
            await queue.storage_lost.wait()
        with pytest.raises(DatabaseLostError, match="a WAL checkpoint failed"):
            await queue.enqueue([make_task("three")])


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("ending", ["exits by itself", "killed after the rescue"])
async def test_a_worker_whose_log_is_deleted_stops_and_loses_no_reported_completion(
    db_path: Path, tmp_path: Path, spawner: Spawner, ending: str
) -> None:
    report = tmp_path / "completed.txt"
    async with WorkerQueue(runtime_config(db_path)) as queue:
        await queue.enqueue([job_task(seconds=[0.02]) for _ in range(400)])
    worker = spawner.start(db_path, "--ready-file", str(tmp_path / "r"),
                           "--report-file", str(report), "--concurrency", "4")  # fmt: skip
    give_up = time.monotonic() + 30
    while len(lines(report)) < 40:
        assert worker.poll() is None, spawner.output(worker)
        assert time.monotonic() < give_up, spawner.output(worker)
        await asyncio.sleep(0.02)
    wal(db_path).unlink()
    err = tmp_path / "worker0.err"
    if ending == "killed after the rescue":
        # Killed, its connections never close: only the rescue can have saved its commits.
        while "log frames this process holds into the database file" not in err.read_text():
            assert worker.poll() is None, spawner.output(worker)
            assert time.monotonic() < give_up + 30, spawner.output(worker)
            await asyncio.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)
        await exit_code(worker, 10, spawner)
    else:
        assert await exit_code(worker, 30, spawner) != 0, spawner.output(worker)
        assert "DatabaseLostError" in err.read_text()
    reported = lines(report)
    assert 40 <= len(reported) < 400  # it stopped acknowledging
    async with WorkerQueue(runtime_config(db_path)) as reopened:
        for task_id in reported:
            task = await reopened.get_task(task_id)
            assert task.state is TaskState.COMPLETED, (task_id, spawner.output(worker))
