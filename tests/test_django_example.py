"""examples/django_project runs as written, on both backends: Django's ``runserver`` on a
free 127.0.0.1 port enqueues through the view, ``wq worker`` (with the project's settings)
runs the task, and the other view shows its result."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.test_cli import ROOT, cli_env
from tests.test_fastapi_example import _free_port
from worker import SyncQueue

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

PROJECT = ROOT / "examples" / "django_project"


def test_the_django_example_enqueues_and_wq_worker_runs_it(
    database_url: str, tmp_path: Path
) -> None:
    env = cli_env({"QUEUE_DATABASE_URL": database_url, "PYTHONPATH": str(PROJECT)})
    manage = [sys.executable, str(PROJECT / "manage.py")]
    check = subprocess.run(
        [*manage, "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    port = _free_port()
    log = tmp_path / "runserver.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log.read_text()
                try:
                    made = client.post("/welcome/", data={"address": "ada@example.com",
                                                          "name": "Ada"})  # fmt: skip
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            assert made.status_code == 202, made.text
            assert made.json()["status"] == "READY"
            task_id = made.json()["id"]
            with SyncQueue(database_url) as queue:
                stored = queue.get_task(task_id)
            assert (stored.queue, stored.priority, stored.max_attempts) == ("emails", 10, 3)

            worker = subprocess.run(
                [sys.executable, "-m", "worker", "--db", database_url, "worker", "--burst"],
                cwd=tmp_path, env={**env, "DJANGO_SETTINGS_MODULE": "mysite.settings"},
                capture_output=True, text=True, timeout=90, check=False,
            )  # fmt: skip
            assert worker.returncode == 0, worker.stderr

            shown = client.get(f"/tasks/{task_id}/")
            assert shown.json() == {
                "id": task_id,
                "status": "SUCCESSFUL",
                "return_value": {"to": "ada@example.com", "subject": "Welcome, Ada!"},
            }
            assert client.get("/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV/").status_code == 404
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    assert "Traceback" not in log.read_text(), log.read_text()
