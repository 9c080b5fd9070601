"""The overview page: per queue, the count of each state, paused or not, the oldest
pending age; the live workers. Server-rendered with Jinja2, every value escaped."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from worker.core.states import TaskState
from worker.web import charts, queues_api
from worker.web.tasks_api import Queue

router = APIRouter(include_in_schema=False)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, queue: Queue) -> HTMLResponse:
    summaries = await queues_api.queues(queue)
    workers = await queues_api.workers(queue)
    page = _templates.get_template("overview.html").render(
        queues=summaries,
        workers=workers,
        states=[s.value for s in TaskState],
        total=sum(sum(q.counts.values()) for q in summaries),
        read_only=request.app.state.read_only,
        root=request.scope.get("root_path", ""),
        charts=await charts.overview_charts(queue, [q.queue for q in summaries]),
        width=charts.WIDTH,
        height=charts.HEIGHT,
    )
    return HTMLResponse(page)
