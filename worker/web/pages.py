"""The overview page: per queue, the count of each state, paused or not, the oldest
pending age; the live workers; the history charts. Server-rendered with Jinja2, every value
escaped; its live part (:func:`overview_fragment`) is what the change feed pushes to open
pages (the charts, per minute, are drawn with the page)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from worker.core.states import TaskState
from worker.queue.worker_queue import WorkerQueue
from worker.web import charts, queues_api
from worker.web.schemas import QueueSummary
from worker.web.tasks_api import Queue
from worker.web.templating import layout, templates

router = APIRouter(include_in_schema=False)


async def overview_fragment(queue: WorkerQueue, summaries: list[QueueSummary] | None = None) -> str:
    """The overview's live part: the queues' counts and the workers."""
    if summaries is None:
        summaries = await queues_api.queues(queue)
    workers = await queues_api.workers(queue)
    return templates.get_template("overview_live.html").render(
        queues=summaries,
        workers=workers,
        states=[s.value for s in TaskState],
        total=sum(sum(q.counts.values()) for q in summaries),
    )


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, queue: Queue) -> HTMLResponse:
    summaries = await queues_api.queues(queue)
    page = templates.get_template("overview.html").render(
        **layout(request, "overview"),
        stream="/events?overview=true",
        live_html=await overview_fragment(queue, summaries),
        charts=await charts.overview_charts(queue, [q.queue for q in summaries]),
        width=charts.WIDTH,
        height=charts.HEIGHT,
    )
    return HTMLResponse(page)
