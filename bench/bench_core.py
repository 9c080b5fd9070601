"""Core benchmark: the worker queue's enqueue, drain, latency and stats vs. the raw sqlite3 ceiling.

    .venv/bin/python bench/bench_core.py [--runs N] [--quick] [--json PATH]
        [--database-url postgresql+asyncpg://user@host:port/db]

Every measurement uses a fresh database file in one temporary directory, removed at exit.
With ``--database-url`` (or ``BENCH_DATABASE_URL``) the same figures, and the runtime's
(``Worker`` drain, cross-process pickup, from ``bench_runtime``), are then taken on that
PostgreSQL server too, each run on a new database there (:mod:`postgres_databases`), and the
two backends are printed side by side.
Throughput figures are the median of ``--runs`` runs (all runs are printed). The "ceiling" is
the stdlib ``sqlite3`` module issuing the library's own SQL on a library-created schema.

Each clock starts after ``gc.collect()`` (:func:`settle`), with the inputs built and nothing
else the benchmark made still alive: the garbage of building 50,000 tasks would otherwise be
collected inside the timed window in some runs and not others (a full collection of the
heap took 60-110 ms here, a tenth of a drain). The collections the measured code causes
itself still count.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime
import functools
import gc
import json
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from itertools import count
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, TypeVar

import bench_runtime
from postgres_databases import Databases, add_arguments, run_sql, server_url
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tts import TextToSpeechRequest
from worker import Completion, QueueConfig, Task, TaskItem, WorkerQueue
from worker.storage.sqlite.bulk import MultiRowInsert
from worker.storage.sqlite.driver import DriverTxn
from worker.storage.statements import INSERT_COLUMNS

T = TypeVar("T")
Span = tuple[float, float]
Stmt = tuple[str, Any]  # SQL text and its parameters, as the library sent them to the driver
BUSY_S, SYNCHRONOUS = 30.0, "NORMAL"
SENTINEL, PROBE_WORKER = 1_700_000_000.125, "bench-probe"  # the probe's clock and worker id
TOKEN = re.compile(r"([\w:.-]+)")  # an id or a lease inside a string parameter
#: How the probe records the hot path's bulk load (DriverTxn.load), which has no one SQL text.
BULK_LOAD = "<bulk load>"
_files = count()
_root: list[Path] = []
CEILING: list[Ceiling] = []  # captured once, in main()
POSTGRES: list[Databases] = []  # the server of --database-url, if one was given


@dataclass(frozen=True)
class Sizes:
    enqueue: int
    drain: int
    latency: int
    stats_rows: int


FULL = Sizes(enqueue=50_000, drain=20_000, latency=1_000, stats_rows=1_000_000)
QUICK = Sizes(enqueue=5_000, drain=2_000, latency=100, stats_rows=50_000)


@dataclass
class Figure:
    name: str
    unit: str  # "tasks/s" (higher is better) or "ms" (lower is better)
    ceiling: str | None = None  # the name of the raw sqlite3 figure it compares to
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def show(self, label: str = "runs") -> None:
        shown = " / ".join(f"{value:,.2f}" for value in self.runs)
        print(f"  {self.name:<30} {label}: {shown}  -> median {self.median:,.2f} {self.unit}")


def fresh_db(label: str) -> str:
    if not _root:
        _root.append(Path(tempfile.mkdtemp(prefix="bench_core_")))
        atexit.register(shutil.rmtree, _root[0], True)
    return str(_root[0] / f"{next(_files):03d}-{label}.db")


def fresh(backend: str, label: str) -> str:
    """A new SQLite file's path, or (``postgresql``) a new database's URL."""
    return POSTGRES[0].fresh(label) if backend == "postgresql" else fresh_db(label)


def url_of(where: str) -> str:
    return where if where.startswith("postgresql") else f"sqlite+aiosqlite:///{where}"


def make_tasks(n: int) -> list[Task]:
    request = TextToSpeechRequest(text="hello", voice_id="kokoro.af_heart")
    return [Task(items=[TaskItem(request=request)]) for _ in range(n)]


def lib(
    path: str,
    job: Callable[[WorkerQueue], Awaitable[T]],
    worker_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> T:
    """Run ``job`` on a freshly opened queue over ``path`` (or a PostgreSQL URL), in a new
    event loop."""

    async def run() -> T:
        url = url_of(path)
        config = QueueConfig(database_url=url, sqlite_synchronous=SYNCHRONOUS, busy_timeout=BUSY_S)
        queue = WorkerQueue(config, worker_id=worker_id, clock=clock)
        await queue.initialize()  # creates the schema on a new file
        try:
            return await job(queue)
        finally:
            await queue.close()

    return asyncio.run(run())


def check(path: str, key: str, expected: int) -> None:
    stats = lib(path, lambda queue: queue.get_queue_stats())
    if stats[key] != expected:
        raise RuntimeError(f"expected {key} == {expected}, got {stats}")


def raw_connect(path: str, *, writer: bool = True) -> sqlite3.Connection:
    """A connection set up as the library's: its hot-path writer's, or (``writer=False``) a
    reader's, with SQLite's default page cache."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_S)
    for pragma in (f"busy_timeout = {int(BUSY_S * 1000)}", "journal_mode = WAL"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
    # As the library's connections: their commits leave WAL checkpoints to a background
    # thread (worker.storage.sqlite.checkpoints), so the ceiling's commits do not pay for one
    # either.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    if writer:  # the page cache of the library's writer connection (QueueConfig default)
        conn.execute(f"PRAGMA cache_size = -{QueueConfig().sqlite_writer_cache_mb * 1024}")
    return conn


# -- 5. the ceiling: the library's own statements, replayed through the stdlib sqlite3 --------


@dataclass(frozen=True)
class Ceiling:
    """What the library sent to the driver in a probe run (clock = SENTINEL), per operation."""

    insert: Stmt  # the bulk insert: BULK_LOAD (or an executemany's SQL) and the probe's rows
    claim: list[Stmt]  # dequeue(size=100)
    ack: list[Stmt]  # complete_many() of that batch
    stats: list[Stmt]  # get_queue_stats()
    batch: list[tuple[str, str]]  # the probe batch's (id, lease_id), to swap for a new batch's
    first_id: str  # the id in the first inserted row
    lease_prefix: str  # the probe claim's: its leases are this prefix and the task's id


def capture(size: int = 100) -> Ceiling:
    """Run each operation once through the library, recording the SQL it hands the driver."""
    seen: list[tuple[str, Any, bool]] = []

    def hook(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
            seen.append((sql, params, many))

    def taken() -> list[Stmt]:
        stmts = [(sql, params) for sql, params, _ in seen]
        seen.clear()
        return stmts

    async def probe(queue: WorkerQueue) -> Ceiling:
        tasks = make_tasks(size)
        seen.clear()
        await queue.enqueue(tasks)
        insert = next((sql, params) for sql, params, many in seen if many)
        seen.clear()
        batch = await queue.dequeue(size=size)
        claim = taken()
        await queue.complete_many([Completion(t.id, t.lease_id) for t in batch])
        ack = taken()
        await queue.get_queue_stats()
        pairs = [(t.id, t.lease_id or "") for t in batch]
        prefix = pairs[0][1].removesuffix(pairs[0][0])
        return Ceiling(insert, claim, ack, taken(), pairs, tasks[0].id, prefix)

    # Hot-path transactions run in the driver's thread (worker.storage.sqlite.driver's
    # DriverTxn), out of sight of
    # SQLAlchemy's events: their statements are recorded by wrapping DriverTxn for the probe.
    rows, many, load = DriverTxn.rows, DriverTxn.many, DriverTxn.load

    def traced_rows(txn: DriverTxn, statement: Any, **values: Any) -> Any:
        prepared = txn._prepared(statement)
        hook(None, None, prepared.sql, prepared.params(**values), None, False)
        return rows(txn, statement, **values)

    def traced_many(txn: DriverTxn, statement: Any, batch: Any) -> None:
        prepared = txn._prepared(statement)
        hook(None, None, prepared.sql, list(prepared.params_many(batch)), None, True)
        many(txn, statement, batch)

    event.listen(Engine, "before_cursor_execute", hook)

    def traced_load(txn: DriverTxn, batch: Any) -> bool:
        hook(None, None, BULK_LOAD, list(batch), None, True)
        return load(txn, batch)

    setattr(DriverTxn, "rows", traced_rows)  # noqa: B010 (a method swap mypy would refuse)
    setattr(DriverTxn, "many", traced_many)  # noqa: B010
    setattr(DriverTxn, "load", traced_load)  # noqa: B010
    try:
        return lib(fresh_db("probe"), probe, PROBE_WORKER, lambda: SENTINEL)
    finally:
        event.remove(Engine, "before_cursor_execute", hook)
        setattr(DriverTxn, "rows", rows)  # noqa: B010
        setattr(DriverTxn, "many", many)  # noqa: B010
        setattr(DriverTxn, "load", load)  # noqa: B010


@functools.cache
def tokens(text: str) -> list[str]:
    return TOKEN.split(text)


def swap(params: Any, values: dict[Any, Any]) -> Any:
    """The parameters with the probe's values (time, worker, ids, leases) swapped for new ones.

    A string parameter that is not itself a probe value may carry some (a JSON array of ids
    and leases, say): its tokens are swapped one by one.
    """

    def one(param: Any) -> Any:
        if not isinstance(param, str | float):
            return param
        if param in values or isinstance(param, float):
            return values.get(param, param)
        return "".join([str(values.get(part, part)) for part in tokens(param)])

    return tuple(one(param) for param in params)


def replay(
    conn: sqlite3.Connection, stmts: list[Stmt], values: dict[Any, Any], lease_prefix: str = ""
) -> list[Any]:
    """One write transaction of ``stmts``; returns the (id, lease_id) pairs of the rows the
    last of them returned (a claim returns ids: its leases are ``lease_prefix + id``)."""
    leased: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    for sql, params in stmts:
        cursor = conn.execute(sql, swap(params, values))
        rows, names = cursor.fetchall(), [d[0] for d in cursor.description or ()]
        if "id" in names:
            leased = [
                (row[names.index("id")], lease_prefix + row[names.index("id")]) for row in rows
            ]
    conn.execute("COMMIT")
    return leased


# -- 1. bulk enqueue -------------------------------------------------------------------------


def settle() -> None:
    """Collect the garbage made before a clock starts (see the module docstring)."""
    gc.collect()


def enqueue_rate(mode: str, n: int, chunk: int, backend: str = "sqlite") -> float:
    """Tasks are built before the clock starts; the ceiling's rows (new ids) likewise."""
    path = fresh(backend, f"{mode}-enqueue")
    if mode == "lib":
        tasks = make_tasks(n)

        async def job(queue: WorkerQueue) -> float:
            settle()
            start = time.perf_counter()
            for offset in range(0, n, chunk):
                await queue.enqueue(tasks[offset : offset + chunk])
            return time.perf_counter() - start

        elapsed = lib(path, job)
    else:
        lib(path, lambda queue: asyncio.sleep(0))  # the library creates the schema
        (sql, probe_rows), now = CEILING[0].insert, time.time()
        ids = [f"0{secrets.token_hex(7).upper()}{i:011d}" for i in range(n)]  # 26 chars, ascending
        rows = [swap(probe_rows[0], {CEILING[0].first_id: i, SENTINEL: now}) for i in ids]
        conn = raw_connect(path)
        settle()
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        if sql == BULK_LOAD:  # the library's multi-row statements, through sqlite3
            MultiRowInsert("tasks", INSERT_COLUMNS)(conn, rows)
        else:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    check(path, "pending", n)
    return n / elapsed


# -- 2. drain --------------------------------------------------------------------------------


def raw_drain(conn: sqlite3.Connection, ceiling: Ceiling, worker_id: str) -> None:
    claim_values = {SENTINEL: time.time(), PROBE_WORKER: worker_id}
    while got := replay(conn, ceiling.claim, claim_values, ceiling.lease_prefix):
        if len(got) != len(ceiling.batch):
            raise RuntimeError(f"a claim of {len(got)}, the probe's was {len(ceiling.batch)}")
        values: dict[Any, Any] = {SENTINEL: time.time()}
        for (probe_id, probe_lease), (task_id, lease) in zip(ceiling.batch, got, strict=True):
            values |= {probe_id: task_id, probe_lease: lease}
        replay(conn, ceiling.ack, values)
        claim_values[SENTINEL] = time.time()


def drain_span(path: str, worker_id: str, barrier: Barrier | None, raw: Ceiling | None) -> Span:
    """Drain ``path`` (with the library, or ``raw``) until a claim comes back empty.

    Returns this drainer's (start, end) wall-clock times.
    """
    if raw is not None:
        conn = raw_connect(path)
        settle()
        if barrier is not None:
            barrier.wait()
        start = time.time()
        raw_drain(conn, raw, worker_id)
        conn.close()
        return start, time.time()

    async def job(queue: WorkerQueue) -> Span:
        settle()
        if barrier is not None:
            await asyncio.to_thread(barrier.wait)
        start = time.time()
        while batch := await queue.dequeue(size=100):
            await queue.complete_many([Completion(task.id, task.lease_id) for task in batch])
        return start, time.time()

    return lib(path, job, worker_id)


def _drain_child(
    path: str, worker: str, barrier: Barrier, raw: Ceiling | None, out: MpQueue[Span | str]
) -> None:
    try:
        out.put(drain_span(path, worker, barrier, raw))
    except Exception as error:  # reported by the parent, which would otherwise wait
        barrier.abort()
        out.put(f"{worker}: {error!r}")


def drain_rate(mode: str, n: int, procs: int, backend: str = "sqlite") -> float:
    """Wall time from the first drainer starting (after a start barrier) to the last ending."""
    path = fresh(backend, f"{mode}-drain{procs}")
    lib(path, lambda queue: queue.enqueue(make_tasks(n)))  # a drainer holds no other tasks
    raw = CEILING[0] if mode == "raw" else None
    if procs == 1:
        spans = [drain_span(path, "bench-0", None, raw)]
    else:
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(procs), ctx.Queue()
        args = [(path, f"bench-{i}", barrier, raw, out) for i in range(procs)]
        children = [ctx.Process(target=_drain_child, args=a) for a in args]
        for child in children:
            child.start()
        got = [out.get(timeout=300) for _ in children]
        for child in children:
            child.join()
        if failed := [str(span) for span in got if isinstance(span, str)]:
            raise RuntimeError("; ".join(failed))
        spans = [span for span in got if not isinstance(span, str)]
    check(path, "completed", n)
    return n / (max(end for _, end in spans) - min(start for start, _ in spans))


# -- 3. enqueue-to-claim latency -------------------------------------------------------------


def latency_ms(n: int, interval_s: float = 0.002, backend: str = "sqlite") -> tuple[float, float]:
    """p50 and p99 of claim time - created_at; the consumer polls, sleeping 1 ms when empty."""
    singles, waits = [[task] for task in make_tasks(n)], list[float]()

    async def produce(queue: WorkerQueue) -> None:
        for single in singles:
            await queue.enqueue(single)
            await asyncio.sleep(interval_s)

    async def consume(queue: WorkerQueue) -> None:
        while len(waits) < n:
            batch = await queue.dequeue(size=100)
            claimed_at = time.time()
            if not batch:
                await asyncio.sleep(0.001)
            waits.extend(claimed_at - task.created_at for task in batch)

    async def job(queue: WorkerQueue) -> None:
        settle()
        await asyncio.gather(produce(queue), consume(queue))

    lib(fresh(backend, "latency"), job, "bench-0")
    waits.sort()
    pick = [waits[min(n - 1, round(q * (n - 1)))] * 1000 for q in (0.50, 0.99)]
    return pick[0], pick[1]


# -- 4. get_queue_stats with many rows -------------------------------------------------------


def seed(rows: int) -> str:
    """One API-written row copied ``rows - 1`` times in SQL: 90% completed, 5% pending, ..."""
    path, one = fresh_db("stats"), make_tasks(1)
    lib(path, lambda queue: queue.enqueue(one))
    state = (
        "CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 95 THEN 'pending' "
        "WHEN i % 100 < 97 THEN 'processing' WHEN i % 100 < 98 THEN 'retryable' "
        "WHEN i % 100 < 99 THEN 'discarded' ELSE 'cancelled' END"
    )
    finished = "CASE WHEN i % 100 < 90 OR i % 100 >= 98 THEN t.created_at END"
    special = {"id": "printf('0%025d', i)", "state": state, "finished_at": finished}
    conn = raw_connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
    select = ", ".join(special.get(column, f"t.{column}") for column in columns)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) "
        f"INSERT INTO tasks ({', '.join(columns)}) "
        f"SELECT {select} FROM seq, (SELECT * FROM tasks LIMIT 1) AS t",
        (rows - 1,),
    )
    conn.execute("COMMIT")
    conn.close()
    return path


def stats_ms(mode: str, path: str, calls: int = 5) -> list[float]:
    async def job(queue: WorkerQueue) -> list[float]:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            await queue.get_queue_stats()
            times.append((time.perf_counter() - start) * 1000)
        return times

    if mode == "lib":
        return lib(path, job)
    conn, times = raw_connect(path, writer=False), []
    for _ in range(calls):
        start = time.perf_counter()
        conn.execute("BEGIN")
        for sql, params in CEILING[0].stats:
            conn.execute(sql, params).fetchall()
        conn.execute("COMMIT")
        times.append((time.perf_counter() - start) * 1000)
    conn.close()
    return times


# -- 6. the same figures on PostgreSQL, and the runtime's -------------------------------------


def seed_postgres(rows: int) -> str:
    """:func:`seed` on a new PostgreSQL database (``generate_series`` in place of the recursive
    CTE), then ``VACUUM ANALYZE``: the planner's statistics and the visibility map that
    autovacuum would have made by the time a table holds a million rows."""
    url, one = POSTGRES[0].fresh("stats"), make_tasks(1)
    lib(url, lambda queue: queue.enqueue(one))

    async def fill() -> None:
        columns = str(
            await run_sql(
                url,
                "SELECT string_agg(column_name::text, ',' ORDER BY ordinal_position) "
                "FROM information_schema.columns WHERE table_name = 'tasks'",
            )
        ).split(",")
        state = (
            "CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 95 THEN 'pending' "
            "WHEN i % 100 < 97 THEN 'processing' WHEN i % 100 < 98 THEN 'retryable' "
            "WHEN i % 100 < 99 THEN 'discarded' ELSE 'cancelled' END"
        )
        finished = "CASE WHEN i % 100 < 90 OR i % 100 >= 98 THEN t.created_at END"
        special = {"id": "lpad(i::text, 26, '0')", "state": state, "finished_at": finished}
        select = ", ".join(special.get(column, f"t.{column}") for column in columns)
        await run_sql(
            url,
            f"INSERT INTO tasks ({', '.join(columns)}) SELECT {select} "
            "FROM generate_series(1, :rows) AS s(i), (SELECT * FROM tasks LIMIT 1) AS t",
            rows=rows - 1,
        )
        await run_sql(url, "VACUUM ANALYZE tasks")

    asyncio.run(fill())
    return url


def p99(values: list[float]) -> float:
    return bench_runtime.percentile(values, 0.99)


def worker_rate(n: int, procs: int) -> float:
    """``bench_runtime``'s figure: no-op tasks through ``Worker(concurrency=100, burst=True)``."""
    return bench_runtime.throughput(POSTGRES[0].fresh(f"worker{procs}"), n, procs)


PG = "postgresql"
#: PostgreSQL aims (the issue's; medians, server on the same machine)
PG_AIMS = [
    ("enqueue 1 x {n}", ">=", 50_000.0),
    ("enqueue {k} x 1,000", ">=", 50_000.0),
    ("drain, 1 proc", ">=", 10_000.0),
    ("through Worker, 1 proc", ">=", 5_000.0),
    ("cross-process pickup p50", "<", 5.0),
]


def measure_postgres(sizes: Sizes, runs: int) -> dict[str, Figure]:
    """The library's figures of :func:`measure` on PostgreSQL (no raw ceiling), and the
    runtime's: a ``Worker`` drain and the cross-process pickup of ``bench_runtime``."""
    n, d, tps = sizes.enqueue, sizes.drain, "tasks/s"
    plan: list[tuple[Figure, Callable[[], float]]] = [
        (Figure(f"enqueue 1 x {n:,}", tps), lambda: enqueue_rate("lib", n, n, PG)),
        (Figure(f"enqueue {n // 1000} x 1,000", tps), lambda: enqueue_rate("lib", n, 1000, PG)),
        (Figure("drain, 1 proc", tps), lambda: drain_rate("lib", d, 1, PG)),
        (Figure("drain, 2 procs", tps), lambda: drain_rate("lib", d, 2, PG)),
        (Figure("through Worker, 1 proc", tps), lambda: worker_rate(d, 1)),
        (Figure("through Worker, 2 procs", tps), lambda: worker_rate(d, 2)),
    ]
    print(f"\n== PostgreSQL {POSTGRES[0].server_version()} ==")
    print(f"  1-2. bulk enqueue of {n:,}; drain {d:,}: dequeue(100) + complete_many, and through")
    print("       Worker(concurrency=100, burst=True) (bench_runtime); a new database per run")
    figs: dict[str, Figure] = {}
    for figure, job in plan:
        try:
            figure.runs = [job() for _ in range(runs)]
        except Exception as error:  # a broken figure must not hide the others
            print(f"  {figure.name:<30} FAILED, left out: {error}")
            continue
        figure.show()
        figs[figure.name] = figure
    print(f"\n  3. enqueue-to-claim latency, {sizes.latency:,} tasks, one every ~2 ms")
    pairs = [latency_ms(sizes.latency, backend=PG) for _ in range(runs)]
    samples = max(20, sizes.latency // 10)
    print(f"     cross-process pickup: idle Worker in another process, {samples} tasks 50 ms apart")
    pickups = [bench_runtime.pickup(POSTGRES[0].fresh("pickup"), samples) for _ in range(runs)]
    found = [
        Figure(f"latency p{q}", "ms", runs=[p[i] for p in pairs]) for i, q in enumerate((50, 99))
    ] + [
        Figure("cross-process pickup p50", "ms", runs=[statistics.median(p) for p in pickups]),
        Figure("cross-process pickup p99", "ms", runs=[p99(p) for p in pickups]),
    ]
    rows = sizes.stats_rows
    print(f"\n  4. get_queue_stats() with {rows:,} rows (5 calls each; median)")
    start = time.perf_counter()
    url = seed_postgres(rows)
    print(f"     seeded {rows:,} rows via INSERT ... SELECT in {time.perf_counter() - start:.1f} s")
    found.append(Figure(f"get_queue_stats @{rows:,}", "ms", runs=stats_ms("lib", url)))
    for figure in found:
        figure.show("calls" if figure.name.startswith("get_") else "runs")
        figs[figure.name] = figure
    return figs


def report_postgres(
    sqlite: dict[str, Figure], pg: dict[str, Figure], sizes: Sizes
) -> list[dict[str, Any]]:
    print("\n== SQLite vs. PostgreSQL (medians) ==")
    print(f"  {'figure':<30} {'sqlite':>18} {'postgresql':>18} {'postgresql/sqlite':>18}")
    for name, figure in pg.items():
        mine = f"{figure.median:,.1f} {figure.unit}"
        other = sqlite.get(name)
        theirs = f"{other.median:,.1f} {other.unit}" if other else "(bench_runtime)"
        ratio = f"{figure.median / other.median:.3f}" if other else "-"
        print(f"  {name:<30} {theirs:>18} {mine:>18} {ratio:>18}")
    print("\n== PostgreSQL aims ==")
    results = []
    for pattern, op, aim in PG_AIMS:
        name = pattern.format(n=f"{sizes.enqueue:,}", k=sizes.enqueue // 1000)
        if name not in pg:
            print(f"  {name:<30} {'FAILED':>18}   aim {op} {aim:>9,.0f}   not measured")
            continue
        value, unit = pg[name].median, pg[name].unit
        met = value >= aim if op == ">=" else value < aim
        shown, verdict = f"{value:,.1f} {unit}", "met" if met else "NOT MET"
        print(f"  {name:<30} {shown:>18}   aim {op} {aim:>9,.0f}   {verdict}")
        results.append({"figure": name, "value": value, "aim": f"{op} {aim}", "met": met})
    return results


# -- running and reporting -------------------------------------------------------------------


def git(*args: str) -> str:
    where = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return done.stdout.strip()


def loadavg() -> str:
    """Other processes on the machine skew every figure: shown before and after the run."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg()) + " (1/5/15 min)"


def environment() -> dict[str, Any]:
    changed = " ".join(
        git("status", "--porcelain", "--", "worker", "tts", "migrations").split()[1::2]
    )
    versions = {name: version(name) for name in ("sqlalchemy", "aiosqlite", "pydantic")}
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        **versions,
        "cpu_count": os.cpu_count(),
        "load average": loadavg(),
        "platform": platform.platform(),
        "sqlite pragmas": f"journal_mode=WAL synchronous={SYNCHRONOUS} busy_timeout={BUSY_S}s",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "library": f"git {git('rev-parse', '--short', 'HEAD')}, changed: {changed or 'none'}",
    }


def measure(sizes: Sizes, runs: int) -> dict[str, Figure]:
    n, d, rows = sizes.enqueue, sizes.drain, sizes.stats_rows
    tps, enq = "tasks/s", "raw enqueue (executemany)"
    d1, d2 = "raw drain, 1 proc", "raw drain, 2 procs"
    plan: list[tuple[Figure, Callable[[], float]]] = [
        (Figure(enq, tps), lambda: enqueue_rate("raw", n, n)),
        (Figure(f"enqueue 1 x {n:,}", tps, enq), lambda: enqueue_rate("lib", n, n)),
        (Figure(f"enqueue {n // 1000} x 1,000", tps, enq), lambda: enqueue_rate("lib", n, 1000)),
        (Figure(d1, tps), lambda: drain_rate("raw", d, 1)),
        (Figure(d2, tps), lambda: drain_rate("raw", d, 2)),
        (Figure("drain, 1 proc", tps, d1), lambda: drain_rate("lib", d, 1)),
        (Figure("drain, 2 procs", tps, d2), lambda: drain_rate("lib", d, 2)),
    ]
    headings = {0: f"1. bulk enqueue of {n:,} tasks", 3: f"2. drain {d:,} tasks: dequeue(100) + "}
    headings[3] += "complete_many; 2 procs = spawned processes on one file, wall from a barrier"
    figs: dict[str, Figure] = {}
    for index, (figure, job) in enumerate(plan):
        if index in headings:
            print(f"\n{headings[index]}")
        try:
            figure.runs = [job() for _ in range(runs)]
        except Exception as error:  # a broken figure must not hide the others
            print(f"  {figure.name:<30} FAILED, left out: {error}")
            continue
        figure.show()
        figs[figure.name] = figure
    print(f"\n3. enqueue-to-claim latency, {sizes.latency:,} tasks, one every ~2 ms")
    pairs = [latency_ms(sizes.latency) for _ in range(runs)]
    p50, p99 = (
        Figure(f"latency p{q}", "ms", runs=[p[i] for p in pairs]) for i, q in enumerate((50, 99))
    )
    p50.show()
    p99.show()
    print(f"\n4. get_queue_stats() with {rows:,} rows (5 calls each; median)")
    start = time.perf_counter()
    path = seed(rows)
    print(f"  seeded {rows:,} rows via INSERT ... SELECT in {time.perf_counter() - start:.1f} s")
    raw = Figure(f"raw stats @{rows:,}", "ms", runs=stats_ms("raw", path))
    stats = Figure(f"get_queue_stats @{rows:,}", "ms", raw.name, stats_ms("lib", path))
    for figure in (p50, p99, raw, stats):
        figs[figure.name] = figure
    raw.show("calls")
    stats.show("calls")
    return figs


def report(figs: dict[str, Figure], sizes: Sizes) -> list[dict[str, Any]]:
    print("\n== library vs. raw sqlite3 ceiling (medians) ==")
    print(f"  {'figure':<30} {'library':>18} {'ceiling':>18} {'library/ceiling':>16}")
    for figure in figs.values():
        if figure.ceiling in figs:
            top = figs[figure.ceiling].median
            mine, theirs = f"{figure.median:,.1f} {figure.unit}", f"{top:,.1f} {figure.unit}"
            print(f"  {figure.name:<30} {mine:>18} {theirs:>18} {figure.median / top:>16.3f}")
    print("  (tasks/s: the share of the ceiling reached; ms: how many times slower)")
    aims = [
        (f"enqueue 1 x {sizes.enqueue:,}", ">=", 50_000.0),
        (f"enqueue {sizes.enqueue // 1000} x 1,000", ">=", 50_000.0),
        ("drain, 1 proc", ">=", 25_000.0),
        (f"get_queue_stats @{sizes.stats_rows:,}", "<", 50.0),
    ]
    print("\n== aims ==")
    results = []
    for name, op, aim in aims:
        if name not in figs:
            print(f"  {name:<30} {'FAILED':>18}   aim {op} {aim:>9,.0f}   not measured")
            continue
        value, unit = figs[name].median, figs[name].unit
        met = value >= aim if op == ">=" else value < aim
        shown, verdict = f"{value:,.1f} {unit}", "met" if met else "NOT MET"
        print(f"  {name:<30} {shown:>18}   aim {op} {aim:>9,.0f}   {verdict}")
        results.append({"figure": name, "value": value, "aim": f"{op} {aim}", "met": met})
    if sizes != FULL:
        print("  (--quick sizes: the aims are stated for the full sizes)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per throughput figure")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    add_arguments(parser)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if (url := server_url(args)) is not None:
        POSTGRES.append(Databases(url))
        atexit.register(POSTGRES[0].drop_all)
    env = environment()
    print("== how it was run ==")
    for key, value in env.items():
        print(f"  {key:<16} {value}")
    print(f"  {'sizes':<16} {asdict(sizes)}  runs={args.runs}")
    CEILING.append(capture())
    print("  ceiling SQL      the library's own statements, captured from a probe run:")
    ceiling, width = CEILING[0], 200
    ops = {"enqueue": [ceiling.insert], "dequeue": ceiling.claim, "complete_many": ceiling.ack}
    for op, stmts in (ops | {"get_queue_stats": ceiling.stats}).items():
        for text in (" ".join(sql.split()) for sql, _ in stmts):
            print(f"    {op:<15} {text[:width]}{' ...' if len(text) > width else ''}")
    figs = measure(sizes, args.runs)
    aims = report(figs, sizes)
    pg: dict[str, Figure] = {}
    if POSTGRES:
        env["postgresql"] = f"{POSTGRES[0].server_version()}, synchronous_commit=" + (
            POSTGRES[0].setting("synchronous_commit")
        )
        pg = measure_postgres(sizes, args.runs)
        aims += [{**aim, "backend": PG} for aim in report_postgres(figs, pg, sizes)]
    env["load average after"] = loadavg()
    print(f"\nload average after the run: {env['load average after']}")
    if args.json is not None:
        figures = {name: {**asdict(f), "median": f.median} for name, f in figs.items()}
        payload = {"environment": env, "sizes": asdict(sizes), "runs": args.runs}
        payload |= {"figures": figures, "aims": aims}
        if pg:
            payload["postgresql"] = {n: {**asdict(f), "median": f.median} for n, f in pg.items()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
