"""Helpers of the web tests: an httpx client on the app of a queue, the app served by a
real uvicorn on 127.0.0.1, and Server-Sent Events read from a streamed response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp

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


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` served by uvicorn in this event loop on a free port of 127.0.0.1 (lifespan
    on); yields its base URL. Streams still open at the end are the test's to close."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not running.done(), "the server stopped before it started"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await running
        sock.close()


async def sse_events(
    response: httpx.Response, *, comments: bool = False
) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` of each Server-Sent Event in a streamed response; with
    ``comments``, each comment line (a heartbeat) too, as ``(":", line)``."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            if comments:
                yield ":", line
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield name, "\n".join(data)
            name, data = "message", []
