"""``GET /api/history``: the persisted history of acknowledgements as series, one point per
minute over the last hour or per 15 minutes over the last day (:meth:`WorkerQueue.history`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from worker.queue.admin import HISTORY_WINDOWS
from worker.storage.history import HistoryPoint
from worker.web.tasks_api import Queue

router = APIRouter(prefix="/api", tags=["queues"])

Window = Literal["hour", "day"]


class HistoryPointOut(BaseModel):
    """One step of a series: tasks acknowledged in it by outcome, processing-time estimates."""

    at: float = Field(description="The step's start, epoch seconds.")
    completed: int
    failed: int = Field(description="Attempts that failed and will be retried.")
    discarded: int
    cancelled: int
    finished: int = Field(description="Completed, discarded and cancelled.")
    p50_s: float | None = Field(description="Median processing time (log-bucket estimate).")
    p95_s: float | None
    mean_s: float | None


class HistorySeries(BaseModel):
    queue: str | None = Field(description="The queue, or null for all of them.")
    window: Window
    step_s: float
    points: list[HistoryPointOut]


def point_out(point: HistoryPoint) -> HistoryPointOut:
    counts = point.outcomes
    completed = counts.get("completed", 0)
    discarded = counts.get("discarded", 0)
    cancelled = counts.get("cancelled", 0)
    return HistoryPointOut(
        at=point.at,
        completed=completed,
        failed=counts.get("retryable", 0),
        discarded=discarded,
        cancelled=cancelled,
        finished=completed + discarded + cancelled,
        p50_s=point.p50_s,
        p95_s=point.p95_s,
        mean_s=point.mean_s,
    )


async def series(queue: Queue, window: Window, name: str | None) -> HistorySeries:
    points = await queue.history(window, queue=name)
    return HistorySeries(
        queue=name,
        window=window,
        step_s=HISTORY_WINDOWS[window][1] * 60.0,
        points=[point_out(p) for p in points],
    )


@router.get("/history", summary="Throughput and processing time over the last hour or day")
async def history(
    queue: Queue,
    window: Annotated[Window, Query(description="hour: per minute; day: per 15 minutes")] = "hour",
    name: Annotated[str | None, Query(alias="queue", description="One queue (else all)")] = None,
) -> HistorySeries:
    return await series(queue, window, name)
