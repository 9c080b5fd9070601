"""Helpers of the web tests: an httpx client on the app of a queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from worker import WorkerQueue
from worker.web import create_app


@asynccontextmanager
async def api_client(
    queue: WorkerQueue, *, token: str | None = None, read_only: bool = False, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(queue, token=token, read_only=read_only, **options)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://queue.test") as client:
        yield client


def call(target: str = "os:getcwd", **options: object) -> dict[str, object]:
    """A submit body of the built-in ``call`` kind."""
    return {"kind": "call", "request": {"target": target}, **options}
