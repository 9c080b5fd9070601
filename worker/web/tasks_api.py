"""``/api/tasks``: submit one or many, read one, list with filters, and the actions on a
task (cancel, resume, hold, release, run now)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from worker.core.errors import InvalidStateTransitionError
from worker.core.selection import Cursor
from worker.core.states import TaskState
from worker.queue.worker_queue import WorkerQueue
from worker.web.counters import Counters
from worker.web.documents import build_task, task_document
from worker.web.schemas import ActionDone, Submit, SubmitMany, Submitted, SubmittedMany, TaskPage
from worker.web.task_list import query_filter, selection_of

router = APIRouter(prefix="/api/tasks", tags=["tasks"])

#: The most tasks one page holds.
MAX_LIMIT = 500


def the_queue(request: Request) -> WorkerQueue:
    queue: WorkerQueue = request.app.state.queue
    return queue


def the_counters(request: Request) -> Counters:
    counters: Counters = request.app.state.counters
    return counters


Queue = Annotated[WorkerQueue, Depends(the_queue)]
Counted = Annotated[Counters, Depends(the_counters)]


async def _submitted(queue: WorkerQueue, task_id: str) -> Submitted:
    task = await queue.get_task(task_id)
    position = None
    if task.state is TaskState.PENDING:
        position = await queue.queue_position(task_id) + 1
    return Submitted(
        task_id=task.id,
        queued=task.state is TaskState.PENDING,
        queue_position=position,
        state=task.state,
    )


@router.post("", status_code=201, summary="Submit one task")
async def submit(
    body: Submit, queue: Queue, counters: Counted, request: Request, response: Response
) -> Submitted:
    task = build_task(body, queue.clock())
    await queue.enqueue([task])  # sets task.id (the live task's, for a reused key)
    counters.submitted.labels(queue=task.queue).inc()
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/api/tasks/{task.id}"
    return await _submitted(queue, task.id)


@router.post("/batch", status_code=201, summary="Submit many tasks, all or none")
async def submit_many(body: SubmitMany, queue: Queue, counters: Counted) -> SubmittedMany:
    now = queue.clock()
    tasks = [build_task(t, now, f"tasks[{i}].") for i, t in enumerate(body.tasks)]
    inserted = await queue.enqueue(tasks)
    for task in tasks:
        counters.submitted.labels(queue=task.queue).inc()
    return SubmittedMany(
        inserted=inserted, tasks=[await _submitted(queue, task.id) for task in tasks]
    )


@router.get("", summary="List tasks in enqueue order, pending ones in claim order; keyset pages")
async def list_tasks(
    queue: Queue,
    given: Annotated[dict[str, str], Depends(query_filter)],
    *,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    after: Annotated[str | None, Query(description="The last id of the page before.")] = None,
    after_priority: Annotated[
        int | None,
        Query(
            description="With state=pending: that task's priority on the page before "
            "(its next_after_priority), so the page starts where that one ended."
        ),
    ] = None,
) -> TaskPage:
    chosen = selection_of(given)
    page = await queue.list_tasks(
        chosen.state,
        chosen.queue,
        limit,
        after,
        kind=chosen.kind,
        name=chosen.name,
        error=chosen.error,
        created_after=chosen.created_after,
        created_before=chosen.created_before,
        after_priority=after_priority,
    )
    cursor = Cursor.after(page, limit, chosen.state)
    return TaskPage(
        tasks=[task_document(t) for t in page],
        next_after=None if cursor is None else cursor.after_id,
        next_after_priority=None if cursor is None else cursor.after_priority,
    )


@router.get("/{task_id}", summary="One task, why it is not running, its queue position")
async def get_task(task_id: str, queue: Queue) -> dict[str, Any]:
    task = await queue.get_task(task_id)
    document = task_document(task)
    document["why"] = await queue.why(task_id)
    document["queue_position"] = (
        await queue.queue_position(task_id) + 1 if task.state is TaskState.PENDING else None
    )
    return document


async def _done(queue: WorkerQueue, task_id: str) -> ActionDone:
    task = await queue.get_task(task_id)
    return ActionDone(
        id=task.id,
        state=task.state,
        cancel_pending=task.state is TaskState.PROCESSING and task.cancel_requested_at is not None,
    )


@router.post("/{task_id}/cancel", summary="Cancel; a running task is asked to stop")
async def cancel(task_id: str, queue: Queue, counters: Counted) -> ActionDone:
    await queue.mark_as_cancelled(task_id)
    counters.actions.labels(action="cancel").inc()
    return await _done(queue, task_id)


@router.post("/{task_id}/resume", summary="Run a discarded task again, or release a held one")
async def resume(task_id: str, queue: Queue, counters: Counted) -> ActionDone:
    task = await queue.get_task(task_id)
    if task.state is TaskState.DISCARDED:
        await queue.mark_as_resume(task_id)
    elif task.state is TaskState.PENDING and task.held:
        await queue.unhold(task_id)
    else:
        state = f"{task.state.value}{' and held' if task.held else ''}"
        raise InvalidStateTransitionError(
            task_id, "resume", state, ("discarded", "pending and held")
        )
    counters.actions.labels(action="resume").inc()
    return await _done(queue, task_id)


@router.post("/{task_id}/hold", summary="Keep a pending task from being claimed")
async def hold(task_id: str, queue: Queue, counters: Counted) -> ActionDone:
    await queue.hold(task_id)
    counters.actions.labels(action="hold").inc()
    return await _done(queue, task_id)


@router.post("/{task_id}/release", summary="Let a held task be claimed again")
async def release(task_id: str, queue: Queue, counters: Counted) -> ActionDone:
    await queue.unhold(task_id)
    counters.actions.labels(action="release").inc()
    return await _done(queue, task_id)


@router.post("/{task_id}/run-now", summary="Make a delayed pending task due now")
async def run_now(task_id: str, queue: Queue, counters: Counted) -> ActionDone:
    await queue.run_now(task_id)
    counters.actions.labels(action="run_now").inc()
    return await _done(queue, task_id)
