"""``GET /api/history`` and the overview's charts, on both backends, from what ran."""

from __future__ import annotations

import re

from tests.support import FakeClock, make_task
from tests.web_support import api_client
from worker import WorkerQueue
from worker.core.models import Completion, Failure


async def _ran(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task(queue="speech") for _ in range(4)])
    claimed = await queue.dequeue(size=4)
    clock.advance(3.0)
    await queue.complete_many([Completion(t.id, t.lease_id) for t in claimed[:3]])
    await queue.retry_many([Failure(claimed[3].id, "again", claimed[3].lease_id)])


async def test_history_api_returns_the_series_of_what_ran(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await _ran(queue, clock)
    async with api_client(queue) as client:
        hour = await client.get("/api/history", params={"queue": "speech"})
        day = await client.get("/api/history", params={"window": "day"})
        other = await client.get("/api/history", params={"queue": "other"})
        bad = await client.get("/api/history", params={"window": "week"})
    assert hour.status_code == 200, hour.text
    body = hour.json()
    assert body["queue"] == "speech"
    assert body["window"] == "hour"
    assert body["step_s"] == 60
    assert len(body["points"]) == 60
    last = body["points"][-1]
    assert (last["completed"], last["failed"], last["finished"]) == (3, 1, 3)
    assert 2.048 < last["p50_s"] <= 4.096
    assert day.json()["step_s"] == 900
    assert len(day.json()["points"]) == 96
    assert sum(p["completed"] for p in day.json()["points"]) == 3
    assert sum(p["completed"] for p in other.json()["points"]) == 0
    assert bad.status_code == 422


async def test_the_overview_draws_each_queue_s_charts(queue: WorkerQueue, clock: FakeClock) -> None:
    await _ran(queue, clock)
    async with api_client(queue) as client:
        page = await client.get("/")
    assert page.status_code == 200
    figures = re.findall(
        r'<figure class="chart" data-queue="speech" data-window="(\w+)"', page.text
    )
    assert figures == ["hour", "hour", "day", "day"]
    # The completed line of the last hour ends at the right edge, at the top of the chart.
    lines = re.findall(r'<polyline class="ok" points="([^"]+)"', page.text)
    assert lines
    assert lines[0].split()[-1] == "360.0,8.2"
    assert "<script" not in page.text.split("<h2>History</h2>")[1].split("<h2>Workers")[0]
