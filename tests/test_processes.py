"""Several real OS processes on one database: exactly-once claims and crash safety.

The processes run ``tests/proc_worker.py`` (``python -m tests.proc_worker``). Crashes are
``SIGKILL``: no ``finally``, no ``close()``, no rollback by the dying process. Real time
throughout (no fake clock), short visibility timeouts and ``retry_base_delay=0`` so that a
requeued task is due at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support import make_task, url_of
from worker import Completion, QueueConfig, Task, TaskState, WorkerQueue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parent.parent
#: How long a child may take to start (imports, connect, migrate) and report readiness.
READY_TIMEOUT_S = 20.0
EXPIRED_ERROR = "visibility timeout expired"


def process_config(
    db: str | Path, *, visibility_timeout: float = 30.0, max_attempts: int = 3
) -> QueueConfig:
    return QueueConfig(
        database_url=url_of(db),
        default_visibility_timeout=visibility_timeout,
        default_max_attempts=max_attempts,
        retry_base_delay=0.0,
    )


# -- child processes ----------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def describe(self) -> str:
        return (
            f"child {self.name} (pid {self.pid}, exit {self.proc.poll()})\n"
            f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"
        )

    def kill(self) -> None:
        """SIGKILL (a crash: no cleanup runs) and reap."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL, self.describe()


class Children:
    """Starts ``python -m tests.proc_worker`` processes; kills whatever is left at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Child] = []

    def start(self, name: str, *args: str) -> Child:
        stdout_path = self.directory / f"{name}.stdout"
        stderr_path = self.directory / f"{name}.stderr"
        stdout = stdout_path.open("wb")
        stderr = stderr_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.proc_worker", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        child = Child(name, proc, stdout_path, stderr_path, [stdout, stderr])
        self.started.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.started:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            try:
                child.proc.wait(timeout=10)
            finally:
                for handle in child.files:
                    handle.close()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawner = Children(tmp_path)
    try:
        yield spawner
    finally:
        spawner.cleanup()


def read_ready(path: Path) -> dict[str, Any] | None:
    """The JSON a child published at ``path`` (written atomically), or None if not yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    payload: dict[str, Any] = json.loads(text)
    return payload


async def wait_ready(
    child: Child, ready_file: Path, within: float = READY_TIMEOUT_S
) -> dict[str, Any]:
    """Wait for ``child`` to publish ``ready_file``; fail if it dies or takes too long."""
    give_up = time.monotonic() + within
    while (payload := read_ready(ready_file)) is None:
        if child.proc.poll() is not None:
            pytest.fail(f"exited before it was ready: {child.describe()}")
        if time.monotonic() > give_up:
            pytest.fail(f"not ready after {within} s: {child.describe()}")
        await asyncio.sleep(0.01)
    return payload


async def wait_exit(child: Child, within: float) -> int:
    give_up = time.monotonic() + within
    while (code := child.proc.poll()) is None:
        if time.monotonic() > give_up:
            pytest.fail(f"still running after {within} s: {child.describe()}")
        await asyncio.sleep(0.02)
    return code


def common_args(db: str | Path, *extra: str) -> list[str]:
    return ["--db", str(db), *extra]


async def all_tasks(queue: WorkerQueue) -> list[Task]:
    return await queue.list_tasks(limit=1_000_000)


# -- 1. exactly once, two queues in one process -------------------------------------------


async def test_two_queues_in_one_process_claim_each_task_exactly_once(database_url: str) -> None:
    config = process_config(database_url)
    total = 1_500
    async with (
        WorkerQueue(config, worker_id="a") as first,
        WorkerQueue(config, worker_id="b") as second,
    ):
        await first.enqueue([make_task(f"task {i}") for i in range(total)])
        all_ids = {task.id for task in await all_tasks(first)}
        assert len(all_ids) == total

        async def consume(queue: WorkerQueue) -> list[str]:
            got: list[str] = []
            empty = 0
            while empty < 3:
                claimed = await queue.dequeue(size=50)
                if not claimed:
                    empty += 1
                    await asyncio.sleep(0.01)
                    continue
                empty = 0
                got += [task.id for task in claimed]
                assert all(task.attempt_count == 1 for task in claimed)
                refused = await queue.complete_many(
                    [Completion(task.id, task.lease_id) for task in claimed]
                )
                assert refused == []
                # yield so that the other consumer interleaves even without lock waits
                await asyncio.sleep(0)
            return got

        async with asyncio.timeout(60):
            got_a, got_b = await asyncio.gather(consume(first), consume(second))

        claims = Counter(got_a + got_b)
        assert [task_id for task_id, n in claims.items() if n > 1] == []
        assert set(claims) == all_ids
        assert len(got_a) + len(got_b) == total

        tasks = await all_tasks(second)
        assert {t.state for t in tasks} == {TaskState.COMPLETED}
        assert {t.attempt_count for t in tasks} == {1}
        owner = dict.fromkeys(got_a, "a") | dict.fromkeys(got_b, "b")
        assert all(t.worker_id == owner[t.id] for t in tasks)
        stats = await first.get_queue_stats()
        assert stats["completed"] == stats["total"] == total


# -- 2. exactly once, three OS processes --------------------------------------------------


async def test_three_processes_drain_each_task_exactly_once(
    database_url: str, tmp_path: Path, children: Children
) -> None:
    total = 1_500
    async with WorkerQueue(process_config(database_url)) as queue:
        await queue.enqueue([make_task(f"task {i}") for i in range(total)])
        all_ids = {task.id for task in await all_tasks(queue)}
        assert len(all_ids) == total

        go_file = tmp_path / "go"
        workers = []
        for n in range(3):
            out = tmp_path / f"drain{n}.ids"
            ready = tmp_path / f"drain{n}.ready"
            child = children.start(
                f"drain{n}",
                "drain",
                *common_args(database_url),
                "--out", str(out),
                "--worker-id", f"p{n}",
                "--batch", "25",
                "--empty-polls", "3",
                "--poll-interval", "0.05",
                "--deadline", "45",
                "--ready-file", str(ready),
                "--go-file", str(go_file),
            )  # fmt: skip
            workers.append((child, out, ready))
        for child, _, ready in workers:
            await wait_ready(child, ready)
        started = time.monotonic()
        go_file.touch()
        for child, _, _ in workers:
            code = await wait_exit(child, within=45)
            assert code == 0, child.describe()
        elapsed = time.monotonic() - started

        per_child: dict[str, list[str]] = {}
        for child, out, _ in workers:
            stderr = child.stderr()
            assert "Traceback" not in stderr, child.describe()
            assert "locked" not in stderr, child.describe()
            assert stderr.strip() == "", child.describe()
            per_child[child.name] = out.read_text().split()

        claims = Counter(task_id for ids in per_child.values() for task_id in ids)
        assert [task_id for task_id, n in claims.items() if n > 1] == []
        assert set(claims) == all_ids
        busy = [name for name, ids in per_child.items() if ids]
        assert len(busy) >= 2, (
            f"the processes should have contended, got {[len(v) for v in per_child.values()]} "
            f"in {elapsed:.2f} s"
        )

        stats = await queue.get_queue_stats()
        assert stats["completed"] == stats["total"] == total
        tasks = await all_tasks(queue)
        assert {t.attempt_count for t in tasks} == {1}
        owner = {
            task_id: f"p{n}"
            for n, (_, out, _) in enumerate(workers)
            for task_id in out.read_text().split()
        }
        assert all(t.worker_id == owner[t.id] for t in tasks)


# -- 3. kill -9 right after enqueue returns -----------------------------------------------


async def test_tasks_survive_kill_right_after_enqueue(
    database_url: str, tmp_path: Path, children: Children
) -> None:
    ready = tmp_path / "enqueue.ready"
    child = children.start(
        "enqueue",
        "enqueue",
        *common_args(database_url),
        "--count",
        "200",
        "--ready-file",
        str(ready),
    )
    report = await wait_ready(child, ready)
    child.kill()
    assert "ENQUEUED" in child.stdout()
    assert report["inserted"] == 200
    ids: list[str] = report["ids"]
    assert len(set(ids)) == 200

    async with WorkerQueue(process_config(database_url)) as queue:
        tasks = await all_tasks(queue)
        assert sorted(t.id for t in tasks) == sorted(ids)
        assert {t.state for t in tasks} == {TaskState.PENDING}
        assert {t.attempt_count for t in tasks} == {0}
        stats = await queue.get_queue_stats()
        assert stats["pending"] == stats["total"] == 200
        # and the queue works: every one can be claimed once
        claimed = await queue.dequeue(size=500)
        assert sorted(t.id for t in claimed) == sorted(ids)


# -- 4. kill -9 of a process that holds leases --------------------------------------------

LEASE_S = 1.5


async def claim_then_kill(
    queue: WorkerQueue, database_url: str, tmp_path: Path, children: Children, *, max_attempts: int
) -> tuple[list[str], float]:
    """Enqueue 20 tasks and 5 more; a child claims the 20 and is SIGKILLed holding them.

    Checks that before the leases expire the sweep leaves them alone and ``dequeue`` hands out
    only the 5 others. Returns the 20 ids and the latest lease expiry.
    """
    doomed = [make_task(f"doomed {i}") for i in range(20)]
    await queue.enqueue(doomed)
    others = [make_task(f"other {i}") for i in range(5)]
    await queue.enqueue(others)  # enqueued later: the child's dequeue(size=20) takes the 20
    doomed_ids = sorted(t.id for t in doomed)

    ready = tmp_path / "claim.ready"
    child = children.start(
        "claim",
        "claim-and-hang",
        *common_args(database_url),
        "--count", "20",
        "--visibility-timeout", str(LEASE_S),
        "--max-attempts", str(max_attempts),
        "--ready-file", str(ready),
    )  # fmt: skip
    report = await wait_ready(child, ready)
    child.kill()
    killed_at = time.time()
    assert "CLAIMED" in child.stdout()
    assert sorted(report["ids"]) == doomed_ids
    assert set(report["attempt_count"].values()) == {1}

    held = [await queue.get_task(task_id) for task_id in doomed_ids]
    assert {t.state for t in held} == {TaskState.PROCESSING}
    assert {t.worker_id for t in held} == {"doomed"}
    assert all(t.lease_id == report["leases"][t.id] for t in held)
    expiries = [t.lease_expires_at for t in held]
    assert all(e is not None for e in expiries)
    first_expiry = min(e for e in expiries if e is not None)
    last_expiry = max(e for e in expiries if e is not None)
    margin = first_expiry - killed_at

    # The leases are still valid: the sweep must not touch them, dequeue must not hand them out.
    swept = await queue.retry()
    assert swept == [], f"swept {len(swept)} tasks {margin:.3f} s before their leases expired"
    claimed = await queue.dequeue(size=100)
    assert sorted(t.id for t in claimed) == sorted(t.id for t in others), f"margin {margin:.3f} s"
    assert await queue.complete_many([Completion(t.id, t.lease_id) for t in claimed]) == []
    assert await queue.retry() == []
    assert time.time() < first_expiry, "the checks above ran too late to mean anything"
    return doomed_ids, last_expiry


async def sleep_until(wall_time: float) -> None:
    await asyncio.sleep(max(0.0, wall_time - time.time()))


async def test_leases_of_a_killed_process_expire_and_are_retried(
    database_url: str, tmp_path: Path, children: Children
) -> None:
    config = process_config(database_url, visibility_timeout=LEASE_S, max_attempts=3)
    async with WorkerQueue(config, worker_id="rescuer") as queue:
        doomed_ids, last_expiry = await claim_then_kill(
            queue, database_url, tmp_path, children, max_attempts=3
        )
        await sleep_until(last_expiry + 0.1)

        swept = await queue.retry()
        assert sorted(t.id for t in swept) == doomed_ids
        for task in [*swept, *[await queue.get_task(i) for i in doomed_ids]]:
            assert task.state is TaskState.PENDING, task
            assert task.attempt_count == 1
            assert task.expired_count == 1
            assert task.last_error == EXPIRED_ERROR
            assert task.lease_expires_at is None
            assert [e.expired for e in task.errors] == [True]

        again = await queue.dequeue(size=100)
        assert sorted(t.id for t in again) == doomed_ids
        assert {t.attempt_count for t in again} == {2}
        assert {t.worker_id for t in again} == {"rescuer"}
        assert await queue.complete_many([Completion(t.id, t.lease_id) for t in again]) == []
        stats = await queue.get_queue_stats()
        assert stats["completed"] == stats["total"] == 25


async def test_leases_of_a_killed_process_with_one_attempt_are_discarded(
    database_url: str, tmp_path: Path, children: Children
) -> None:
    config = process_config(database_url, visibility_timeout=LEASE_S, max_attempts=1)
    async with WorkerQueue(config, worker_id="rescuer") as queue:
        doomed_ids, last_expiry = await claim_then_kill(
            queue, database_url, tmp_path, children, max_attempts=1
        )
        await sleep_until(last_expiry + 0.1)

        swept = await queue.retry()
        assert sorted(t.id for t in swept) == doomed_ids
        for task in [*swept, *[await queue.get_task(i) for i in doomed_ids]]:
            assert task.state is TaskState.DISCARDED, task
            assert task.attempt_count == 1
            assert task.expired_count == 1
            assert task.last_error == EXPIRED_ERROR
            assert task.finished_at is not None

        assert await queue.dequeue(size=100) == []
        assert await queue.retry() == []
        stats = await queue.get_queue_stats()
        assert stats["discarded"] == 20
        assert stats["completed"] == 5
        assert stats["total"] == 25


# -- 5. kill -9 in the middle of a bulk write ---------------------------------------------

BULK = 5_000


def committed_batches(stdout: str) -> int:
    """How many ``COMMITTED`` lines the child printed (batches it knew were durable)."""
    return sum(1 for line in stdout.splitlines() if line.startswith("COMMITTED "))


def killed_inside_enqueue(stdout: str) -> bool:
    """Whether the child died inside ``enqueue()``: its last word was ``ENQUEUING`` (or the
    ``KILLING`` it prints when it kills itself in the write, right after ``ENQUEUING``)."""
    lines = [line for line in stdout.splitlines() if not line.startswith("KILLING ")]
    return bool(lines) and lines[-1].startswith("ENQUEUING ")


def inspect_file(db: Path) -> tuple[str, dict[str, int]]:
    """``PRAGMA integrity_check`` and the bulk tasks per batch name, with plain sqlite3."""
    connection = sqlite3.connect(db)
    try:
        (integrity,) = connection.execute("PRAGMA integrity_check").fetchone()
        rows = connection.execute(
            "SELECT name, count(*) FROM tasks WHERE name IS NOT NULL GROUP BY name"
        ).fetchall()
    finally:
        connection.close()
    return str(integrity), {str(name): int(n) for name, n in rows}


@pytest.mark.sqlite_only(
    "kills the writer inside SQLite's write transaction (its progress handler) and checks the "
    "file with PRAGMA integrity_check; a PostgreSQL server rolls back a dead client's "
    "transaction itself"
)
@pytest.mark.usefixtures("backend")
async def test_kill_during_bulk_enqueue_leaves_whole_batches(
    db_path: Path, tmp_path: Path, children: Children
) -> None:
    """Rounds 0 and 2 kill the child at a random moment of its loop (building a batch,
    inside enqueue(), between calls); rounds 1 and 3 have it kill itself in the middle of
    its second batch's write transaction, a random fraction of the way through, so that a
    batch split over several transactions would leave part of it behind. The seed is
    printed (shown when the test fails); KILL_TEST_SEED=<seed> replays a run's choices."""
    seed = int(os.environ.get("KILL_TEST_SEED") or random.randrange(2**32))
    print(f"kill test seed {seed} (replay with KILL_TEST_SEED={seed})")
    rng = random.Random(seed)
    before = 0
    died_inside: list[bool] = []
    for round_number in range(4):
        ready = tmp_path / f"bulk{round_number}.ready"
        in_write = round_number % 2 == 1
        fraction = rng.uniform(0.25, 0.95)  # past a first 1,000 of the 5,000 rows
        delay = rng.uniform(0.3, 0.8)
        child = children.start(
            f"bulk{round_number}",
            "enqueue-loop",
            *common_args(db_path),
            "--batch", str(BULK),
            "--hang-seconds", "20",
            "--ready-file", str(ready),
            *(["--kill-in-write", f"2:{fraction:.3f}"] if in_write else []),
        )  # fmt: skip
        await wait_ready(child, ready)
        if in_write:
            moment = f"{fraction:.3f} of the way through the second batch's write"
            await wait_exit(child, within=20)
        else:  # any moment of the loop: building, writing or between
            moment = f"{delay:.3f} s after 'ready'"
            await asyncio.sleep(delay)
        child.kill()
        stdout = child.stdout()
        reported = committed_batches(stdout)
        inside = killed_inside_enqueue(stdout)
        died_inside.append(inside)
        context = (
            f"seed {seed}, round {round_number}, killed {moment}, {reported=}, "
            f"inside enqueue: {inside}"
        )
        if in_write:
            assert inside, f"{context}\n{child.describe()}"
            assert stdout.splitlines()[-1].startswith("KILLING 2 "), child.describe()

        # The database opens cleanly (WAL recovery, schema check) and stays writable.
        async with WorkerQueue(process_config(db_path)) as queue:
            stats = await queue.get_queue_stats()
            total = stats["pending"]  # the bulk tasks; earlier rounds' probes are completed
            assert stats["completed"] == round_number, context
            assert stats["total"] == total + round_number, context
            await queue.enqueue([make_task("probe", queue="probe")])
            claimed = await queue.dequeue(size=1, queues=["probe"])
            assert [t.name for t in claimed] == [None], context  # bulk tasks have names
            await queue.mark_as_complete(claimed[0].id, lease_id=claimed[0].lease_id)

        integrity, per_batch = inspect_file(db_path)
        assert integrity == "ok", context
        assert total % BULK == 0, f"{total} tasks: a partial batch. {context}"
        assert all(n == BULK for n in per_batch.values()), f"{per_batch} {context}"
        assert sum(per_batch.values()) == total, context
        written = (total - before) // BULK
        # Every batch the child saw committed is there; at most one committed unreported
        # (none when it died in the middle of a write).
        assert reported <= written <= reported + (0 if in_write else 1), f"{written=} {context}"
        before = total
    assert sum(died_inside) >= 2, f"seed {seed}: rounds killed inside enqueue(): {died_inside}"
