"""Task-list benchmark: a page of ``GET /api/tasks`` (and the ``/tasks`` page, and counts)
with each filter, over a database of N tasks, and each list query's plan.

    .venv/bin/python bench/bench_task_list.py [--tasks N] [--runs R] [--quick]
        [--backend sqlite|postgres] [--json PATH]

The database holds ``--tasks`` tasks (default 1,000,000) created a minute apart over the
past: 97 % completed, 1 % discarded (half with "disk full" in their error), 1 % cancelled,
1 % pending; one in ten a ``call`` task, the rest ``tts``; five queues; a thousand names.
Each figure is the median wall time of ``--runs`` requests through httpx against the app
(ASGI, no network), for a page of 50. The plans are printed (``EXPLAIN QUERY PLAN`` on
SQLite, ``EXPLAIN`` on PostgreSQL) so each filter's index can be read off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from postgres_databases import Databases, add_arguments, analyze, server_url

from tts import TextToSpeechRequest
from worker import QueueConfig, Task, TaskItem, WorkerQueue
from worker.builtins.requests import CallRequest
from worker.core.selection import TaskFilter
from worker.queue.admin import task_filter
from worker.storage import selection
from worker.storage.rows import RAW_COLUMNS
from worker.storage.schema import tasks
from worker.web import create_app

NOW = 1_800_000_000.0
CHUNK = 20_000


def filters(n: int) -> dict[str, dict[str, Any]]:
    recent = NOW - 0.005 * n * 60  # the newest half percent
    old = NOW - 0.99 * n * 60  # the oldest percent
    return {
        "none": {},
        "state=pending": {"state": "pending"},
        "state=pending&queue=q3": {"state": "pending", "queue": "q3"},
        "state=discarded": {"state": "discarded"},
        "state=completed": {"state": "completed"},
        "queue=q3": {"queue": "q3"},
        "state=cancelled&queue=q3": {"state": "cancelled", "queue": "q3"},
        "kind=call": {"kind": "call"},
        "kind=tts": {"kind": "tts"},
        "name=job-7": {"name": "job-7"},
        "error=disk full": {"error": "disk full"},
        "state=discarded&error=disk": {"state": "discarded", "error": "disk"},
        "created_before=old": {"created_before": old},
        "created_after=recent": {"created_after": recent},
    }


async def fill(queue: WorkerQueue, n: int) -> None:
    speech = TextToSpeechRequest(text="hello", voice_id="kokoro.af_heart")
    call = CallRequest(target="os:getcwd")
    for start in range(0, n, CHUNK):
        batch = [
            Task(
                items=[TaskItem(request=call if i % 10 == 0 else speech)],
                queue=f"q{i % 5}",
                name=f"job-{i % 1000}",
                created_at=NOW - (n - i) * 60,
                updated_at=NOW - (n - i) * 60,
                schedule_at=NOW - (n - i) * 60,
            )
            for i in range(start, min(n, start + CHUNK))
        ]
        await queue.enqueue(batch)
    # States by age, written straight to the table (running a million tasks is not the point).
    engine = queue.storage.database.engine  # type: ignore[attr-defined]
    done, bad, gone = NOW - 0.03 * n * 60, NOW - 0.02 * n * 60, NOW - 0.01 * n * 60
    async with engine.begin() as conn:
        finished = {"finished_at": tasks.c.created_at + 30, "attempt_count": 1}
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.created_at < done)
            .values(state="completed", started_at=tasks.c.created_at + 1, **finished)
        )
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.created_at >= done, tasks.c.created_at < bad)
            .values(
                state="discarded",
                last_error=sa.case(
                    (tasks.c.created_at < (done + bad) / 2, "OSError: No space left: disk full"),
                    else_="ValueError: bad input",
                ),
                **finished,
            )
        )
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.created_at >= bad, tasks.c.created_at < gone)
            .values(state="cancelled", finished_at=tasks.c.created_at + 5)
        )
    await analyze(engine)


async def plan(queue: WorkerQueue, chosen: TaskFilter) -> str:
    engine = queue.storage.database.engine  # type: ignore[attr-defined]
    query = selection.list_page(chosen, after_id=None, limit=50, columns=RAW_COLUMNS)
    text = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as conn:
        rows = (
            await conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + text)
        ).all()
    return "; ".join(str(row[-1]) for row in rows)


async def timed(client: httpx.AsyncClient, path: str, params: dict[str, Any], runs: int) -> float:
    times = []
    await client.get(path, params=params)  # warm the caches first
    for _ in range(runs):
        started = time.perf_counter()
        response = await client.get(path, params=params)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return statistics.median(times) * 1000


async def measure(url: str, n: int, runs: int, show_plans: bool) -> dict[str, Any]:
    config = QueueConfig(database_url=url)
    figures: dict[str, Any] = {}
    async with WorkerQueue(config, clock=lambda: NOW) as queue:
        started = time.perf_counter()
        await fill(queue, n)
        figures["fill_s"] = round(time.perf_counter() - started, 1)
        app = create_app(queue)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for label, params in filters(n).items():
                api = await timed(client, "/api/tasks", {**params, "limit": 50}, runs)
                page = await timed(client, "/tasks", params, runs)
                found = len((await client.get("/api/tasks", params=params)).json()["tasks"])
                figures[label] = {"api_ms": round(api, 1), "page_ms": round(page, 1), "rows": found}
                if show_plans:
                    figures[label]["plan"] = await plan(queue, task_filter(**params))
            # A page halfway down the pending backlog (1 % of the tasks, a fifth per queue),
            # in claim order: the keyset's walk starts at the cursor, not at the top.
            for label, depth in (
                ("state=pending", n // 200),
                ("state=pending&queue=q3", n // 1000),
            ):
                params = filters(n)[label]
                cursor = await _cursor(client, params, depth)
                if cursor is not None:
                    timing = await timed(client, "/api/tasks", {**params, **cursor}, runs)
                    figures[f"{label}, after {depth:,}"] = {"api_ms": round(timing, 1)}
            for label in ("none", "state=pending", "kind=call", "error=disk full"):
                params = filters(n)[label]
                figures[f"count {label}"] = {
                    "api_ms": round(await timed(client, "/api/tasks/count", params, runs), 1)
                }
    return figures


async def _cursor(
    client: httpx.AsyncClient, params: dict[str, Any], depth: int
) -> dict[str, Any] | None:
    """The ``after``/``after_priority`` of the ``depth``-th task ``params`` lists."""
    cursor: dict[str, Any] = {}
    step = min(500, max(1, depth))
    for _ in range(max(1, depth // step)):
        body = (await client.get("/api/tasks", params={**params, **cursor, "limit": step})).json()
        if body["next_after"] is None:
            return None
        cursor = {"after": body["next_after"], "after_priority": body["next_after_priority"]}
    return cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 tasks")
    parser.add_argument("--json", type=Path)
    add_arguments(parser)
    args = parser.parse_args()
    n = 10_000 if args.quick else args.tasks
    server = server_url(args)
    with tempfile.TemporaryDirectory(prefix="bench-list-") as root:
        if server is None:
            url = f"sqlite+aiosqlite:///{Path(root) / 'list.db'}"
            backend = "sqlite"
        else:
            databases = Databases(server)
            url = databases.fresh("list")
            backend = "postgresql"
        try:
            figures = asyncio.run(measure(url, n, args.runs, show_plans=True))
        finally:
            if server is not None:
                databases.drop_all()
    document = {"backend": backend, "tasks": n, "runs": args.runs, "figures": figures}
    print(f"{backend}, {n:,} tasks (filled in {figures['fill_s']} s); median of {args.runs}")
    for label, value in figures.items():
        if isinstance(value, dict):
            print(f"  {label:<28} api {value['api_ms']:>8.1f} ms", end="")
            if "page_ms" in value:
                print(f"  page {value['page_ms']:>8.1f} ms  rows {value['rows']:>3}", end="")
            print()
            if "plan" in value:
                print(f"      plan: {value['plan']}")
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
