"""The task page: state, place in line, why, progress, attempts, dependencies both ways,
items, deliveries, nothing unescaped; a finished speech item's audio and waveform, served
only from the queue's outputs folder; the layout's navigation and CSRF meta tag."""

from __future__ import annotations

import math
import os
import re
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import JsonValue

from tests.support import FakeClock
from tests.test_web_feed import call_task
from tests.web_support import api_client
from tts.requests import TextToSpeechRequest
from worker import QueueConfig, WorkerQueue
from worker.core.models import Task, TaskItem
from worker.web import waveform
from worker.web.task_page import outputs_dir

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
async def data_queue(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[WorkerQueue]:
    """A queue whose data directory (outputs, audio) is under this test's tmp dir."""
    config = QueueConfig(database_url=database_url, data_dir=tmp_path / "data")
    async with WorkerQueue(config, clock=clock) as queue:
        yield queue


@pytest.fixture
async def client(data_queue: WorkerQueue) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(data_queue) as client:
        yield client


def write_wav(path: Path, seconds: float = 0.5, rate: int = 8000, *, width: int = 2) -> bytes:
    """A sine at half scale whose second half is silent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * rate)
    full = (1 << (8 * width - 1)) - 1
    samples = [
        int(0.5 * full * math.sin(2 * math.pi * 440 * n / rate)) if n < frames // 2 else 0
        for n in range(frames)
    ]
    data = bytes(s + 128 for s in samples) if width == 1 else struct.pack(f"<{frames}h", *samples)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(data)
    return path.read_bytes()


async def finished_speech(queue: WorkerQueue, path: object) -> str:
    """A completed ``tts`` task whose item's result names ``path``."""
    request = TextToSpeechRequest(text="Hello there.", voice_id="espeak.en")
    await queue.enqueue([Task(items=[TaskItem(request=request)])])
    [claimed] = await queue.dequeue(1)
    result: JsonValue = {"path": str(path), "format": "wav", "duration_s": 0.5,
                         "sample_rate": 8000}  # fmt: skip
    await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id, results=[result])
    return claimed.id


async def test_a_pending_task_shows_its_place_why_and_nothing_unescaped(
    client: httpx.AsyncClient, data_queue: WorkerQueue
) -> None:
    await data_queue.enqueue([call_task(), call_task(name=HOSTILE, metadata={"note": HOSTILE})])
    _, hostile = await data_queue.list_tasks()
    page = await client.get(f"/tasks/{hostile.id}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'data-state="pending"' in text
    assert "Queued (position 2)" in text
    assert (await data_queue.why(hostile.id)) in text.replace("&#39;", "'")
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', text)
    assert token is not None, "the page carries a CSRF token for its actions"
    assert page.cookies.get("wq_csrf") == token.group(1)
    for label in (">Overview<", ">Tasks<", ">Submit<"):
        assert label in text
    assert 'data-action="cancel"' in text
    assert "no progress reported" in text


async def test_a_running_task_shows_progress_attempts_and_lease(
    client: httpx.AsyncClient, data_queue: WorkerQueue
) -> None:
    await data_queue.enqueue([call_task(max_attempts=3)])
    [first] = await data_queue.dequeue(1, worker_id="box-1:17")
    await data_queue.mark_as_retry(first.id, f"boom {HOSTILE}", lease_id=first.lease_id)
    await data_queue.retry(10)
    await data_queue.run_now(first.id)
    [claimed] = await data_queue.dequeue(1)
    await data_queue.set_progress(claimed.id, claimed.lease_id or "", 3, 4, "three <b>of</b> four")
    text = (await client.get(f"/tasks/{claimed.id}")).text
    assert 'data-state="processing"' in text
    assert 'data-fraction="0.7500"' in text
    assert "width: 75.0%" in text
    assert "three &lt;b&gt;of&lt;/b&gt; four" in text
    assert "2 of 3 used" in text
    assert "boom &lt;script&gt;" in text
    assert "<td>box-1:17</td>" in text  # the worker that ran the failed attempt
    assert "lease expires" in text


async def test_dependencies_show_both_ways(
    client: httpx.AsyncClient, data_queue: WorkerQueue
) -> None:
    await data_queue.enqueue([call_task(name="upstream")])
    [up] = await data_queue.list_tasks()
    await data_queue.enqueue([call_task(depends_on=[up.id]), call_task(depends_on=[up.id])])
    downs = [t.id for t in await data_queue.list_tasks() if t.id != up.id]
    assert sorted(t for t, _ in await data_queue.dependents(up.id)) == sorted(downs)
    upstream_page = (await client.get(f"/tasks/{up.id}")).text
    for down in downs:
        assert f'<a href="{down}">{down}</a>' in upstream_page
    assert "none upstream" in upstream_page
    downstream_page = (await client.get(f"/tasks/{downs[0]}")).text
    assert f'<a href="{up.id}">{up.id}</a>' in downstream_page
    assert "none downstream" in downstream_page


async def test_an_unknown_task_is_a_404_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert page.status_code == 404
    assert "task &#39;01ARZ3NDEKTSV4RRFFQ69G5FAV&#39; not found" in page.text


async def test_a_finished_speech_item_plays_with_its_waveform(
    client: httpx.AsyncClient, data_queue: WorkerQueue
) -> None:
    outputs = outputs_dir(data_queue)
    target = outputs / "some-task" / "0.wav"
    body = write_wav(target)
    task_id = await finished_speech(data_queue, target)
    page = (await client.get(f"/tasks/{task_id}")).text
    assert f'<audio controls preload="metadata" src="{task_id}/items/0/audio"' in page
    assert '<svg class="waveform"' in page
    audio = await client.get(f"/tasks/{task_id}/items/0/audio")
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/wav"
    assert audio.content == body
    assert (await client.get(f"/tasks/{task_id}/items/1/audio")).status_code == 404


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink", "not-audio", "missing"])
async def test_audio_is_served_only_from_the_outputs_folder(
    client: httpx.AsyncClient, data_queue: WorkerQueue, tmp_path: Path, where: str
) -> None:
    outputs = outputs_dir(data_queue)
    secret = tmp_path / "secret.wav"
    write_wav(secret)
    (outputs / "t").mkdir(parents=True)
    named: object = {
        "outside": secret,
        "dotdot": f"{outputs}/t/../../../secret.wav",
        "symlink": outputs / "t" / "0.wav",
        "not-audio": outputs / "t" / "0.txt",
        "missing": outputs / "t" / "gone.wav",
    }[where]
    if where == "symlink":
        os.symlink(secret, outputs / "t" / "0.wav")
    if where == "not-audio":
        (outputs / "t" / "0.txt").write_text("hello")
    task_id = await finished_speech(data_queue, named)
    refused = await client.get(f"/tasks/{task_id}/items/0/audio")
    assert refused.status_code == 404, where
    assert refused.headers["content-type"] == "application/problem+json"
    assert "<audio" not in (await client.get(f"/tasks/{task_id}")).text
    traversal = await client.get(f"/tasks/{task_id}/items/..%2F..%2Fsecret.wav/audio")
    assert traversal.status_code in (404, 422)


def test_peaks_follow_the_samples(tmp_path: Path) -> None:
    for width in (1, 2):
        path = tmp_path / f"{width}.wav"
        write_wav(path, width=width)
        levels = waveform.peaks(path, columns=10)
        assert len(levels) == 10
        assert all(0.45 < level <= 0.52 for level in levels[:5]), levels
        assert all(level < 0.02 for level in levels[5:]), levels
    drawn = waveform.svg_path([0.0, 1.0], width=20, height=10)
    assert drawn == "M5.0 4.5V5.5M15.0 0.0V10.0"
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="not a PCM WAV file"):
        waveform.peaks(tmp_path / "bad.wav")


async def test_read_only_hides_the_actions_and_a_prefix_reaches_every_link(
    data_queue: WorkerQueue,
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from worker.web import create_app

    await data_queue.enqueue([call_task()])
    [task] = await data_queue.list_tasks()
    async with api_client(data_queue, read_only=True) as client:
        text = (await client.get(f"/tasks/{task.id}")).text
        assert 'data-action="cancel"' not in text
        assert ">Submit<" not in text
    outer = Starlette(routes=[Mount("/queue", app=create_app(data_queue))])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as client:
        text = (await client.get(f"/queue/tasks/{task.id}")).text
        assert f'data-stream="/queue/events?task={task.id}"' in text
        assert 'data-root="/queue"' in text
        assert 'href="/queue/static/style.css"' in text
        script = await client.get("/queue/static/live.js")
        assert script.status_code == 200
        assert "EventSource" in script.text
