"""The event streams over a real uvicorn server on 127.0.0.1: a task's JSON events until it
ends, the pages' stream, heartbeats, a 404 for an unknown task, and ``wq web`` stopping
promptly on SIGTERM with a stream open."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import FakeClock
from tests.test_cli import ROOT, cli_env, with_queue, wq_command
from tests.test_web_feed import call_task
from tests.test_web_server import _started
from tests.web_support import serving, sse_events
from worker import QueueConfig, WorkerQueue
from worker.web import create_app, events

UNKNOWN = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


async def test_a_task_stream_follows_it_to_its_end(
    queue: WorkerQueue, config: QueueConfig, clock: FakeClock
) -> None:
    await queue.enqueue([call_task(name="streamed")])
    [task] = await queue.list_tasks()
    seen: list[dict[str, object]] = []
    async with (
        serving(create_app(queue)) as base,
        WorkerQueue(config, clock=clock) as other,
        httpx.AsyncClient(base_url=base, timeout=60) as client,
        client.stream("GET", f"/api/tasks/{task.id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(60):
            async for name, data in sse_events(response):
                assert name == "task"
                figures = json.loads(data)
                seen.append(figures)
                if len(seen) == 1:
                    assert figures["state"] == "pending"
                    assert figures["queue_position"] == 1
                    [claimed] = await other.dequeue(1)
                elif figures["state"] == "processing" and figures["progress"] is None:
                    await other.set_progress(task.id, claimed.lease_id or "", 1, 2, "half")
                elif figures["progress"] is not None and figures["state"] == "processing":
                    await other.mark_as_complete(task.id, lease_id=claimed.lease_id)
        # the stream ended by itself, after the terminal state
    states = [f["state"] for f in seen]
    assert states[0] == "pending"
    assert states[-1] == "completed"
    assert seen[-1]["terminal"] is True
    assert any(
        f["progress"] == {"current": 1, "total": 2, "message": "half", "fraction": 0.5}
        for f in seen
    )
    assert all(f["id"] == task.id for f in seen)


async def test_an_unknown_task_has_no_stream(queue: WorkerQueue) -> None:
    async with (
        serving(create_app(queue)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        missing = await client.get(f"/api/tasks/{UNKNOWN}/events")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["detail"] == f"task '{UNKNOWN}' not found"
        page = await client.get("/events", params={"task": UNKNOWN})
        assert page.status_code == 404


async def test_the_page_stream_sends_fragments_and_heartbeats(
    queue: WorkerQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_S", 0.2)
    await queue.enqueue([call_task(name="<script>alert(1)</script>", queue="speech")])
    [task] = await queue.list_tasks()
    comments: list[str] = []
    found: dict[str, str] = {}
    async with (
        serving(create_app(queue)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as client,
        client.stream("GET", "/events", params={"overview": "true", "task": task.id}) as stream,
    ):
        assert stream.status_code == 200
        async with asyncio.timeout(60):
            async for name, data in sse_events(stream, comments=True):
                if name == ":":
                    comments.append(data)
                else:
                    found[name] = data
                if {"overview", "task"} <= set(found) and comments:
                    break
    assert "<td>speech</td>" in found["overview"]
    payload = json.loads(found["task"])
    assert payload["task"]["state"] == "pending"
    assert "Queued (position 1)" in payload["html"]
    assert "<script>" not in payload["html"]
    assert comments
    assert all(c.startswith(":") for c in comments)


def test_wq_web_stops_on_sigterm_with_a_stream_open(database_url: str, tmp_path: Path) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    log = tmp_path / "web.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            wq_command(database_url, "web", "--port", "0"),
            stdout=subprocess.DEVNULL, stderr=err, env=cli_env(), cwd=ROOT,
        )  # fmt: skip
    try:
        base = _started(log, proc)
        with (
            httpx.Client(base_url=base, timeout=30) as client,
            client.stream("GET", "/events", params={"overview": "true"}) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: overview"
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
