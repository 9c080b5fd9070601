"""Liveness with real worker processes: killed, frozen, and cancelled from another process.

Every worker here keeps the default visibility timeout (an hour): without liveness a killed
worker's task would wait it out, and a cancel would wait for a lease renewal 20 minutes away.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.runtime_worker import job_task, run_until_completed, task_state_is, wait_until
from tests.spawning import Spawner, exit_code, lines, until_logged
from worker import QueueConfig, TaskState, WorkerQueue
from worker.storage.sqlite.connection import sqlite_path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

HOUR = "3600"


async def test_a_killed_workers_task_runs_again_within_seconds_with_default_settings(
    database_url: str, tmp_path: Path, spawner: Spawner
) -> None:
    """Default liveness settings: a beat every 5 s, dead after 15 s, a sweep every 5 s."""
    log = tmp_path / "job.log"
    config = QueueConfig(database_url=database_url, retry_base_delay=0.0)
    assert (config.heartbeat_interval, config.worker_dead_after) == (5.0, 15.0)
    async with WorkerQueue(config) as queue:
        task = job_task(log=str(log), seconds=[3600.0, 0.1])
        await queue.enqueue([task])
        doomed = spawner.start(database_url, "--ready-file", str(tmp_path / "r"),
                               "--visibility-timeout", HOUR, "--sweep-interval", "5")  # fmt: skip
        await until_logged(log, f"started {task.id} 1", doomed, spawner)
        os.kill(doomed.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert await exit_code(doomed, 10, spawner) == -signal.SIGKILL

        await run_until_completed(queue, task.id, 60)
        took = time.monotonic() - killed
        print(f"the killed worker's task completed elsewhere {took:.1f} s after the kill")
        assert took < 45  # about 15 s (10-20 s by the settings), not the hour's lease
        done = await queue.get_task(task.id)
        assert done.attempt_count == 2
        assert done.expired_count == 1
        assert done.errors[0].error.startswith("worker ")
        assert lines(log) == [f"started {task.id} 1", f"started {task.id} 2", f"done {task.id} 2"]


async def freeze_between_writes(database_url: str, pid: int) -> None:
    """SIGSTOP ``pid`` while this test keeps every writer out, so that the frozen process
    cannot be inside a write (a process frozen inside a write transaction holds its locks:
    on SQLite the single writer lock, on PostgreSQL its rows' locks)."""
    path = sqlite_path(database_url)
    if path is not None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            os.kill(pid, signal.SIGSTOP)
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    # EXCLUSIVE waits for every transaction that wrote (or locked rows) in these tables to
    # end, and lets only reads in while held.
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker:  # its transaction begins with the LOCK
            await locker.execute(sa.text("LOCK TABLE tasks, workers IN EXCLUSIVE MODE"))
            os.kill(pid, signal.SIGSTOP)
            await locker.rollback()
    finally:
        await engine.dispose()


async def test_a_frozen_worker_wakes_to_find_its_claims_gone_and_stops_their_handlers(
    database_url: str, tmp_path: Path, spawner: Spawner
) -> None:
    log = tmp_path / "job.log"
    config = QueueConfig(
        database_url=database_url,
        retry_base_delay=0.0,
        heartbeat_interval=0.2,
        worker_dead_after=1.0,
        sweep_interval=0.1,
    )
    async with WorkerQueue(config) as queue:
        task = job_task(log=str(log), seconds=[3600.0, 0.1])
        await queue.enqueue([task])
        frozen = spawner.start(database_url, "--ready-file", str(tmp_path / "r"),
                               "--visibility-timeout", HOUR, "--heartbeat-interval", "0.2",
                               "--dead-after", "1")  # fmt: skip
        await until_logged(log, f"started {task.id} 1", frozen, spawner)
        await freeze_between_writes(database_url, frozen.pid)
        try:
            await run_until_completed(queue, task.id, 30)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        # Awake again: its next beat says the claim is gone, and the handler is stopped
        # (it would otherwise sleep on for an hour and then try to complete the task).
        err = tmp_path / "worker0.err"
        give_up = time.monotonic() + 30
        while "outcome dropped" not in err.read_text():
            assert time.monotonic() < give_up, spawner.output(frozen)
            await asyncio.sleep(0.05)
        os.kill(frozen.pid, signal.SIGTERM)
        assert await exit_code(frozen, 15, spawner) == 0, spawner.output(frozen)
        assert '"completed": 0' in spawner.output(frozen)
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED
        assert done.attempt_count == 2
        assert done.items[0].result == {"pid": os.getpid(), "attempt": 2}
        assert lines(log) == [f"started {task.id} 1", f"started {task.id} 2", f"done {task.id} 2"]


async def test_a_cancel_from_another_process_stops_the_handler_with_default_settings(
    database_url: str, tmp_path: Path, spawner: Spawner
) -> None:
    log = tmp_path / "job.log"
    async with WorkerQueue(QueueConfig(database_url=database_url)) as queue:
        task = job_task(log=str(log), seconds=[3600.0])
        await queue.enqueue([task])
        worker = spawner.start(database_url, "--ready-file", str(tmp_path / "r"),
                               "--visibility-timeout", HOUR)  # fmt: skip
        await until_logged(log, f"started {task.id} 1", worker, spawner)
        asked = time.monotonic()
        assert await queue.mark_as_cancelled(task.id) is TaskState.PROCESSING
        await wait_until(
            lambda: task_state_is(queue, task.id, TaskState.CANCELLED), 15, "cancelled"
        )
        print(f"a cancel from another process ended the task in {time.monotonic() - asked:.2f} s")
        os.kill(worker.pid, signal.SIGTERM)
        assert await exit_code(worker, 15, spawner) == 0, spawner.output(worker)
        assert '"cancelled": 1' in spawner.output(worker)
        assert lines(log) == [f"started {task.id} 1"]  # interrupted: never done
