"""Django's task framework on the queue, on both backends: tasks enqueued with Django's own
API (``@task``, ``enqueue``, ``using``) through ``WorkerQueueBackend``, run by a real
``wq worker`` process that sets Django up, and read back with ``get_result``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.test_cli import ROOT, cli_env
from tests.test_sync_client import speech

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
def django_settings() -> None:
    """Django configured once in this process, with tests/django_settings.py's settings."""
    import django
    from django.conf import settings

    if not settings.configured:
        from tests import django_settings as module

        settings.configure(
            **{name: getattr(module, name) for name in dir(module) if name.isupper()}
        )
        django.setup()


def tasks_setting(database_url: str, **options: Any) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "worker.integrations.django.WorkerQueueBackend",
            "QUEUES": ["default", "mail", "bad queue"],
            "OPTIONS": {"database_url": database_url, **options},
        }
    }


@pytest.fixture
def jobs(django_settings: None, database_url: str) -> Iterator[ModuleType]:
    """tests/django_jobs.py, its backend on this test's database."""
    from django.test import override_settings

    from worker.integrations.django import close_queues

    with override_settings(TASKS=tasks_setting(database_url)):
        from tests import django_jobs

        yield django_jobs
        close_queues()


def run_worker(
    database_url: str, tmp_path: Path, *args: str, settings: bool = True
) -> subprocess.CompletedProcess[str]:
    """``wq worker --burst`` on the database, with the test project's settings."""
    env = {"DJANGO_TEST_QUEUE_URL": database_url, "DJANGO_TEST_SIGNALS": str(tmp_path / "signals")}
    if settings:
        env["DJANGO_SETTINGS_MODULE"] = "tests.django_settings"
    command = [sys.executable, "-m", "worker", "--db", database_url, "worker", "--burst", *args]
    proc = subprocess.run(
        command, cwd=ROOT, env=cli_env(env), capture_output=True, text=True, timeout=90,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def test_tasks_enqueued_with_djangos_api_run_in_wq_worker(
    jobs: ModuleType, database_url: str, tmp_path: Path
) -> None:
    from worker.integrations.django.compat import TaskResultStatus, task_enqueued

    enqueued: list[str] = []

    def on_enqueued(sender: type[Any], task_result: Any, **kwargs: Any) -> None:
        enqueued.append(task_result.id)

    task_enqueued.connect(on_enqueued)
    try:
        added = jobs.add.enqueue(2, b=3)
        shouted = jobs.shout.enqueue("hello")
        context = jobs.whoami.enqueue(greeting="hi")
    finally:
        task_enqueued.disconnect(on_enqueued)
    assert enqueued == [added.id, shouted.id, context.id]
    assert added.status == TaskResultStatus.READY
    assert added.args == [2]
    assert added.kwargs == {"b": 3}
    assert jobs.add.get_result(added.id).status == TaskResultStatus.READY
    with pytest.raises(ValueError, match="not finished"):
        _ = added.return_value

    run_worker(database_url, tmp_path)

    added.refresh()
    assert added.status == TaskResultStatus.SUCCESSFUL
    assert added.return_value == 5
    assert added.is_finished
    assert added.attempts == 1
    assert added.errors == []
    assert added.enqueued_at is not None
    assert added.started_at is not None
    assert added.finished_at is not None
    assert added.enqueued_at <= added.started_at <= added.finished_at
    assert added.enqueued_at.tzinfo is not None  # USE_TZ: aware datetimes
    assert jobs.shout.get_result(shouted.id).return_value == {"text": "HELLO"}  # async def
    seen = jobs.whoami.get_result(context.id).return_value
    assert seen == {"greeting": "hi", "id": context.id, "attempt": 1, "status": "RUNNING"}
    # The worker sent Django's signals, with the task's id and status at each.
    signals = (tmp_path / "signals").read_text().splitlines()
    for result in (added, shouted, context):
        assert f"started {result.id} RUNNING" in signals
        assert f"finished {result.id} SUCCESSFUL" in signals


def test_a_task_that_raises_is_failed_with_its_class_and_traceback(
    jobs: ModuleType, database_url: str, tmp_path: Path
) -> None:
    from worker.integrations.django.compat import TaskResultStatus

    failed = jobs.fail.enqueue("boom")
    opaque = jobs.opaque.enqueue()
    run_worker(database_url, tmp_path)

    result = jobs.fail.get_result(failed.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.is_finished
    assert result.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    [error] = result.errors  # one attempt: max_attempts defaults to 1, as Django's backends
    assert error.exception_class is ValueError
    assert error.exception_class_path == "builtins.ValueError"
    assert "Traceback (most recent call last)" in error.traceback
    assert "ValueError: boom" in error.traceback
    assert "raise ValueError(message)" in error.traceback
    assert f"finished {failed.id} FAILED" in (tmp_path / "signals").read_text()
    # A return value with no JSON form fails the attempt too, saying so.
    [error] = jobs.opaque.get_result(opaque.id).errors
    assert error.exception_class is TypeError
    assert "Unsupported type" in error.traceback


def test_priority_queue_name_and_run_after_are_honoured(
    jobs: ModuleType, database_url: str, tmp_path: Path
) -> None:
    from worker import SyncQueue
    from worker.integrations.django.compat import TaskResultStatus

    order = tmp_path / "order"
    low = jobs.record.using(priority=-5).enqueue(str(order), "low")
    normal = jobs.record.enqueue(str(order), "normal")
    high = jobs.record.using(priority=50).enqueue(str(order), "high")
    mail = jobs.record.using(queue_name="mail", priority=100).enqueue(str(order), "mail")
    later = datetime.now(UTC) + timedelta(hours=1)
    deferred = jobs.record.using(run_after=later, priority=100).enqueue(str(order), "later")

    with SyncQueue(database_url) as queue:
        assert [queue.get_task(r.id).priority for r in (low, normal, high)] == [-5, 0, 50]
        assert queue.get_task(mail.id).queue == "mail"
        assert queue.get_task(deferred.id).schedule_at == pytest.approx(later.timestamp())
    run_after = jobs.record.get_result(deferred.id).task.run_after
    assert run_after is not None
    assert abs((run_after - later).total_seconds()) < 0.001

    run_worker(database_url, tmp_path, "--queue", "default", "--concurrency", "1")

    assert order.read_text().splitlines() == ["high", "normal", "low"]
    assert jobs.record.get_result(high.id).status == TaskResultStatus.SUCCESSFUL
    for waiting in (mail, deferred):  # another queue's; not due for an hour
        assert jobs.record.get_result(waiting.id).status == TaskResultStatus.READY
    got = jobs.record.get_result(mail.id)
    assert got.task.queue_name == "mail"
    assert got.task.priority == 100


def test_what_django_or_the_queue_cannot_take_is_refused_before_anything_is_written(
    jobs: ModuleType, database_url: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from worker import SyncQueue
    from worker.integrations.django import WorkerQueueBackend
    from worker.integrations.django.compat import InvalidTask, TaskResultDoesNotExist

    with pytest.raises(InvalidTask, match="priority must be a whole number"):
        jobs.add.using(priority=101)
    with pytest.raises(InvalidTask, match="Queue 'nowhere' is not valid"):
        jobs.add.using(queue_name="nowhere")
    with pytest.raises(InvalidTask, match="'bad queue' cannot be a queue's"):
        jobs.add.using(queue_name="bad queue")
    with pytest.raises(InvalidTask, match="aware"):
        jobs.add.using(run_after=datetime(2030, 1, 1))  # naive, with USE_TZ
    with pytest.raises(
        TypeError, match="add: its arguments must have a JSON form: Unsupported type"
    ):
        jobs.add.enqueue(object(), 1)
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result("not-an-id")
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    with SyncQueue(database_url) as queue:
        assert sum(queue.stats().values()) == 0
        other = queue.submit(speech())  # not a Django task: no TaskResult of it
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(other.id)
    refused: list[tuple[dict[str, Any], str]] = [
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"databse_url": "x"}, "unknown option 'databse_url'"),
        ({"busy_timeout": -1}, "busy_timeout"),
    ]
    for options, problem in refused:
        params = tasks_setting(database_url, **options)["default"]
        with pytest.raises(ImproperlyConfigured, match=problem):
            WorkerQueueBackend("default", params)


def test_a_cancelled_task_and_a_worker_without_settings_are_failed_saying_why(
    jobs: ModuleType, database_url: str, tmp_path: Path
) -> None:
    from worker import SyncQueue
    from worker.integrations.django import TaskCancelled, TaskInterrupted
    from worker.integrations.django.compat import TaskResultStatus

    cancelled = jobs.add.enqueue(1, 2)
    with SyncQueue(database_url) as queue:
        queue.cancel(cancelled.id, reason="not wanted")
    result = jobs.add.get_result(cancelled.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class is TaskCancelled

    orphan = jobs.add.enqueue(1, 2)
    run_worker(database_url, tmp_path, settings=False)
    result = jobs.add.get_result(orphan.id)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is TaskInterrupted
    assert "DJANGO_SETTINGS_MODULE" in error.traceback


async def test_aenqueue_and_aget_result_from_async_code(
    jobs: ModuleType, database_url: str, tmp_path: Path
) -> None:
    import asyncio

    from worker.integrations.django.compat import TaskResultStatus

    result = await jobs.add.aenqueue(20, 22)
    assert (await jobs.add.aget_result(result.id)).status == TaskResultStatus.READY
    await asyncio.to_thread(run_worker, database_url, tmp_path)
    await result.arefresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
