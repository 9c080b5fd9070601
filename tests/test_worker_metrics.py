"""``wq worker --metrics-port``: a real worker process serves its own Prometheus metrics on
127.0.0.1; the scrape, parsed by prometheus-client's parser, matches what ran (both backends:
the lease expiry and the retries go through the database)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_cli import ROOT, cli_env, with_queue, wq, wq_command
from worker import Task, TaskItem, TaskState, WorkerQueue
from worker.builtins.requests import CommandRequest
from worker.runtime.process_metrics import NAMES

pytestmark = pytest.mark.timeout(180)

ENV = {"QUEUE_ALLOW_COMMANDS": "true", "QUEUE_SWEEP_INTERVAL": "0.2", "QUEUE_RETRY_BASE_DELAY": "0"}


def command(*argv: str, **options: object) -> Task:
    return Task(items=[TaskItem(request=CommandRequest(argv=list(argv)))], queue="work", **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, got), v in found.items() if n == name and wanted <= set(got))


def test_a_worker_s_metrics_count_what_it_ran(database_url: str) -> None:
    ok = [command("true") for _ in range(3)]
    failing = command("false", max_attempts=2)
    lost = command("true", visibility_timeout=0.3)

    async def setup(queue: WorkerQueue) -> None:
        await queue.enqueue([lost])
        assert [t.id for t in await queue.dequeue(size=1)] == [lost.id]  # its lease expires
        await queue.enqueue([*ok, failing])

    with_queue(database_url, setup)
    port = free_port()
    worker = subprocess.Popen(
        wq_command(database_url, "worker", "--queue", "work", "--metrics-port", str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(ENV), cwd=ROOT,
    )  # fmt: skip
    try:
        ids = [t.id for t in (*ok, failing, lost)]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            tasks = with_queue(database_url, lambda q: _tasks(q, ids))
            if all(t.state in (TaskState.COMPLETED, TaskState.DISCARDED) for t in tasks):
                break
            time.sleep(0.1)  # polling a condition, with a deadline
        else:
            raise AssertionError(f"tasks did not finish: {[t.state for t in tasks]}")
        text = ""
        while time.monotonic() < deadline:  # the last outcome's event may trail its write
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            found = samples(text)
            if total(found, "worker_queue_worker_tasks_finished_total") >= 6:
                break
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    finally:
        worker.kill()
        worker.communicate()
    found = samples(text)
    finished = "worker_queue_worker_tasks_finished_total"
    # 3 + the lost one completed; the failing one failed once (retried) and was discarded.
    assert total(found, finished, queue="work", outcome="completed") == 4
    assert total(found, finished, queue="work", outcome="failed") == 1
    assert total(found, finished, queue="work", outcome="discarded") == 1
    assert total(found, "worker_queue_worker_tasks_started_total", queue="work") == 6
    assert total(found, "worker_queue_worker_tasks_retried_total", queue="work") == 1
    assert total(found, "worker_queue_worker_lease_expiries_total", queue="work") == 1
    assert total(found, "worker_queue_worker_acks_refused_total") == 0
    assert total(found, "worker_queue_worker_processing_seconds_count", queue="work") == 6
    assert total(found, "worker_queue_worker_queue_wait_seconds_count", queue="work") == 6
    assert total(found, "worker_queue_worker_webhook_deliveries_total") == 0
    kinds = {dict(labels).get("kind") for (name, labels) in found if name == finished}
    assert kinds == {"command"}
    exposed = {family.name for family in text_string_to_metric_families(text)}
    assert {name.removesuffix("_total") for name in NAMES} <= exposed | {
        n.removesuffix("_seconds") + "_seconds" for n in exposed
    }
    for name, labels in found:
        assert not {"task_id", "id", "attempt"} & {key for key, _ in labels}, name


async def _tasks(queue: WorkerQueue, ids: list[str]) -> list[Task]:
    return [await queue.get_task(task_id) for task_id in ids]


@pytest.mark.sqlite_only("the refusal happens before the database is opened")
def test_without_prometheus_client_the_error_names_the_extra(
    database_url: str, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked" / "prometheus_client"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed (test)')\n")
    env = {"PYTHONPATH": str(blocked.parent)}
    done = wq(database_url, "worker", "--burst", "--metrics-port", str(free_port()), env=env)
    assert done.code == 2, done
    assert "pip install 'worker-queue[web]'" in done.err
    assert "Traceback" not in done.err
    pooled = wq(database_url, "worker", "--burst", "-p", "2", "--metrics-port", "9")
    assert pooled.code == 2, pooled
    assert "serves one worker process" in pooled.err
