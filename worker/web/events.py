"""Server-Sent Events: ``GET /api/tasks/{id}/events`` (one task's state and progress as
JSON, until it ends) and ``GET /events`` (what the open pages show, as they change).

Both read nothing themselves: they follow the app's one :class:`~worker.web.feed.ChangeFeed`,
whose reader (:func:`make_feed`) reads a topic once for every stream that follows it. A
comment line goes out every :data:`HEARTBEAT_S` so that proxies keep an idle stream open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse

from worker.queue.worker_queue import WorkerQueue
from worker.web.feed import ChangeFeed, Trigger, trigger_for
from worker.web.pages import overview_fragment
from worker.web.task_page import task_payload
from worker.web.tasks_api import Queue

router = APIRouter()

#: Seconds between heartbeat comments on an idle stream.
HEARTBEAT_S = 10.0
#: A client that cannot take an event within this long is dropped.
SEND_TIMEOUT_S = 30.0

OVERVIEW = "overview"


def task_topic(task_id: str) -> str:
    return f"task:{task_id}"


def make_feed(
    queue: WorkerQueue, *, read_only: bool, trigger: Callable[[], Trigger] | None = None
) -> ChangeFeed:
    """The feed of an app: the overview's live part, and each followed task's payload
    (``trigger``: what notices changes, by default the backend's own, :func:`trigger_for`)."""

    async def read(topic: str) -> object:
        if topic == OVERVIEW:
            return await overview_fragment(queue)
        return await task_payload(queue, topic.removeprefix("task:"), read_only=read_only)

    return ChangeFeed(read, trigger or (lambda: trigger_for(queue)))


def the_feed(request: Request) -> ChangeFeed:
    feed: ChangeFeed = request.app.state.feed
    return feed


Feed = Annotated[ChangeFeed, Depends(the_feed)]


def _response(events: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    return EventSourceResponse(events, ping=HEARTBEAT_S, send_timeout=SEND_TIMEOUT_S)


@router.get(
    "/api/tasks/{task_id}/events",
    tags=["tasks"],
    summary="A task's state and progress as Server-Sent Events, until it ends",
    response_description="text/event-stream: `task` events (JSON: id, state, "
    "queue_position, why, progress, ...), the last one in a terminal state; `gone` if the "
    "task was purged.",
)
async def task_events(task_id: str, queue: Queue, feed: Feed) -> EventSourceResponse:
    await queue.get_task(task_id)  # an unknown id: 404 before the stream starts

    async def events() -> AsyncIterator[dict[str, Any]]:
        async with feed.subscribe([task_topic(task_id)]) as subscription:
            while (got := await subscription.next()) is not None:
                payload = got[1]
                if not isinstance(payload, dict):
                    yield {"event": "gone", "data": json.dumps({"id": task_id})}
                    return
                yield {"event": "task", "data": json.dumps(payload["task"])}
                if payload["task"]["terminal"]:
                    return

    return _response(events())


@router.get("/events", include_in_schema=False)
async def page_events(
    queue: Queue,
    feed: Feed,
    overview: bool = False,
    task: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> EventSourceResponse:
    """What a page shows: ``overview`` events (the overview's live part, HTML) and ``task``
    events (JSON: ``task``, the figures, and ``html``, the task page's live part)."""
    tasks = list(dict.fromkeys(task or []))
    for task_id in tasks:
        await queue.get_task(task_id)
    topics = [task_topic(t) for t in tasks] + ([OVERVIEW] if overview else [])

    async def events() -> AsyncIterator[dict[str, Any]]:
        async with feed.subscribe(topics) as subscription:
            while (got := await subscription.next()) is not None:
                topic, payload = got
                if topic == OVERVIEW:
                    yield {"event": "overview", "data": payload}
                elif isinstance(payload, dict):
                    yield {"event": "task", "data": json.dumps(payload)}
                else:
                    yield {"event": "gone", "data": json.dumps({"id": topic[5:]})}

    return _response(events())
