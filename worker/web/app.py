""":func:`create_app`: the ASGI app of one queue (API, ``/metrics``, overview page)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from worker.queue.worker_queue import WorkerQueue
from worker.web import history_api, metrics, pages, problems, queues_api, tasks_api
from worker.web.counters import Counters
from worker.web.guard import MAX_BODY_BYTES, Guard


def create_app(
    queue: WorkerQueue,
    *,
    read_only: bool = False,
    token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> ASGIApp:
    """The web app of ``queue`` (open it first; the caller closes it).

    ``token``: every request must carry ``Authorization: Bearer <token>``. ``read_only``:
    every action (POST) is refused with 403. Mount it under a prefix in a Starlette or
    FastAPI service (``app.mount("/queue", create_app(queue))``); the OpenAPI document is
    at ``/openapi.json``, its page at ``/docs``.
    """
    if token is not None and not token:
        raise ValueError("token must not be empty")
    api = FastAPI(
        title="worker-queue",
        summary="Submit, inspect and steer the tasks of a durable queue.",
        version="1",
        redoc_url=None,
    )
    state: Any = api.state
    state.queue = queue
    state.counters = Counters()
    state.read_only = read_only
    state.max_body_bytes = max_body_bytes
    problems.install(api)
    api.include_router(tasks_api.router)
    api.include_router(queues_api.router)
    api.include_router(history_api.router)
    api.include_router(metrics.router)
    api.include_router(pages.router)
    return Guard(api, token=token, read_only=read_only, max_body_bytes=max_body_bytes)
