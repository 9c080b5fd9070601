"""The peer harness's workload on one PostgreSQL server: this queue, procrastinate and saq.

    .venv/bin/python bench/bench_peers_postgres.py --database-url postgresql+asyncpg://... \\
        --peers-dir ../shared/peers --peers-python /tmp/peers-venv/bin/python [--runs 3]

The peers run through the harness's own scripts (``procrastinate_bench.py``,
``saq_bench.py --backend postgres``, in their own virtualenv with the harness's pinned
versions: ``pip install -r <peers-dir>/requirements.txt``), as subprocesses pointed at the
same server, each on its own ``bench_peer_*`` database that the scripts recreate per run.
This queue runs the same workload here, in this interpreter, on a new database per run:

* ``enqueue_single``: 5,000 ``enqueue([task])`` calls; ``enqueue_bulk``: 50,000 tasks in
  ``enqueue()`` calls of 1,000. Building the tasks is inside the clock, as in the harness.
* ``drain_1p`` / ``drain_2p``: 20,000 no-op tasks through ``Worker(concurrency=100)`` in 1 or
  2 processes (``bench_runtime.throughput``; the peers: their CLI workers, concurrency 10).
* ``pickup``: an idle ``Worker`` in another process, enqueue to handler start, p50
  (``bench_runtime.pickup``: 100 tasks 50 ms apart; the harness's: 200 tasks 10 ms apart).

Each figure is the median of ``--runs`` runs. The table's ratios are ours / the peer's (for
pickup, in ms, below 1 is better). ``--peer-results`` reads the peers' figures from an
earlier harness run (its results JSON lines) instead of running them again.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import bench_runtime
from bench_runtime import Noop
from postgres_databases import Databases, add_arguments, server_url

from worker import QueueConfig, Task, TaskItem, WorkerQueue

METRICS = ("enqueue_single", "enqueue_bulk", "drain_1p", "drain_2p", "pickup")
UNITS = {"pickup": "ms p50"}
PEERS = {  # harness script and its arguments besides the server's
    "procrastinate": ["procrastinate_bench.py", "--concurrency", "10"],
    "saq": ["saq_bench.py", "--backend", "postgres"],
}


def peer_dsn(url: str) -> str:
    """The server's maintenance database as libpq (psycopg) takes it."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))


def run_peers(url: str, peers_dir: Path, python: str, runs: int, results: Path) -> None:
    """The harness's procrastinate and saq scripts, one after the other, on ``url``'s server."""
    for name, (script, *extra) in PEERS.items():
        work = Path(tempfile.mkdtemp(prefix=f"bench-peer-{name}-"))
        cmd = [python, str(peers_dir / script), "--pg-dsn", peer_dsn(url),
               "--pg-db", f"bench_peer_{name}", "--repeat", str(runs),
               "--workdir", str(work), "--results", str(results), *extra]  # fmt: skip
        print(f"  running {name}: {' '.join(cmd)}", flush=True)
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=peers_dir, capture_output=True, text=True, check=False)
        print(f"    exit {done.returncode} after {time.monotonic() - started:.0f} s", flush=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)


def read_peers(results: Path) -> dict[str, dict[str, float]]:
    """{peer: {metric: median}} from harness JSON lines (the last record of each wins)."""
    found: dict[str, dict[str, float]] = {}
    for line in results.read_text().splitlines():
        record = json.loads(line)
        peer = next((name for name in PEERS if record["system"].startswith(name)), None)
        if peer is not None and record["median"] is not None:
            found.setdefault(peer, {})[record["metric"]] = float(record["median"])
    return found


async def enqueue(url: str, n: int, chunk: int) -> float:
    """Tasks/s of ``n`` tasks in calls of ``chunk``, building the tasks inside the clock."""
    config = QueueConfig(database_url=url)
    async with WorkerQueue(config) as queue:
        start = time.perf_counter()
        for offset in range(0, n, chunk):
            size = min(chunk, n - offset)
            await queue.enqueue([Task(items=[TaskItem(request=Noop())]) for _ in range(size)])
        elapsed = time.perf_counter() - start
        stats = await queue.get_queue_stats()
    if stats["pending"] != n:
        raise RuntimeError(f"expected {n} pending, got {stats}")
    return n / elapsed


def measure_ours(databases: Databases, runs: int) -> dict[str, float]:
    plan: dict[str, Callable[[], float]] = {
        "enqueue_single": lambda: asyncio.run(enqueue(databases.fresh("single"), 5_000, 1)),
        "enqueue_bulk": lambda: asyncio.run(enqueue(databases.fresh("bulk"), 50_000, 1_000)),
        "drain_1p": lambda: bench_runtime.throughput(databases.fresh("drain1"), 20_000, 1),
        "drain_2p": lambda: bench_runtime.throughput(databases.fresh("drain2"), 20_000, 2),
        "pickup": lambda: statistics.median(bench_runtime.pickup(databases.fresh("pickup"), 100)),
    }
    medians = {}
    for metric, job in plan.items():
        values = [job() for _ in range(runs)]
        medians[metric] = statistics.median(values)
        shown = " / ".join(f"{v:,.1f}" for v in values)
        print(f"  ours {metric:<15} {shown} -> median {medians[metric]:,.1f}", flush=True)
    return medians


def show(ours: dict[str, float], peers: dict[str, dict[str, float]]) -> None:
    names = list(PEERS)
    head = f"  {'figure':<22} {'worker-queue':>13}" + "".join(f" {n:>13}" for n in names)
    print("\n== worker-queue vs. peers on PostgreSQL (medians; ratio = ours / peer) ==")
    print(head + "".join(f" {'/ ' + n:>15}" for n in names))
    for metric in METRICS:
        unit = UNITS.get(metric, "jobs/s")
        cells = [f"{ours[metric]:,.1f}"] + [
            f"{peers[n][metric]:,.1f}" if metric in peers.get(n, {}) else "-" for n in names
        ]
        ratios = [
            f"{ours[metric] / peers[n][metric]:.2f}" if metric in peers.get(n, {}) else "-"
            for n in names
        ]
        line = f"  {metric + ' (' + unit + ')':<22}" + "".join(f" {c:>13}" for c in cells)
        print(line + "".join(f" {r:>15}" for r in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers-dir", type=Path, default=Path(os.environ.get("PEERS_DIR", "")))
    parser.add_argument("--peers-python", default=os.environ.get("PEERS_PYTHON", sys.executable))
    parser.add_argument("--peer-results", type=Path, help="reuse a harness results file")
    args = parser.parse_args()
    url = server_url(args)
    if url is None:
        raise SystemExit("--database-url (or BENCH_DATABASE_URL) is required")
    databases = Databases(url)
    atexit.register(databases.drop_all)
    print(f"== PostgreSQL {databases.server_version()} at {urlsplit(url).netloc}; "
          f"load {os.getloadavg()} ==")  # fmt: skip
    results = args.peer_results
    if results is None:
        if not (args.peers_dir / "common.py").is_file():
            raise SystemExit("--peers-dir (or PEERS_DIR) must be the peer harness's directory")
        results = Path(tempfile.mkdtemp(prefix="bench-peers-")) / "results.jsonl"
        run_peers(url, args.peers_dir.resolve(), args.peers_python, args.runs, results)
    peers = read_peers(results)
    ours = measure_ours(databases, args.runs)
    show(ours, peers)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
