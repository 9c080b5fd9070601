"""``wq cancel`` of a running task waits for its worker to stop it; ``wq worker
--log-format json`` writes JSON lines. A real worker process (``wq worker``) runs real
``sleep`` commands; its lease heartbeat (a third of QUEUE_VISIBILITY_TIMEOUT=1.5) brings it
the cancel."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import ROOT, cli_env, with_queue, wq_all, wq_command
from worker import Task, TaskItem, TaskState, WorkerQueue
from worker.builtins.requests import CommandRequest

pytestmark = pytest.mark.timeout(180)

WORKER_ENV = {
    "QUEUE_ALLOW_COMMANDS": "true",
    "QUEUE_VISIBILITY_TIMEOUT": "1.5",
    "QUEUE_CONCURENCY": "2",  # misspelt: its warning is a JSON line too
}


def sleeper(queue: str = "work") -> Task:
    return Task(items=[TaskItem(request=CommandRequest(argv=["sleep", "120"]))], queue=queue)


def wait_until_running(db: str | Path, task_id: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        task = with_queue(db, lambda queue: queue.get_task(task_id))
        if task.state is TaskState.PROCESSING:
            return
        time.sleep(0.05)  # polling a condition, with a deadline
    raise AssertionError(f"task {task_id} never started")


def test_cancel_waits_for_a_running_task_and_worker_logs_json(database_url: str) -> None:
    waited, at_once, unserved = sleeper(), sleeper(), sleeper(queue="nobody-serves")

    async def setup(queue: WorkerQueue) -> None:
        await queue.enqueue([waited, at_once, unserved])
        claimed = await queue.dequeue(queues=["nobody-serves"])  # leased, never stopped
        assert [task.id for task in claimed] == [unserved.id]

    with_queue(database_url, setup)
    worker = subprocess.Popen(
        wq_command(database_url, "worker", "--queue", "work", "--log-format", "json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(WORKER_ENV),
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_until_running(database_url, waited.id)
        wait_until_running(database_url, at_once.id)
        cancelled, quick, stuck, stuck_text = wq_all(
            database_url,
            ("cancel", waited.id, "--wait", "60s"),
            ("cancel", at_once.id, "--no-wait"),
            ("cancel", unserved.id, "--wait", "0.5s", "--json"),
            ("cancel", unserved.id, "--wait", "0.2s"),
        )
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=60)
    finally:
        worker.kill()
        worker.communicate()  # reaps it and closes its pipes, whatever happened above

    assert (cancelled.code, cancelled.out.strip()) == (0, f"{waited.id} cancelled"), cancelled
    assert quick.code == 0, quick
    assert quick.out.strip() == f"{at_once.id} processing (cancel requested: its worker stops it)"
    assert stuck.code == 0, stuck
    assert stuck.json() == {"id": unserved.id, "state": "processing", "cancel_pending": True}
    assert stuck_text.code == 0, stuck_text
    assert stuck_text.out.strip() == (
        f"{unserved.id} processing (cancel requested; its worker has not stopped it within "
        "0.2s: it stays requested, see `wq status`)"
    )

    assert worker.returncode == 0, log
    records = [json.loads(line) for line in log.splitlines()]  # every line is one object
    assert records, log
    for record in records:
        assert {"ts", "level", "logger", "message"} <= set(record)
        assert record["ts"].endswith("+00:00")
    assert any("started" in record["message"] for record in records)
    (warning,) = [record for record in records if record["logger"] == "worker.core.config"]
    assert warning["level"] == "WARNING"
    assert "did you mean QUEUE_CONCURRENCY?" in warning["message"]
    summary = records[-1]
    assert summary["event"] == "worker_summary"
    assert summary["counts"].get("cancelled", 0) >= 1


def test_a_json_line_carries_the_records_extras_and_traceback() -> None:
    from worker.cli.logs import JsonFormatter

    formatter = JsonFormatter()
    try:
        raise ValueError("bad input")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "worker.runtime.acks", logging.WARNING, __file__, 1, "task %s retried", ("T1",), exc_info
    )
    for name, value in {"task_id": "T1", "kind": "tts", "attempt": 2, "delay_s": 1.5}.items():
        setattr(record, name, value)
    record.created = 0.25
    document = json.loads(formatter.format(record))
    assert document.pop("exc_info").endswith("ValueError: bad input")
    assert document == {
        "ts": "1970-01-01T00:00:00.250+00:00",
        "level": "WARNING",
        "logger": "worker.runtime.acks",
        "message": "task T1 retried",
        "task_id": "T1",
        "kind": "tts",
        "attempt": 2,
        "delay_s": 1.5,
    }
    plain = logging.LogRecord("worker", logging.INFO, __file__, 1, "hello", (), None)
    assert set(json.loads(formatter.format(plain))) == {"ts", "level", "logger", "message"}
