"""Workers as real OS processes (``python -m tests.runtime_worker``): crashes and signals.

SIGKILL mid-task (the lease expires, another worker redoes the task once), SIGTERM (running
handlers get the shutdown grace, then their tasks are released without using an attempt), and
a second SIGTERM (stop now).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from pydantic import JsonValue

from tests.runtime_worker import (
    job_task,
    run_until_completed,
    runtime_config,
)
from tests.spawning import Spawner, exit_code, lines, until_found, until_logged
from worker import ProcessorRegistry, TaskContext, TaskItem, TaskState, Worker, WorkerQueue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def test_a_worker_killed_mid_task_is_replaced_and_the_task_completes_once(
    database_url: str, tmp_path: Path, spawner: Spawner
) -> None:
    log = tmp_path / "job.log"
    config = runtime_config(database_url, default_visibility_timeout=1.0)
    async with WorkerQueue(config) as queue:
        task = job_task(log=str(log), seconds=[30.0, 0.1])
        await queue.enqueue([task])
        doomed = spawner.start(database_url, "--ready-file", str(tmp_path / "r"),
                               "--visibility-timeout", "1")  # fmt: skip
        await until_logged(log, f"started {task.id} 1", doomed, spawner)
        os.kill(doomed.pid, signal.SIGKILL)
        assert await exit_code(doomed, 10, spawner) == -signal.SIGKILL

        heir = await run_until_completed(queue, task.id, 15)
        done = await queue.get_task(task.id)
        assert done.attempt_count == 2
        assert done.expired_count == 1
        assert done.items[0].result == {"pid": os.getpid(), "attempt": 2}
        assert lines(log) == [f"started {task.id} 1", f"started {task.id} 2", f"done {task.id} 2"]
        assert heir.counts["completed"] == 1


async def quick(item: TaskItem, ctx: TaskContext) -> JsonValue:
    return "quick"


async def test_sigterm_releases_a_running_task_without_using_an_attempt(
    database_url: str, tmp_path: Path, spawner: Spawner
) -> None:
    log = tmp_path / "job.log"
    async with WorkerQueue(runtime_config(database_url)) as queue:
        task = job_task(log=str(log), seconds=[30.0])
        await queue.enqueue([task])
        worker = spawner.start(database_url, "--ready-file", str(tmp_path / "r"), "--grace", "0.3")
        await until_logged(log, f"started {task.id} 1", worker, spawner)
        os.kill(worker.pid, signal.SIGTERM)
        assert await exit_code(worker, 10, spawner) == 0, spawner.output(worker)
        assert '"released": 1' in spawner.output(worker)
        released = await queue.get_task(task.id)
        assert released.state is TaskState.PENDING
        assert released.attempt_count == 0
        assert await queue.live_workers() == []

        registry = ProcessorRegistry()
        registry.add("job", quick)
        async with asyncio.timeout(10):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED
        assert done.attempt_count == 1
        assert done.items[0].result == "quick"


async def test_sigterm_lets_a_running_task_finish_within_the_grace(
    database_url: str, tmp_path: Path, spawner: Spawner
) -> None:
    log = tmp_path / "job.log"
    async with WorkerQueue(runtime_config(database_url)) as queue:
        task = job_task(log=str(log), seconds=[1.0])
        await queue.enqueue([task])
        worker = spawner.start(database_url, "--ready-file", str(tmp_path / "r"), "--grace", "20")
        await until_logged(log, f"started {task.id} 1", worker, spawner)
        os.kill(worker.pid, signal.SIGTERM)
        assert await exit_code(worker, 15, spawner) == 0, spawner.output(worker)
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED
        assert done.attempt_count == 1


async def test_a_second_sigterm_stops_at_once(
    database_url: str, tmp_path: Path, spawner: Spawner
) -> None:
    log = tmp_path / "job.log"
    async with WorkerQueue(runtime_config(database_url)) as queue:
        task = job_task(log=str(log), seconds=[30.0])
        await queue.enqueue([task])
        worker = spawner.start(database_url, "--ready-file", str(tmp_path / "r"), "--grace", "30")
        await until_logged(log, f"started {task.id} 1", worker, spawner)
        os.kill(worker.pid, signal.SIGTERM)
        draining = "waiting up to 30.0 s for 1 running task(s)"  # worker/runtime/loop.py's log line
        await until_found(
            spawner.err_path(worker), lambda found: any(draining in x for x in found),
            draining, worker, spawner,
        )  # fmt: skip
        assert worker.poll() is None  # waiting for the handler, within its 30 s grace
        os.kill(worker.pid, signal.SIGTERM)
        assert await exit_code(worker, 5, spawner) == 0, spawner.output(worker)
        released = await queue.get_task(task.id)
        assert released.state is TaskState.PENDING
        assert released.attempt_count == 0
