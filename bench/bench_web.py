"""Web benchmark: the overview page and a list page over a big database.

    .venv/bin/python bench/bench_web.py [--runs N] [--quick] [--json PATH] [--tasks N]
        [--backend sqlite|postgres] [--database-url URL]

Builds a database of ``--tasks`` tasks (1,000,000; 20,000 with ``--quick``) through the
library's bulk enqueue, then sets their states in one SQL pass as a long-running queue has
them (5% pending, a few running, failed and cancelled, the rest completed over the last day,
in three queues) and fills a day of ``task_history`` as the acknowledgements would have.
Then times, through httpx's ASGI transport (no network), ``GET /`` (the overview with its
charts), ``GET /api/tasks?state=pending&limit=50`` and ``/tasks`` if the app has it; the
median of ``--runs`` requests each, after one warm-up (the first overview is shown on its
own: it counts every queue's tasks, which later reads keep up to date). Aims: overview
< 100 ms, a list page < 50 ms. SQLite by default (a file in a temporary directory); with
``--backend postgres`` a throwaway PostgreSQL server (``bench/postgres.py``), or the server
``--database-url`` names, on a new database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from postgres_databases import Databases, add_arguments, analyze, server_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker import Task, TaskItem, WorkerQueue
from worker.builtins.requests import CallRequest
from worker.core.config import QueueConfig
from worker.storage.schema import HISTORY_BUCKETS, task_history, tasks

AIMS = {"GET /": 100.0, "GET /api/tasks?state=pending&limit=50": 50.0, "GET /tasks": 50.0}
CHUNK = 50_000
DAY_S = 86_400.0


async def build(url: str, n: int) -> float:
    started = time.perf_counter()
    now = time.time()
    call = CallRequest(target="os:getcwd")
    async with WorkerQueue(QueueConfig(database_url=url)) as queue:
        for start in range(0, n, CHUNK):
            # Created over the last day; the priority carries each task's place in a
            # thousand (read by the pass below, then set back to 0).
            batch = []
            for i in range(start, min(n, start + CHUNK)):
                at = now - DAY_S * (n - i) / n
                batch.append(
                    Task(items=[TaskItem(request=call)], queue=f"q{i % 3}", priority=i % 1000,
                         created_at=at, updated_at=at, schedule_at=at)
                )  # fmt: skip
            await queue.enqueue(batch)
        engine = queue.storage.database.engine  # type: ignore[attr-defined]
        place = tasks.c.priority
        async with engine.begin() as conn:
            # 5% pending, 0.1% processing, 0.5% discarded, 0.2% cancelled, the rest completed.
            await conn.execute(
                sa.update(tasks).values(
                    state=sa.case(
                        (place < 50, "pending"), (place < 51, "processing"),
                        (place < 56, "discarded"), (place < 58, "cancelled"),
                        else_="completed",
                    ),
                    started_at=tasks.c.created_at,
                    finished_at=sa.case((place < 51, None), else_=tasks.c.created_at + 1),
                    priority=0,
                )
            )  # fmt: skip
            minute = int(now // 60)
            buckets = [0] * 8 + [10, 10] + [0] * (len(HISTORY_BUCKETS) - 10)
            rows = [
                {"queue": f"q{q}", "minute": minute - m, "outcome": "completed", "count": 20,
                 "seconds": 20.0, **dict(zip(HISTORY_BUCKETS, buckets, strict=True))}
                for q in range(3) for m in range(24 * 60)
            ]  # fmt: skip
            await conn.execute(sa.insert(task_history), rows)
        await analyze(engine)
    return time.perf_counter() - started


async def measure(database_url: str, runs: int) -> dict[str, list[float]]:
    from worker.web import create_app

    config = QueueConfig(database_url=database_url)
    figures: dict[str, list[float]] = {}
    async with WorkerQueue(config) as queue:
        app = create_app(queue)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for url in ("/", "/api/tasks?state=pending&limit=50", "/tasks"):
                started = time.perf_counter()
                first = await client.get(url)  # warm-up (and: does the page exist?)
                if first.status_code == 404:
                    continue
                first.raise_for_status()
                if url == "/":  # the first overview counts every queue's tasks; later ones not
                    figures["GET / (first, after start)"] = [(time.perf_counter() - started) * 1000]
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    (await client.get(url)).raise_for_status()
                    times.append((time.perf_counter() - started) * 1000)
                figures[f"GET {url}"] = times
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="requests per figure")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--tasks", type=int, help="tasks in the database")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    add_arguments(parser)
    args = parser.parse_args()
    n = args.tasks or (20_000 if args.quick else 1_000_000)
    server = server_url(args)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as directory:
        databases = None if server is None else Databases(server)
        if databases is None:
            url, backend = f"sqlite+aiosqlite:///{Path(directory) / 'web.db'}", "sqlite"
        else:
            url, backend = databases.fresh("web"), f"postgresql {databases.server_version()}"
        try:
            built = asyncio.run(build(url, n))
            print(f"{backend}: built {n:,} tasks in {built:.1f} s")
            figures = asyncio.run(measure(url, args.runs))
        finally:
            if databases is not None:
                databases.drop_all()
    results = []
    for name, times in figures.items():
        median = statistics.median(times)
        aim = AIMS.get(name)
        verdict = "" if aim is None else f"aim < {aim:g} ms: {'met' if median < aim else 'MISSED'}"
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"  {name:<42} median {median:8.1f} ms  ({runs})  {verdict}")
        results.append({"name": name, "unit": "ms", "median": median, "runs": times, "aim": aim})
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
