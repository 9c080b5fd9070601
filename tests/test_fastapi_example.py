"""examples/fastapi_app runs as written: under httpx in this process, and for real as
``python examples/fastapi_app/main.py`` and ``uvicorn examples.fastapi_app.main:app`` on a
free 127.0.0.1 port, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.test_cli import ROOT, cli_env

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The example's module, its queue on a file of this test's (it reads the variable once,
    at import, as the app would)."""
    database = tmp_path_factory.mktemp("example") / "queue.db"
    before = os.environ.get("QUEUE_DATABASE_URL")
    os.environ["QUEUE_DATABASE_URL"] = f"sqlite:///{database}"
    try:
        yield importlib.import_module("examples.fastapi_app.main")
    finally:
        if before is None:
            del os.environ["QUEUE_DATABASE_URL"]
        else:
            os.environ["QUEUE_DATABASE_URL"] = before


async def test_the_example_app_defers_runs_and_shows_a_task(example: ModuleType) -> None:
    async with (
        LifespanManager(example.app, startup_timeout=60, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://app"
        ) as client,
    ):
        made = await client.post("/greetings", json={"name": "Ada", "excited": True})
        assert made.status_code == 202, made.text
        body = made.json()
        assert body["state"] == "pending"
        shown = await _until_completed(client, body["url"])
        assert shown["result"] == {"greeting": "Hello, Ada!"}
        refused = await client.post("/greetings", json={"name": ""})
        assert refused.status_code == 422
        assert (await client.get("/greetings/01ARZ3NDEKTSV4RRFFQ69G5FAV")).status_code == 404
        assert (await client.get("/greetings/nonsense")).status_code == 404
        assert (await client.get(f"/queue/api/tasks/{body['id']}")).status_code == 200


async def _until_completed(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        shown: dict[str, Any] = (await client.get(url)).json()
        if shown["state"] == "completed":
            return shown
        assert time.monotonic() < deadline, shown
        await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, str(ROOT / "examples" / "fastapi_app" / "main.py")],
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app.main:app"],
    ],
    ids=["python", "uvicorn"],
)
def test_the_example_serves_for_real_and_stops_on_sigterm(
    command: list[str], tmp_path: Path
) -> None:
    port = _free_port()
    if "uvicorn" in command:
        command = [*command, "--port", str(port)]
    log = tmp_path / "server.log"
    env = cli_env({"QUEUE_DATABASE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
                   "PORT": str(port), "PYTHONPATH": str(ROOT)})  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    made = client.post("/greetings", json={"name": "Grace"})
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            assert made.status_code == 202, made.text
            url = made.json()["url"]
            while (shown := client.get(url).json())["state"] != "completed":
                assert time.monotonic() < deadline + 30, (shown, log.read_text())
                time.sleep(0.05)
            assert shown["result"] == {"greeting": "Hello, Grace."}
            assert client.get("/queue/").status_code == 200
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts the app down, then ends by the signal it was stopped with
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "Application shutdown complete." in text, text
    if "uvicorn" not in command:  # the script configures logging: its worker said it stopped
        assert re.search(r"worker \S+ stopped: \{'completed': 1", text), text
