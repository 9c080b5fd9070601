"""``/metrics``: the queue's figures in the Prometheus text format, read from the database
at every scrape (so they are right whatever number of worker processes and machines share
it), plus this web process's own counters.

Each scrape reads :meth:`~worker.queue.admin.QueueAdmin.queue_figures` (a count per state
through that state's index), the paused queues and the live workers, then a
:class:`QueueCollector` turns that one snapshot into metric families.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response

from worker.core.states import TaskState
from worker.queue.worker_queue import WorkerQueue
from worker.storage.reads import QueueFigures
from worker.web.counters import Counters

router = APIRouter(tags=["metrics"])


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape read, at ``now`` (the queue's clock)."""

    now: float
    figures: QueueFigures
    paused: dict[str, float]
    workers: list[dict[str, Any]]
    read_s: float


async def read_snapshot(queue: WorkerQueue) -> Snapshot:
    started = time.perf_counter()
    figures = await queue.queue_figures()
    paused = await queue.paused_queues()
    workers = await queue.live_workers()
    return Snapshot(queue.clock(), figures, paused, workers, time.perf_counter() - started)


class QueueCollector(Collector):
    """Metric families from one :class:`Snapshot`."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot
        queues = sorted(set(snap.figures.counts) | set(snap.paused))
        tasks = GaugeMetricFamily(
            "worker_queue_tasks",
            "Tasks in the database, per queue and state.",
            labels=["queue", "state"],
        )
        for queue in queues:
            counts = snap.figures.counts.get(queue, {})
            for state in TaskState:
                tasks.add_metric([queue, state.value], counts.get(state.value, 0))
        yield tasks
        oldest = GaugeMetricFamily(
            "worker_queue_oldest_pending_age_seconds",
            "Age of each queue's oldest pending task (since it was enqueued).",
            labels=["queue"],
        )
        for queue, at in sorted(snap.figures.oldest_pending_at.items()):
            oldest.add_metric([queue], max(0.0, snap.now - at))
        yield oldest
        paused = GaugeMetricFamily(
            "worker_queue_paused", "1 for each paused queue, 0 for the others.", labels=["queue"]
        )
        for queue in queues:
            paused.add_metric([queue], 1.0 if queue in snap.paused else 0.0)
        yield paused
        yield GaugeMetricFamily(
            "worker_queue_workers_alive",
            "Worker processes that sent a heartbeat recently and did not stop.",
            value=len(snap.workers),
        )
        heartbeat = GaugeMetricFamily(
            "worker_queue_worker_heartbeat_age_seconds",
            "Time since each live worker's last heartbeat.",
            labels=["worker", "hostname"],
        )
        for worker in snap.workers:
            age = max(0.0, snap.now - float(worker["heartbeat_at"]))
            heartbeat.add_metric([str(worker["id"]), str(worker["hostname"])], age)
        yield heartbeat
        yield GaugeMetricFamily(
            "worker_queue_scrape_read_seconds",
            "How long this scrape's reads of the database took.",
            value=snap.read_s,
        )


def exposition(snapshot: Snapshot, counters: Counters) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(snapshot))
    return generate_latest(registry) + generate_latest(counters.registry)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    queue: WorkerQueue = request.app.state.queue
    counters: Counters = request.app.state.counters
    counters.scrapes.inc()
    snapshot = await read_snapshot(queue)
    return Response(exposition(snapshot, counters), media_type=CONTENT_TYPE_LATEST)
