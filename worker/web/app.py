""":func:`create_app`: the ASGI app of one queue (API, ``/metrics``, the pages, their
event streams)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from worker.queue.worker_queue import WorkerQueue
from worker.web import (
    bulk,
    events,
    history_api,
    metrics,
    pages,
    problems,
    queues_api,
    submit_form,
    task_page,
    task_pages,
    tasks_api,
)
from worker.web.counters import Counters
from worker.web.csrf import Csrf, CsrfTokens
from worker.web.guard import MAX_BODY_BYTES, Guard

STATIC = Path(__file__).parent / "static"


def create_app(
    queue: WorkerQueue,
    *,
    read_only: bool = False,
    token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    user: str | None = None,
    password: str | None = None,
    csrf_secret: bytes | None = None,
) -> ASGIApp:
    """The web app of ``queue`` (open it first; the caller closes it).

    ``token``: every request must carry ``Authorization: Bearer <token>``; ``user`` and
    ``password``: basic authentication (with both set, either one lets a request in).
    ``read_only``: every action (POST) is refused with 403 and the pages show none.
    ``csrf_secret`` signs the pages' CSRF tokens (:mod:`worker.web.csrf`; default: random
    for this app, so a restart asks open pages to reload before their next action). Mount
    it under a prefix in a Starlette or FastAPI service
    (``app.mount("/queue", create_app(queue))``); the OpenAPI document is at
    ``/openapi.json``, its page at ``/docs``.
    """
    if token is not None and not token:
        raise ValueError("token must not be empty")
    if (user is None) != (password is None) or user == "" or password == "":
        raise ValueError("basic authentication needs a user and a password, neither empty")
    if user is not None and ":" in user:
        raise ValueError("a basic-authentication user name cannot hold ':'")
    feed = events.make_feed(queue, read_only=read_only)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await feed.close()  # ends the open event streams

    api = FastAPI(
        title="worker-queue",
        summary="Submit, inspect and steer the tasks of a durable queue.",
        version="1",
        redoc_url=None,
        lifespan=lifespan,
    )
    state: Any = api.state
    state.queue = queue
    state.counters = Counters()
    state.read_only = read_only
    state.max_body_bytes = max_body_bytes
    state.feed = feed
    tokens = CsrfTokens(csrf_secret if csrf_secret is not None else secrets.token_bytes(32))
    state.csrf = tokens
    problems.install(api)
    api.include_router(events.router)
    api.include_router(bulk.router)  # /api/tasks/count before /api/tasks/{task_id}
    api.include_router(tasks_api.router)
    api.include_router(submit_form.api)
    api.include_router(queues_api.router)
    api.include_router(history_api.router)
    api.include_router(metrics.router)
    api.include_router(pages.router)
    api.include_router(task_pages.router)  # /tasks, /tasks/actions
    api.include_router(task_page.router)  # /tasks/{task_id}
    api.include_router(submit_form.router)
    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    basic = None if user is None or password is None else (user, password)
    return Guard(
        Csrf(api, tokens),
        token=token,
        basic=basic,
        read_only=read_only,
        max_body_bytes=max_body_bytes,
    )
