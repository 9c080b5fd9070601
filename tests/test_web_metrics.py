"""``/metrics`` parsed with prometheus-client's own parser and checked against what ran."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import FakeClock
from tests.web_support import api_client, call
from worker import WorkerQueue


async def scrape(client: httpx.AsyncClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each sample's value by metric sample name and labels."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


async def test_metrics_show_what_ran(queue: WorkerQueue, clock: FakeClock) -> None:
    async with api_client(queue) as client:
        body = {"tasks": [call(), call(), call(), call(queue="mail")]}
        assert (await client.post("/api/tasks/batch", json=body)).status_code == 201
        assert (await client.post("/api/tasks", json=call(queue="mail"))).status_code == 201
        done, failed = await queue.dequeue(2, queues=["default"])
        await queue.mark_as_complete(done.id, lease_id=done.lease_id)
        await queue.mark_as_retry(failed.id, "later", lease_id=failed.lease_id)
        [mail, _] = await queue.list_tasks(queue="mail")
        await client.post(f"/api/tasks/{mail.id}/cancel")
        await client.post("/api/queues/mail/pause")
        await queue.register_worker(
            {"id": "w1", "hostname": "box", "pid": 1, "queues": None, "concurrency": 2}
        )
        clock.advance(5)
        await queue.register_worker(
            {"id": "w2", "hostname": "box", "pid": 2, "queues": None, "concurrency": 2}
        )
        clock.advance(5)
        metrics = await scrape(client)

    tasks = metrics["worker_queue_tasks"]

    def count(queue_name: str, state: str) -> float:
        return tasks[(("queue", queue_name), ("state", state))]

    assert count("default", "pending") == 1
    assert count("default", "completed") == 1
    assert count("default", "retryable") == 1
    assert count("default", "processing") == 0
    assert count("mail", "pending") == 1
    assert count("mail", "cancelled") == 1
    assert sum(tasks.values()) == 5
    oldest = metrics["worker_queue_oldest_pending_age_seconds"]
    assert oldest[(("queue", "default"),)] == pytest.approx(10)
    assert oldest[(("queue", "mail"),)] == pytest.approx(10)
    assert metrics["worker_queue_paused"] == {(("queue", "default"),): 0, (("queue", "mail"),): 1}
    assert metrics["worker_queue_workers_alive"] == {(): 2}
    beats = metrics["worker_queue_worker_heartbeat_age_seconds"]
    assert beats[(("hostname", "box"), ("worker", "w1"))] == pytest.approx(10)
    assert beats[(("hostname", "box"), ("worker", "w2"))] == pytest.approx(5)
    submitted = metrics["worker_queue_web_tasks_submitted_total"]
    assert submitted == {(("queue", "default"),): 3, (("queue", "mail"),): 2}
    actions = metrics["worker_queue_web_actions_total"]
    assert actions == {(("action", "cancel"),): 1, (("action", "pause"),): 1}
    assert metrics["worker_queue_web_scrapes_total"] == {(): 1}
    assert metrics["worker_queue_scrape_read_seconds"][()] >= 0
