"""Web benchmark: the overview page and a list page over a big SQLite database.

    .venv/bin/python bench/bench_web.py [--runs N] [--quick] [--json PATH] [--tasks N]

Builds a database of ``--tasks`` tasks (1,000,000; 20,000 with ``--quick``) through the
library's bulk enqueue, then sets their states in one SQL pass as a long-running queue has
them (5% pending, a few running, failed and cancelled, the rest completed over the last day,
in three queues) and fills a day of ``task_history`` as the acknowledgements would have.
Then times, through httpx's ASGI transport (no network), ``GET /`` (the overview with its
charts), ``GET /api/tasks?state=pending&limit=50`` and ``/tasks`` if the app has it; the
median of ``--runs`` requests each, after one warm-up (the first overview is shown on its
own: it counts every queue's tasks, which later reads keep up to date). Aims: overview
< 100 ms, a list page < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker import Task, TaskItem, WorkerQueue
from worker.builtins.requests import CallRequest
from worker.core.config import QueueConfig
from worker.storage.schema import HISTORY_BUCKETS
from worker.web import create_app

AIMS = {"GET /": 100.0, "GET /api/tasks?state=pending&limit=50": 50.0, "GET /tasks": 50.0}
CHUNK = 50_000


async def build(path: Path, n: int) -> float:
    started = time.perf_counter()
    config = QueueConfig(database_url=f"sqlite+aiosqlite:///{path}")
    async with WorkerQueue(config) as queue:
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            await queue.enqueue(
                Task(items=[TaskItem(request=CallRequest(target="os:getcwd"))],
                     queue=f"q{(start + i) % 3}")
                for i in range(size)
            )  # fmt: skip
    now = time.time()
    conn = sqlite3.connect(path)
    with conn:
        # By rowid position: 5% pending, 0.1% processing, 0.5% discarded, 0.2% cancelled.
        conn.execute(
            "UPDATE tasks SET state = CASE WHEN rowid % 1000 < 50 THEN 'pending' "
            "WHEN rowid % 1000 < 51 THEN 'processing' WHEN rowid % 1000 < 56 THEN 'discarded' "
            "WHEN rowid % 1000 < 58 THEN 'cancelled' ELSE 'completed' END, "
            "started_at = ? - (rowid % 86400), finished_at = CASE WHEN rowid % 1000 < 51 "
            "THEN NULL ELSE ? - (rowid % 86400) + 1 END",
            (now, now),
        )
        columns = ["queue", "minute", "outcome", "count", "seconds", *HISTORY_BUCKETS]
        marks = ", ".join("?" * len(columns))
        minute = int(now // 60)
        rows = [
            (f"q{q}", minute - m, "completed", 20, 20.0, *([0] * 8), 10, 10, *([0] * 11))
            for q in range(3) for m in range(24 * 60)
        ]  # fmt: skip
        conn.executemany(f"INSERT INTO task_history ({', '.join(columns)}) VALUES ({marks})", rows)
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


async def measure(path: Path, runs: int) -> dict[str, list[float]]:
    config = QueueConfig(database_url=f"sqlite+aiosqlite:///{path}")
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
    args = parser.parse_args()
    n = args.tasks or (20_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as directory:
        path = Path(directory) / "web.db"
        built = asyncio.run(build(path, n))
        print(f"built {n:,} tasks in {built:.1f} s")
        figures = asyncio.run(measure(path, args.runs))
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
