"""A FastAPI (or Starlette) lifespan that opens the queue for the app, optionally runs
workers inside it, and mounts the dashboard (needs the ``web`` extra)::

    from fastapi import FastAPI
    from worker.integrations.fastapi import QueueDep, queue_lifespan

    jobs = Jobs()

    @jobs.task(name="example.greet")
    async def greet(name: str) -> str: ...

    app = FastAPI(lifespan=queue_lifespan("sqlite:///data/queue.db", workers=1, jobs=[jobs]))

    @app.post("/greetings")
    async def create(name: str) -> dict[str, str]:
        return {"id": (await greet.defer(name=name)).id}

    @app.get("/greetings/{task_id}")
    async def show(task_id: str, queue: QueueDep) -> dict[str, str]:
        return {"state": (await queue.get_task(task_id)).state}

While the app runs, the queue is ``app.state.queue`` (and ``request.state.queue``, the
lifespan's state), and :data:`QueueDep` (or ``Depends(get_queue)``) hands it to a handler;
``jobs`` are bound to it, so their ``defer`` enqueues there. ``workers=N`` runs N
:class:`~worker.runtime.workers.Worker` loops on the app's event loop (they claim in their own
names, beat, sweep and fire schedules, as ``wq worker`` does, but leave the signals to the
server); at shutdown they stop claiming, their running tasks get ``shutdown_grace`` seconds
to finish (the rest are released, to run again elsewhere), and then the queue closes.
``dashboard="/queue"`` mounts :func:`worker.web.create_app` there (None: no dashboard).

Workers inside a web process suit small deployments and tests; ``wq worker`` processes
scale apart from the web tier and survive its restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.routing import Mount
from starlette.types import ASGIApp

from worker.core.config import QueueConfig
from worker.core.errors import QueueClosedError
from worker.queue.worker_queue import WorkerQueue
from worker.runtime.processors import ProcessorRegistry
from worker.runtime.task_functions import Jobs
from worker.runtime.workers import Worker
from worker.web import create_app

log = logging.getLogger(__name__)

#: A lifespan as Starlette's and FastAPI's ``lifespan=`` take it.
Lifespan = Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]


def queue_lifespan(
    config: QueueConfig | str | None = None,
    *,
    workers: int = 0,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    registry: ProcessorRegistry | None = None,
    modules: Iterable[str] = (),
    jobs: Iterable[Jobs] = (),
    dashboard: str | None = "/queue",
    token: str | None = None,
    read_only: bool = False,
    create: bool = True,
) -> Lifespan:
    """The lifespan (see the module docstring). ``config``: a :class:`QueueConfig`, a
    database URL, or None for the ``QUEUE_*`` variables. ``workers``: how many worker loops
    to run in the app (0: none; ``wq worker`` runs the tasks); ``concurrency``, ``queues``,
    ``registry`` are theirs, and ``modules`` are imported first (their handlers and task
    functions register). ``token`` and ``read_only`` are the dashboard's
    (:func:`~worker.web.create_app`). ``create``: create the database if it is missing."""
    if isinstance(config, str):
        config = QueueConfig(database_url=config)
    chosen = config if config is not None else QueueConfig.from_env()
    if type(workers) is not int or workers < 0:
        raise ValueError(f"workers must be a whole number >= 0, got {workers!r}")
    if dashboard is not None and (not dashboard.startswith("/") or dashboard == "/"):
        raise ValueError(
            f"dashboard must be a path below the root such as '/queue', got {dashboard!r}"
        )
    bound = list(jobs)
    modules = list(modules)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        if modules:
            (registry or _default_registry()).load_modules(modules)
        queue = WorkerQueue(chosen)
        await queue.initialize(create=create)
        mount: Mount | None = None
        running: list[Worker] = []
        tasks: list[asyncio.Task[dict[str, int]]] = []
        try:
            mount = _mount(app, dashboard, create_app(queue, token=token, read_only=read_only))
            app.state.queue = queue
            for each in bound:
                each.bind(queue)
            running = [
                Worker(queue, registry, concurrency=concurrency, queues=queues,
                       handle_signals=False)
                for _ in range(workers)
            ]  # fmt: skip
            tasks = await _start(running)
            yield {"queue": queue}
        finally:
            try:
                await _stop(running, tasks)
            finally:
                for each in bound:
                    each.bind(None)
                app.state.queue = None
                if mount is not None:
                    app.router.routes.remove(mount)
                await queue.close()

    return lifespan


def get_queue(request: Request) -> WorkerQueue:
    """The app's queue (a FastAPI dependency: ``queue: WorkerQueue = Depends(get_queue)``);
    :class:`~worker.core.errors.QueueClosedError` outside :func:`queue_lifespan`."""
    queue = getattr(request.app.state, "queue", None)
    if not isinstance(queue, WorkerQueue):
        raise QueueClosedError(
            "the app has no open queue: give FastAPI(lifespan=queue_lifespan(...)), and use "
            "it while the app runs"
        )
    return queue


#: A handler's parameter annotated so receives the app's queue: ``queue: QueueDep``.
QueueDep = Annotated[WorkerQueue, Depends(get_queue)]


def _default_registry() -> ProcessorRegistry:
    from worker.runtime.processors import registry

    return registry


def _mount(app: Any, path: str | None, dashboard: ASGIApp) -> Mount | None:
    if path is None:
        return None
    mount = Mount(path.rstrip("/"), app=dashboard, name="queue-dashboard")
    app.router.routes.append(mount)
    return mount


async def _start(workers: list[Worker]) -> list[asyncio.Task[dict[str, int]]]:
    """Start each worker and wait until it has registered (one that fails to, raises)."""
    tasks = [asyncio.create_task(w.run(), name=f"worker {w.id}") for w in workers]
    for worker, task in zip(workers, tasks, strict=True):
        started = asyncio.create_task(worker.started.wait())
        try:
            await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if task.done():  # it ended before it started: its error, or a stop
            await _stop(workers, tasks)
            task.result()
            raise RuntimeError(f"worker {worker.id} stopped as it started")
        task.add_done_callback(_report_end)
    if workers:
        log.info("%d worker%s running in the app", len(workers), "s" if len(workers) > 1 else "")
    return tasks


async def _stop(workers: list[Worker], tasks: list[asyncio.Task[dict[str, int]]]) -> None:
    """Stop the workers gracefully and wait for them (a cancellation of the caller still
    propagates: ``wait`` does not raise the workers' own)."""
    for worker in workers:
        worker.request_stop()
    if not tasks:
        return
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:  # stopped harder: the workers too, then go on stopping
        for task in tasks:
            task.cancel()
        raise


def _report_end(task: asyncio.Task[dict[str, int]]) -> None:
    """A worker that ended with an error while the app runs says so (the app goes on)."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("%s stopped with an error: %s", task.get_name(), error, exc_info=error)
