"""``queue_lifespan``: a FastAPI app's lifespan opens the queue, runs workers on the app's loop
(stopping them gracefully), mounts the dashboard and hands the queue to handlers; on both
backends, through ``asgi_lifespan.LifespanManager`` and httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request

from worker import Jobs, QueueClosedError, QueueConfig, TaskState, WorkerQueue
from worker.integrations.fastapi import QueueDep, get_queue, queue_lifespan

pytestmark = pytest.mark.timeout(90)

jobs = Jobs()


@jobs.task(name="tests.lifespan.double")
async def double(n: int) -> int:
    return 2 * n


@jobs.task(name="tests.lifespan.slow")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


def make_app(config: QueueConfig, **options: Any) -> FastAPI:
    app = FastAPI(lifespan=queue_lifespan(config, jobs=[jobs], **options))

    @app.post("/double/{n}")
    async def defer_double(n: int) -> dict[str, str]:
        return {"id": (await double.defer(n=n)).id}

    @app.get("/tasks/{task_id}")
    async def show(task_id: str, queue: QueueDep) -> dict[str, Any]:
        task = await queue.get_task(task_id)
        return {"state": task.state, "result": task.items[0].result}

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


async def until(client: httpx.AsyncClient, path: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = (await client.get(path)).json()
        if body.get("state") == state or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def test_the_app_defers_and_its_worker_runs_the_task(config: QueueConfig) -> None:
    app = make_app(config, workers=1)
    async with serving(app) as client:
        assert isinstance(app.state.queue, WorkerQueue)
        assert jobs.queue is app.state.queue  # bound while the app runs
        made = await client.post("/double/21")
        assert made.status_code == 200, made.text
        task_id = made.json()["id"]
        assert await until(client, f"/tasks/{task_id}", "completed") == {
            "state": "completed",
            "result": 42,
        }
        # The dashboard is mounted, on the same queue.
        api = await client.get(f"/queue/api/tasks/{task_id}")
        assert api.status_code == 200, api.text
        assert api.json()["state"] == "completed"
        assert (await client.get("/queue/")).status_code == 200
        assert len((await client.get("/queue/api/workers")).json()) == 1  # the app's worker
    # Afterwards: unbound, unmounted, closed.
    assert jobs.queue is None
    assert app.state.queue is None
    assert not [route for route in app.router.routes if getattr(route, "path", "") == "/queue"]


async def test_a_running_task_finishes_before_the_app_stops(config: QueueConfig) -> None:
    app = make_app(config, workers=1, dashboard=None)
    async with serving(app) as client:
        task = await slow.defer(seconds=1.0)
        await until(client, f"/tasks/{task.id}", "processing")
        assert (await client.get("/queue/api/workers")).status_code == 404  # no dashboard
    async with WorkerQueue(config) as queue:
        done = await queue.get_task(task.id)
    assert done.state is TaskState.COMPLETED  # not cut short and released
    assert done.items[0].result == "done"


async def test_without_workers_tasks_wait_for_wq_worker(config: QueueConfig) -> None:
    app = make_app(config, workers=0)
    async with serving(app) as client:
        task_id = (await client.post("/double/1")).json()["id"]
        await asyncio.sleep(0.3)
        assert (await client.get(f"/tasks/{task_id}")).json()["state"] == "pending"


@pytest.mark.sqlite_only("arguments and errors, whatever the backend")
async def test_bad_arguments_and_a_queue_outside_the_lifespan_are_refused(
    config: QueueConfig,
) -> None:
    with pytest.raises(ValueError, match="workers"):
        queue_lifespan(config, workers=-1)
    with pytest.raises(ValueError, match="dashboard"):
        queue_lifespan(config, dashboard="queue")
    app = FastAPI()

    @app.get("/")
    async def handler(queue: QueueDep) -> str:
        return "unreachable"

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=True), base_url="http://app"
    ) as client:
        with pytest.raises(QueueClosedError, match="queue_lifespan"):
            await client.get("/")
    with pytest.raises(QueueClosedError):
        get_queue(Request({"type": "http", "app": app}))
