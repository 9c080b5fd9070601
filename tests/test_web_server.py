"""``wq web`` as a real process on a free 127.0.0.1 port, talked to over TCP; and its
refusal to listen beyond loopback without a token."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.test_cli import ROOT, cli_env, one_error_line, with_queue, wq, wq_command
from tests.web_support import call

SERVING = re.compile(r"wq web: serving on (http://127\.0\.0\.1:\d+)")


def _started(log: Path, proc: subprocess.Popen[bytes], deadline_s: float = 60.0) -> str:
    """The base URL ``wq web`` printed, once it printed it."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = SERVING.search(log.read_text())
        if found:
            return found.group(1)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"wq web did not start: {log.read_text()}")


def test_wq_web_serves_over_tcp_and_stops_on_sigterm(database_url: str, tmp_path: Path) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())  # create the database
    log = tmp_path / "web.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            wq_command(database_url, "web", "--port", "0", "--token", "t0ken"),
            stdout=subprocess.DEVNULL, stderr=err, env=cli_env(), cwd=ROOT,
        )  # fmt: skip
    try:
        base = _started(log, proc)
        auth = {"Authorization": "Bearer t0ken"}
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/api/status").status_code == 401
            submitted = client.post("/api/tasks", json=call(), headers=auth)
            assert submitted.status_code == 201, submitted.text
            task_id = submitted.json()["task_id"]
            assert client.get(f"/api/tasks/{task_id}", headers=auth).json()["state"] == "pending"
            assert "worker_queue_tasks" in client.get("/metrics", headers=auth).text
        stored = with_queue(database_url, lambda queue: queue.get_task(task_id))
        assert stored.id == task_id
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_wq_web_refuses_a_non_loopback_host_without_a_token(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    refused = wq(database_url, "web", "--host", "0.0.0.0", "--port", "0")
    assert refused.code == 2, refused
    line = one_error_line(refused)
    assert "refusing to listen on 0.0.0.0 without a token" in line
    assert "QUEUE_WEB_TOKEN" in line


def test_wq_web_on_a_missing_database_or_a_busy_port_is_one_error_line(tmp_path: Path) -> None:
    missing = wq(tmp_path / "none.db", "web", "--port", "0")
    assert missing.code == 3, missing
    assert "no database at" in one_error_line(missing)
    db = tmp_path / "queue.db"
    with_queue(db, lambda queue: queue.get_queue_stats())

    async def hold_a_port() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        busy = await asyncio.to_thread(wq, db, "web", "--port", str(port))
        server.close()
        assert busy.code == 2, busy
        assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(busy)

    asyncio.run(hold_a_port())


def _serve(database_url: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            wq_command(database_url, "web", "--port", "0"),
            stdout=subprocess.DEVNULL, stderr=err, env=cli_env(env), cwd=ROOT,
        )  # fmt: skip


def test_web_processes_sharing_a_csrf_secret_accept_each_other_s_tokens(
    database_url: str, tmp_path: Path
) -> None:
    """Behind one address a page may be served by one process and posted to another."""
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    shared = {"QUEUE_WEB_CSRF_SECRET": "one key for every web process"}
    procs = [
        _serve(database_url, tmp_path / "a.log", shared),
        _serve(database_url, tmp_path / "b.log", shared),
        _serve(database_url, tmp_path / "c.log", {}),  # a random key of its own
    ]
    try:
        a, b, c = (_started(tmp_path / f"{n}.log", p) for n, p in zip("abc", procs, strict=True))
        with httpx.Client(base_url=a, timeout=30) as first:
            submitted = first.post("/api/tasks", json=call())
            assert submitted.status_code == 201, submitted.text
            task_id = submitted.json()["task_id"]
            page = first.get("/tasks")
            found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
            assert found, page.text
        token = found.group(1)
        form = {"action": "hold", "scope": "ids", "ids": [task_id], "confirm": "yes"}
        for base, accepted in ((c, False), (b, True)):
            with httpx.Client(base_url=base, timeout=30, cookies={"wq_csrf": token}) as other:
                posted = other.post("/tasks/actions", data={**form, "csrf_token": token})
            assert posted.status_code == (303 if accepted else 403), (base, posted.text)
        held = with_queue(database_url, lambda queue: queue.get_task(task_id))
        assert held.held
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in procs]
    assert codes == [0, 0, 0]


def test_a_short_csrf_secret_is_refused_without_echoing_it(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    refused = wq(database_url, "web", "--port", "0", env={"QUEUE_WEB_CSRF_SECRET": "hunter2"})
    assert refused.code == 2, refused
    line = one_error_line(refused)
    assert "QUEUE_WEB_CSRF_SECRET: must be at least 16 bytes long" in line
    assert "hunter2" not in refused.out + refused.err
