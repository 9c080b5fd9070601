"""``/api/queues``, ``/api/status``, ``/api/stats``, ``/api/workers``: the queues, their
counts and pauses, the seed's status shape, statistics and the live workers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from worker.core.limits import MAX_DURATION_S
from worker.web.schemas import QueuePaused, QueueStatus, QueueSummary
from worker.web.tasks_api import Counted, Queue

router = APIRouter(prefix="/api", tags=["queues"])


@router.get("/queues", summary="Each queue: tasks per state, paused, oldest pending age")
async def queues(queue: Queue) -> list[QueueSummary]:
    figures = await queue.queue_figures()
    paused = await queue.paused_queues()
    now = queue.clock()
    names = sorted(set(figures.counts) | set(paused))
    summaries = []
    for name in names:
        oldest = figures.oldest_pending_at.get(name)
        summaries.append(
            QueueSummary(
                queue=name,
                counts=figures.counts.get(name, {}),
                paused=name in paused,
                paused_at=paused.get(name),
                oldest_pending_age_s=None if oldest is None else max(0.0, now - oldest),
            )
        )
    return summaries


@router.post("/queues/{name}/pause", summary="Claim nothing from a queue until unpaused")
async def pause(name: str, queue: Queue, counters: Counted) -> QueuePaused:
    await queue.pause_queue(name)
    counters.actions.labels(action="pause").inc()
    return QueuePaused(queue=name, paused=True)


@router.post("/queues/{name}/unpause", summary="Claim from a paused queue again")
async def unpause(name: str, queue: Queue, counters: Counted) -> QueuePaused:
    was_paused = await queue.unpause_queue(name)
    counters.actions.labels(action="unpause").inc()
    return QueuePaused(queue=name, paused=False, was_paused=was_paused)


@router.get("/status", summary="The seed's status: queued, processing, completed, failed, total")
async def status(
    queue: Queue, queue_name: Annotated[str | None, Query(alias="queue")] = None
) -> QueueStatus:
    counts = await queue.get_queue_stats(queue_name)
    return QueueStatus(
        queued=counts["pending"] + counts["retryable"],
        processing=counts["processing"],
        completed=counts["completed"],
        failed=counts["discarded"] + counts["cancelled"],
        total=counts["total"],
    )


@router.get("/stats", summary="Counts, throughput, latency and workers over a window")
async def stats(
    queue: Queue, window_s: Annotated[float, Query(gt=0, le=MAX_DURATION_S)] = 300.0
) -> dict[str, Any]:
    figures = await queue.get_statistics(window_s=window_s)
    figures["paused"] = await queue.paused_queues()
    return figures


@router.get("/workers", summary="Live workers: host, pid, queues, concurrency, heartbeat")
async def workers(queue: Queue) -> list[dict[str, Any]]:
    now = queue.clock()
    found = await queue.live_workers()
    return [
        {**worker, "heartbeat_age_s": max(0.0, now - float(worker["heartbeat_at"]))}
        for worker in found
    ]
