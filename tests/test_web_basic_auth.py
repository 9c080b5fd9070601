"""``wq web --user NAME`` with ``QUEUE_WEB_PASSWORD`` as a real process: basic
authentication on every request, the CSRF token still needed by a form post, and the
refusals when a half of the credentials is missing."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.test_cli import ROOT, cli_env, one_error_line, with_queue, wq, wq_command
from tests.test_web_server import _started
from tests.web_support import call


def test_wq_web_with_basic_auth(database_url: str, tmp_path: Path) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    log = tmp_path / "web.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            wq_command(database_url, "web", "--port", "0", "--user", "ops"),
            stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
            env=cli_env({"QUEUE_WEB_PASSWORD": "s3cret pass"}),
        )  # fmt: skip
    try:
        base = _started(log, proc)
        assert "(basic auth)" in log.read_text()
        auth = httpx.BasicAuth("ops", "s3cret pass")
        with httpx.Client(base_url=base, timeout=30) as client:
            refused = client.get("/tasks")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith('Basic realm="worker-queue"')
            assert client.get("/tasks", auth=httpx.BasicAuth("ops", "wrong")).status_code == 401
            assert (
                client.get("/tasks", auth=httpx.BasicAuth("nobody", "s3cret pass")).status_code
                == 401
            )
            page = client.get("/tasks", auth=auth)
            assert page.status_code == 200
            token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
            assert token
            created = client.post("/api/tasks", json=call(), auth=auth)
            assert created.status_code == 201, created.text
            task_id = created.json()["task_id"]
            form = {"action": "hold", "scope": "ids", "ids": [task_id], "confirm": "yes"}
            assert client.post("/tasks/actions", data=form, auth=auth).status_code == 403
            done = client.post(
                "/tasks/actions", data={**form, "csrf_token": token.group(1)}, auth=auth
            )
            assert done.status_code == 303, done.text
        held = with_queue(database_url, lambda queue: queue.get_task(task_id))
        assert held.held
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_wq_web_refuses_half_of_the_credentials(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    no_password = wq(database_url, "web", "--port", "0", "--user", "ops")
    assert no_password.code == 2, no_password
    assert "needs its password in QUEUE_WEB_PASSWORD" in one_error_line(no_password)
    no_user = wq(database_url, "web", "--port", "0", env={"QUEUE_WEB_PASSWORD": "x"})
    assert no_user.code == 2, no_user
    assert "no user" in one_error_line(no_user)
    beyond = wq(database_url, "web", "--host", "0.0.0.0", "--port", "0")
    assert "--user with QUEUE_WEB_PASSWORD" in one_error_line(beyond)
