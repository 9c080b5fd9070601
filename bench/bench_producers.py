"""Producer benchmark: getting 50,000 tasks in, everything a user pays inside the clock.

    .venv/bin/python bench/bench_producers.py [--runs 3] [--quick] [--json PATH] [--freeze]
        [--backend postgres | --database-url postgresql+asyncpg://...]
        [--peers-dir ../shared/peers --peers-python PEERS_VENV/bin/python]

The workload is the peer harness's (``../shared/peers``): each task carries its ~100-byte
dict payload, all in one call. Three ways in, each timed from the payloads to the call's
return, on a new database per run:

* ``submit_many``: ``await queue.submit_many([Noop(payload=p) for p in payloads])``, the
  request models built inside the clock;
* ``defer_many``: ``await noop.defer_many([{"payload": p} for p in payloads])``, a task
  function's arguments validated inside the clock;
* ``enqueue``: ``await queue.enqueue([Task(items=[TaskItem(request=Noop(payload=p))]) ...])``,
  the seed's API, every model built inside the clock;

and ``submit_many (call only)``, the requests built before the clock. ``--freeze`` runs it
as a program that calls ``gc.freeze()`` once it has started: the collector's full passes then
skip the objects of its imports, which otherwise they walk again each time while the models
are built (docs/performance.md, "Getting work in"). Each figure is the
median of ``--runs`` runs, on SQLite (files in a temporary directory) and, with
``--backend postgres`` (a throwaway server, :mod:`postgres`) or ``--database-url``, on
PostgreSQL. With ``--peers-dir``, litequeue's bulk put (the harness's
``litequeue_bench.py --only enqueue_bulk``: ``put()`` x1,000 per transaction, payloads
JSON-encoded before its clock) runs in the same run, with ``--peers-python`` (a virtualenv
holding ``litequeue``; ``pip install -r <peers-dir>/requirements.txt``), and is printed
beside ours.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from postgres_databases import Databases, add_arguments, server_url
from pydantic import BaseModel

from worker import Jobs, ProcessorRegistry, QueueConfig, Task, TaskItem, WorkerQueue
from worker import register_request_kind as kind

FULL, QUICK = 50_000, 5_000


@kind("bench-producers-noop")
class Noop(BaseModel):
    """The harness's job: a payload to hand back."""

    payload: dict[str, Any]


jobs = Jobs(registry=ProcessorRegistry())


@jobs.task(name="bench-producers.noop")
async def noop(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def make_payload(i: int) -> dict[str, Any]:
    """The harness's ~100-byte payload (``common.make_payload``)."""
    return {
        "id": i,
        "user": f"user-{i:08d}",
        "action": "send_welcome_email",
        "email": f"user{i:08d}@example.com",
        "attempt": 0,
    }


Way = Callable[[WorkerQueue, list[dict[str, Any]]], Awaitable[object]]


async def via_submit_many(queue: WorkerQueue, payloads: list[dict[str, Any]]) -> object:
    return await queue.submit_many([Noop(payload=p) for p in payloads])


async def via_defer_many(queue: WorkerQueue, payloads: list[dict[str, Any]]) -> object:
    return await noop.defer_many([{"payload": p} for p in payloads])


async def via_enqueue(queue: WorkerQueue, payloads: list[dict[str, Any]]) -> object:
    return await queue.enqueue([Task(items=[TaskItem(request=Noop(payload=p))]) for p in payloads])


WAYS: dict[str, Way] = {
    "submit_many": via_submit_many,
    "defer_many": via_defer_many,
    "enqueue([Task])": via_enqueue,
}
CALL_ONLY = "submit_many (call only)"


async def one_run(url: str, way: str, n: int) -> float:
    """Tasks/s of one way in, on a fresh database at ``url``."""
    async with WorkerQueue(QueueConfig(database_url=url)) as queue:
        jobs.bind(queue)
        payloads = [make_payload(i) for i in range(n)]
        requests = [Noop(payload=p) for p in payloads] if way == CALL_ONLY else []
        gc.collect()  # the garbage of building the inputs is not the clock's
        start = time.perf_counter()
        if way == CALL_ONLY:
            await queue.submit_many(requests)
        else:
            await WAYS[way](queue, payloads)
        elapsed = time.perf_counter() - start
        stats = await queue.get_queue_stats()
        jobs.bind(None)
    if stats["pending"] != n:
        raise RuntimeError(f"{way}: expected {n} pending, got {stats}")
    return n / elapsed


def measure(fresh: Callable[[str], str], runs: int, n: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for way in [*WAYS, CALL_ONLY]:
        figures[way] = [asyncio.run(one_run(fresh(way), way, n)) for _ in range(runs)]
        shown = " / ".join(f"{v:,.0f}" for v in figures[way])
        print(f"    {way:<26} {shown}  -> median {statistics.median(figures[way]):,.0f} tasks/s",
              flush=True)  # fmt: skip
    return figures


def litequeue(peers_dir: Path, python: str, runs: int, n: int) -> list[float] | None:
    """The harness's litequeue bulk put: its runs in tasks/s, or None if it did not run."""
    work = Path(tempfile.mkdtemp(prefix="bench-producers-litequeue-"))
    results = work / "results.jsonl"
    cmd = [python, str(peers_dir / "litequeue_bench.py"), "--only", "enqueue_bulk",
           "--repeat", str(runs), "--n-bulk", str(n), "--workdir", str(work),
           "--results", str(results)]  # fmt: skip
    try:
        done = subprocess.run(cmd, cwd=peers_dir, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not results.exists():
            print(f"  litequeue did not run (exit {done.returncode}): {done.stderr[-500:]}")
            return None
        record = json.loads(results.read_text().splitlines()[-1])
        return [float(value) for value in record["runs"]]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK:,} tasks, not {FULL:,}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--freeze",
        action="store_true",
        help="as a program that calls gc.freeze() once started (imports done), before any work",
    )
    parser.add_argument("--peers-dir", type=Path, default=os.environ.get("PEERS_DIR"))
    parser.add_argument("--peers-python", default=os.environ.get("PEERS_PYTHON", sys.executable))
    args = parser.parse_args()
    n = QUICK if args.quick else FULL
    if args.freeze:  # everything imported so far is left out of the collector's passes
        gc.collect()
        gc.freeze()
    frozen = f", gc.freeze() of {gc.get_freeze_count():,} objects first" if args.freeze else ""
    print(f"== {n:,} tasks in one call, everything built inside the clock{frozen}; load "
          f"{os.getloadavg()[0]:.2f} ==")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="bench_producers_"))
    atexit.register(shutil.rmtree, root, True)
    files = iter(range(1_000_000))

    def sqlite_file(label: str) -> str:
        return f"sqlite+aiosqlite:///{root / f'{next(files):03d}.db'}"

    document: dict[str, Any] = {
        "tasks": n, "runs": args.runs, "frozen": args.freeze, "figures": {}
    }  # fmt: skip
    print("  SQLite (synchronous=NORMAL, WAL)")
    document["figures"]["sqlite"] = measure(sqlite_file, args.runs, n)
    url = server_url(args)
    if url is not None:
        databases = Databases(url)
        atexit.register(databases.drop_all)
        print(f"  PostgreSQL {databases.server_version()}")
        document["figures"]["postgresql"] = measure(databases.fresh, args.runs, n)
    if args.peers_dir is not None:
        peer = litequeue(Path(args.peers_dir).resolve(), args.peers_python, args.runs, n)
        if peer is not None:
            document["figures"]["litequeue"] = {"bulk put": peer}
            shown = " / ".join(f"{v:,.0f}" for v in peer)
            print(f"  litequeue bulk put: {shown}  -> median {statistics.median(peer):,.0f}/s")
    print("\n== medians, tasks/s ==")
    for backend, ways in document["figures"].items():
        for way, values in ways.items():
            print(f"  {backend:<11} {way:<26} {statistics.median(values):>10,.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
