"""The task page (``GET /tasks/{id}``) and its audio (``GET /tasks/{id}/items/{n}/audio``).

The page shows the task's state, its place in line and why it is not running, its progress,
each attempt's error, its lease, its dependencies both ways, each item's request and result,
and its webhook deliveries. :func:`task_payload` is what the change feed sends a page (and the
per-task event stream) after a change: the task's live figures as JSON and the page's live
part as HTML, rendered once for every page that shows the task.

An item whose result names an audio file under the queue's ``<data_dir>/outputs`` (the
``tts`` and ``audio`` processors write there) plays in the page; the file is only served if
it resolves inside that folder, whatever the stored result says.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse

from worker.core.errors import TaskNotFoundError
from worker.core.models import Task, UnloadedRequest
from worker.core.states import TERMINAL_STATES, TaskState
from worker.queue.worker_queue import WorkerQueue
from worker.web import waveform
from worker.web.documents import request_kind, task_document
from worker.web.problems import problem
from worker.web.tasks_api import Queue
from worker.web.templating import layout, templates

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

#: Audio files the page plays, by suffix, and their media types.
AUDIO_TYPES = {
    ".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Audio:
    index: int
    media_type: str
    duration_s: float | None
    #: The waveform as one SVG path ("" when it cannot be drawn: not a WAV file).
    waveform: str


def outputs_dir(queue: WorkerQueue) -> Path:
    """``<data_dir>/outputs``, resolved: the only folder audio is served from."""
    return (queue.config.data_dir / "outputs").resolve()


def audio_file(queue: WorkerQueue, task: Task, index: int) -> Path | None:
    """The audio file item ``index``'s result names, if it is one under the outputs folder
    (symbolic links and ``..`` resolved first) and exists."""
    if not 0 <= index < len(task.items):
        return None
    result = task.items[index].result
    if not isinstance(result, dict) or not isinstance(result.get("path"), str):
        return None
    try:
        path = Path(str(result["path"])).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if path.suffix.lower() not in AUDIO_TYPES or not path.is_relative_to(outputs_dir(queue)):
        return None
    return path if path.is_file() else None


def _audio(queue: WorkerQueue, task: Task) -> dict[int, Audio]:
    found = {}
    for index, item in enumerate(task.items):
        path = audio_file(queue, task, index)
        if path is None:
            continue
        drawn = ""
        if path.suffix.lower() == ".wav":
            try:
                drawn = waveform.svg_path(waveform.peaks(path))
            except (OSError, ValueError) as exc:  # it still plays; it is only not drawn
                log.info("no waveform for %s: %s", path, exc)
        result = item.result if isinstance(item.result, dict) else {}
        duration = result.get("duration_s")
        found[index] = Audio(
            index,
            AUDIO_TYPES[path.suffix.lower()],
            float(duration) if isinstance(duration, int | float) else None,
            drawn,
        )
    return found


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


async def _states(queue: WorkerQueue, ids: list[str]) -> list[tuple[str, str]]:
    found = []
    for task_id in ids:
        try:
            found.append((task_id, (await queue.get_task(task_id)).state.value))
        except TaskNotFoundError:
            found.append((task_id, "purged"))
    return found


async def live_figures(queue: WorkerQueue, task: Task) -> dict[str, Any]:
    """What changes while a task waits and runs: state, position, why, progress."""
    pending = task.state is TaskState.PENDING
    progress = None
    if task.progress is not None:
        p = task.progress
        fraction = None
        if p.total:
            fraction = max(0.0, min(1.0, p.current / p.total))
        progress = {"current": p.current, "total": p.total, "message": p.message,
                    "fraction": fraction}  # fmt: skip
    return {
        "id": task.id,
        "state": task.state.value,
        "held": task.held,
        "terminal": task.state in TERMINAL_STATES,
        "queue_position": await queue.queue_position(task.id) + 1 if pending else None,
        "why": await queue.why(task.id),
        "progress": progress,
        "attempt_count": task.attempt_count,
        "cancel_requested": task.cancel_requested_at is not None,
        "updated_at": task.updated_at,
    }


async def render_live(
    queue: WorkerQueue, task: Task, figures: dict[str, Any], *, read_only: bool
) -> str:
    """The live part of the task page (everything below the title)."""
    upstream = await _states(queue, task.depends_on)
    downstream = await queue.dependents(task.id)
    deliveries = await queue.webhook_deliveries(task.id)
    items = []
    for item, document in zip(task.items, task_document(task)["items"], strict=True):
        request = item.request
        unloaded = request if isinstance(request, UnloadedRequest) else None
        items.append({
            "kind": request_kind(request),
            "request": _pretty(document["request"] if unloaded is None else unloaded.data),
            "unloaded": None if unloaded is None else unloaded.problem,
            "result": None if item.result is None else _pretty(item.result),
            "error": item.error,
        })  # fmt: skip
    return templates.get_template("task_live.html").render(
        task=task,
        live=figures,
        items=items,
        audio=_audio(queue, task),
        upstream=upstream,
        downstream=downstream,
        deliveries=deliveries,
        metadata=_pretty(task.metadata) if task.metadata else None,
        read_only=read_only,
    )


async def task_payload(
    queue: WorkerQueue, task_id: str, *, read_only: bool
) -> dict[str, Any] | None:
    """The feed's payload of ``task:<id>``: ``{"task": figures, "html": live part}``
    (None once the task is gone)."""
    try:
        task = await queue.get_task(task_id)
    except TaskNotFoundError:
        return None
    figures = await live_figures(queue, task)
    html = await render_live(queue, task, figures, read_only=read_only)
    return {"task": figures, "html": html}


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(task_id: str, request: Request, queue: Queue) -> HTMLResponse:
    try:
        task = await queue.get_task(task_id)
    except TaskNotFoundError as exc:
        page = templates.get_template("missing.html").render(
            **layout(request, "task not found"), detail=str(exc)
        )
        return HTMLResponse(page, status_code=404)
    figures = await live_figures(queue, task)
    context = layout(request, f"task {task.id}")
    page = templates.get_template("task.html").render(
        **context,
        stream=f"/events?task={task.id}",
        task=task,
        live=figures,
        live_html=await render_live(queue, task, figures, read_only=context["read_only"]),
    )
    return HTMLResponse(page)


@router.get("/tasks/{task_id}/items/{index}/audio")
async def item_audio(task_id: str, index: int, queue: Queue) -> Any:
    """The audio file of a finished item, if its result names one under the outputs
    folder; 404 otherwise."""
    try:
        task = await queue.get_task(task_id)
    except TaskNotFoundError as exc:
        return problem(404, str(exc), error=type(exc).__name__)
    path = audio_file(queue, task, index)
    if path is None:
        return problem(404, f"task {task_id!r} has no audio file for item {index}")
    return FileResponse(path, media_type=AUDIO_TYPES[path.suffix.lower()])
