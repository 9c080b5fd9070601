"""Purging tasks removes what the speech processors wrote for them under
``<data_dir>/outputs/<task id>/`` (the ``tts`` package's ``worker.purge_hooks`` entry point),
through the API and through ``wq purge``, and nothing of the tasks that stay."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from tests.runtime_worker import runtime_config
from tests.support import FakeClock
from tests.test_cli import wq
from tts import TextToSpeechRequest
from tts.engines import EngineRegistry
from tts.outputs import remove_task_outputs
from tts.processor import register
from tts.settings import TTSSettings
from worker import ProcessorRegistry, QueueConfig, Task, TaskItem, TaskState, Worker, WorkerQueue

pytestmark = pytest.mark.timeout(90)

DAY = 86_400.0


@pytest.fixture(scope="module")
def engines() -> EngineRegistry:
    return EngineRegistry()


async def speak_all(queue: WorkerQueue, engines: EngineRegistry, count: int) -> list[str]:
    """Enqueue ``count`` short speech tasks and run a burst worker; their ids."""
    requests = [
        TextToSpeechRequest(text=f"Task {i}.", voice_id="espeak.en-us") for i in range(count)
    ]
    tasks = [Task(items=[TaskItem(request=request)]) for request in requests]
    await queue.enqueue(tasks)
    registry = ProcessorRegistry()
    register(registry, TTSSettings(), engines)
    async with asyncio.timeout(30):
        await Worker(queue, registry, burst=True, handle_signals=False).run()
    for task in tasks:
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED, done.last_error
    return [task.id for task in tasks]


def folders(data: Path) -> set[str]:
    return {p.name for p in (data / "outputs").iterdir()}


async def test_purge_removes_the_output_folders_of_the_purged_tasks_only(
    tmp_path: Path, engines: EngineRegistry
) -> None:
    db, data = tmp_path / "queue.db", tmp_path / "data"
    now = time.time()
    clock = FakeClock(now - 3 * DAY)  # the queue's clock stamps finished_at
    async with WorkerQueue(runtime_config(db, data_dir=data), clock=clock) as queue:
        oldest = await speak_all(queue, engines, 3)
        clock.now = now - 2 * DAY
        older = await speak_all(queue, engines, 3)
        clock.now = now
        recent = await speak_all(queue, engines, 2)
        assert folders(data) == {*oldest, *older, *recent}

        assert await queue.purge(older_than_s=2.5 * DAY) == 3
        assert folders(data) == {*older, *recent}

    purged = wq(db, "purge", "--older-than", "1d", "--json", env={"QUEUE_DATA_DIR": str(data)})
    assert purged.code == 0, purged.err
    assert purged.json()["deleted"] == 3
    assert folders(data) == set(recent)


async def test_a_failing_hook_is_logged_with_the_ids_and_the_purge_stands(
    tmp_path: Path,
    engines: EngineRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, data = tmp_path / "queue.db", tmp_path / "data"
    left_in_database: list[int] = []

    def broken(config: QueueConfig, task_ids: list[str]) -> None:
        with sqlite3.connect(db) as conn:  # the hook runs after the purge committed
            marks = ",".join("?" * len(task_ids))
            query = f"SELECT count(*) FROM tasks WHERE id IN ({marks})"
            left_in_database.append(conn.execute(query, task_ids).fetchone()[0])
        raise PermissionError("read-only outputs")

    hooks = [("broken", broken), ("tts", remove_task_outputs)]
    monkeypatch.setattr("worker.queue.purge_hooks.load_purge_hooks", lambda: hooks)
    async with WorkerQueue(runtime_config(db, data_dir=data)) as queue:
        ids = await speak_all(queue, engines, 2)
        with caplog.at_level(logging.ERROR, logger="worker.queue.purge_hooks"):
            assert await queue.purge(older_than_s=0) == 2
        assert await queue.get_queue_stats() == {**{s.value: 0 for s in TaskState}, "total": 0}
    assert left_in_database == [0]
    [record] = caplog.records
    assert "purge hook 'broken' failed" in record.getMessage()
    assert all(task_id in record.getMessage() for task_id in ids)
    assert folders(data) == set()  # the next hook still ran
