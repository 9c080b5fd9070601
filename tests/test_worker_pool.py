"""``wq worker --processes N``: a supervisor and its worker processes, as real subprocesses.

The pool runs ``tests.pool_jobs`` handlers with short liveness settings (:data:`LIVENESS`),
so that a killed child's task runs again within seconds. Each test reads the supervisor's
log (its stderr) for the pids of the children it started, and kills whatever is left of
them at the end. The policy parts (backoff, retirement) are tested without processes too.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from tests.pool_jobs import PoolJob
from tests.runtime_worker import job_registry, job_task, runtime_config, wait_until
from tests.test_cli import ROOT, cli_env, wq_command
from worker import InvalidInputError, Task, TaskItem, TaskState, Worker, WorkerQueue
from worker.runtime.cores import usable_cores
from worker.runtime.pool import FORCE, STOP, describe_exit, restart_delay
from worker.runtime.retirement import MIB, RETIRED_EXIT_CODE, Retirement
from worker.runtime.supervised import follow_supervisor

pytestmark = pytest.mark.timeout(180)

#: Leases of 3 s, a liveness beat every 0.5 s, dead after 2 s of silence, sweeps every 0.2 s:
#: a killed worker's task runs again within seconds (as in tests/test_many_machines.py).
LIVENESS = {
    "QUEUE_VISIBILITY_TIMEOUT": "3",
    "QUEUE_HEARTBEAT_INTERVAL": "0.5",
    "QUEUE_WORKER_DEAD_AFTER": "2",
    "QUEUE_SWEEP_INTERVAL": "0.2",
    "QUEUE_POLL_INTERVAL": "0.2",
    "QUEUE_RETRY_BASE_DELAY": "0",
    "QUEUE_SHUTDOWN_GRACE": "20",
}
#: Conditions are awaited this long at most (a loaded machine is slow, not wrong).
PATIENCE_S = 90.0
STARTED = re.compile(r"worker process (\d+) \(pid (\d+)\) started")


@dataclass
class Supervisor:
    """One ``wq worker`` supervisor process and its log."""

    proc: subprocess.Popen[bytes]
    err: Path
    out: Path
    seen: set[int] = field(default_factory=set)

    def log(self) -> str:
        return self.err.read_text() if self.err.exists() else ""

    def output(self) -> str:
        out = self.out.read_text() if self.out.exists() else ""
        return f"exit {self.proc.poll()}\n--- stdout ---\n{out}\n--- stderr ---\n{self.log()}"

    def children(self) -> list[int]:
        """The pids of every child it started so far (from its log)."""
        found = [int(pid) for _, pid in STARTED.findall(self.log())]
        self.seen.update(found)
        return found

    async def until_logged(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``pattern`` (a regex) matched ``count`` lines of its log."""
        give_up = time.monotonic() + PATIENCE_S
        while len(found := list(re.finditer(pattern, self.log()))) < count:
            assert self.proc.poll() is None, f"exited before {pattern!r}: {self.output()}"
            assert time.monotonic() < give_up, f"no {pattern!r} x{count}: {self.output()}"
            await asyncio.sleep(0.05)
        return found

    async def exit_code(self) -> int:
        give_up = time.monotonic() + PATIENCE_S
        while (code := self.proc.poll()) is None:
            assert time.monotonic() < give_up, f"still running: {self.output()}"
            await asyncio.sleep(0.05)
        return code


class Pools:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Supervisor] = []

    def start(self, db: str, *args: str, env: dict[str, str] | None = None) -> Supervisor:
        n = len(self.started)
        err, out = self.directory / f"pool{n}.err", self.directory / f"pool{n}.out"
        with err.open("wb") as err_file, out.open("wb") as out_file:
            proc = subprocess.Popen(
                wq_command(db, "worker", "--processors", "tests.pool_jobs", *args),
                cwd=ROOT, env=cli_env({**LIVENESS, **(env or {})}), stdin=subprocess.DEVNULL,
                stdout=out_file, stderr=err_file,
            )  # fmt: skip
        supervisor = Supervisor(proc, err, out)
        self.started.append(supervisor)
        return supervisor

    def cleanup(self) -> None:
        for supervisor in self.started:
            supervisor.children()
            if supervisor.proc.poll() is None:
                supervisor.proc.kill()
            supervisor.proc.wait(timeout=10)
            for pid in supervisor.seen:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[Pools]:
    started = Pools(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture
async def queue(database_url: str) -> AsyncIterator[WorkerQueue]:
    """The test's own view of the pool's database."""
    async with WorkerQueue(runtime_config(database_url)) as opened:
        yield opened


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def pool_task(log: Path, seconds: list[float] | None = None, leak_mb: int = 0) -> Task:
    request = PoolJob(log=str(log), seconds=seconds or [0.0], leak_mb=leak_mb)
    return Task(items=[TaskItem(request=request)])


def runs(log: Path) -> list[tuple[str, str, int, int]]:
    """The ``(started|done, task id, attempt, pid)`` lines of a ``pool_job`` log."""
    if not log.exists():
        return []
    return [
        (what, task_id, int(attempt), int(pid))
        for what, task_id, attempt, pid in (line.split() for line in log.read_text().splitlines())
    ]


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, pool: Supervisor) -> None:
    give_up = time.monotonic() + PATIENCE_S
    while not await check():
        assert time.monotonic() < give_up, f"not {what} after {PATIENCE_S} s: {pool.output()}"
        await asyncio.sleep(0.05)


async def live_pids(queue: WorkerQueue) -> dict[str, int]:
    """Worker id -> pid of the registered workers heard from in the last 5 s."""
    return {w["id"]: w["pid"] for w in await queue.live_workers(within_s=5.0)}


async def all_gone(pids: set[int]) -> None:
    give_up = time.monotonic() + PATIENCE_S
    while left := {pid for pid in pids if alive(pid)}:
        assert time.monotonic() < give_up, f"still running: {left}"
        await asyncio.sleep(0.05)


# -- the policies, without processes --------------------------------------------------------


def test_the_restart_delay_doubles_from_one_second_to_thirty() -> None:
    assert [restart_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_an_exit_is_described_by_its_code_or_signal() -> None:
    assert describe_exit(9) == "exited with code 9"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def test_retirement_counts_claims_and_reads_memory() -> None:
    by_tasks = Retirement(max_tasks=3)
    assert by_tasks.room(5) == 3
    by_tasks.took(2)
    assert by_tasks.room(5) == 1
    assert by_tasks.due() is None
    by_tasks.took(1)
    assert by_tasks.room(5) == 0
    assert by_tasks.due() == "it claimed 3 tasks, its limit (max tasks)"
    resident = [100 * MIB]
    by_memory = Retirement(max_memory_bytes=256 * MIB, rss=lambda: resident[0])
    assert by_memory.room(4) == 4
    assert by_memory.due() is None
    resident[0] = 300 * MIB
    assert by_memory.due() == "its memory (300 MiB resident) is above its limit of 256 MiB"
    resident[0] = 0  # a reason, once given, stays
    assert by_memory.due() is not None
    with pytest.raises(ValueError, match="max_tasks must be >= 1"):
        Retirement(max_tasks=0)


async def test_a_worker_with_a_task_limit_retires_after_its_tasks_end(database_url: str) -> None:
    """Three tasks at once, a limit of three: the worker claims no fourth, lets the three
    finish (where a stop, with no grace, would release them) and returns, retired."""
    async with WorkerQueue(runtime_config(database_url, shutdown_grace=0.0)) as queue:
        await queue.enqueue([job_task(seconds=[0.3]) for _ in range(5)])
        worker = Worker(queue, job_registry(), concurrency=4, max_tasks=3, handle_signals=False)
        async with asyncio.timeout(60):
            counts = await worker.run()
        assert counts["completed"] == 3
        assert counts["released"] == 0
        assert worker.retired == "it claimed 3 tasks, its limit (max tasks)"
        stats = await queue.get_queue_stats()
        assert (stats["completed"], stats["pending"]) == (3, 2)


async def test_a_worker_refuses_bad_queue_names_and_concurrency(database_url: str) -> None:
    """A bad queue name failed every claim, logged with its traceback each poll, for ever."""
    async with WorkerQueue(runtime_config(database_url)) as queue:
        with pytest.raises(InvalidInputError, match=r"queues\[1\] must be a queue name"):
            Worker(queue, job_registry(), queues=["a", ""], handle_signals=False)
        with pytest.raises(ValueError, match="concurrency must be from 1 to 10,000"):
            Worker(queue, job_registry(), concurrency=10_001, handle_signals=False)


async def test_a_burst_worker_that_reaches_its_limit_retires_rather_than_stops(
    database_url: str,
) -> None:
    """In burst mode the worker's delivery before exit took the retirement for a stop, so
    ``wq worker --burst --max-tasks N`` ended its pool with tasks still pending."""
    async with WorkerQueue(runtime_config(database_url)) as queue:
        await queue.enqueue([job_task(seconds=[0.01]) for _ in range(3)])
        worker = Worker(queue, job_registry(), concurrency=1, max_tasks=2, burst=True,
                        handle_signals=False)  # fmt: skip
        async with asyncio.timeout(60):
            counts = await worker.run()
        assert counts["completed"] == 2
        assert worker.retired == "it claimed 2 tasks, its limit (max tasks)"
        assert not worker.stopping  # what wq worker reads: retired (exit 75), not stopped


async def test_the_supervisor_s_orders_stop_a_worker_once_and_force_it_on_the_second(
    database_url: str,
) -> None:
    """``stop`` to a worker that is stopping already (its own SIGTERM, from a process manager
    that signals the whole group) does not force it: its running task finishes. ``force``
    does: the task is released."""
    # A long lease: what is tested is the orders, not lease expiry, which on a busy machine
    # (the runtime settings' 5 s) once took the 0.5 s task from its worker.
    config = runtime_config(database_url, shutdown_grace=30.0, default_visibility_timeout=120.0)
    async with WorkerQueue(config) as queue:
        for order, seconds, outcome in ((STOP, 0.5, "completed"), (FORCE, 60.0, "released")):
            task = job_task(seconds=[seconds])
            await queue.enqueue([task])
            worker = Worker(queue, job_registry(), handle_signals=False)
            run = asyncio.create_task(worker.run())
            await wait_until(partial(running, queue, task.id), 30, "running")
            worker.request_stop()  # as its own first signal would
            read_end, write_end = os.pipe()
            follower = asyncio.create_task(follow_supervisor(read_end, worker))
            os.write(write_end, order)
            os.close(write_end)
            async with asyncio.timeout(30):
                await follower
                counts = await run
            assert counts[outcome] == 1, (order, counts)


# -- pools of real processes ---------------------------------------------------------------


async def test_a_pool_restarts_a_killed_child_and_its_task_completes(
    pools: Pools, queue: WorkerQueue, database_url: str, tmp_path: Path
) -> None:
    """Two workers register; SIGKILL of the one running a task: the supervisor names the
    signal and starts another, the task runs again and completes. Then SIGTERM: a running
    task finishes, the supervisor exits 0 and leaves no process behind."""
    log = tmp_path / "jobs.log"
    pool = pools.start(database_url, "--processes", "2")
    await wait_for(lambda: has_workers(queue, 2), "two workers registered", pool)
    pids = await live_pids(queue)
    assert sorted(pids.values()) == sorted(pool.children())
    assert all(parent_of(pid) == pool.proc.pid for pid in pids.values())

    doomed = pool_task(log, seconds=[120.0, 0.0])
    await queue.enqueue([doomed])
    await wait_for(lambda: running(queue, doomed.id), "the task running", pool)
    victim = pids[str((await queue.get_task(doomed.id)).worker_id)]
    os.kill(victim, signal.SIGKILL)
    await pool.until_logged(rf"\(pid {victim}\) was killed by SIGKILL after [\d.]+ s; "
                            r"restarting it in 1 s")  # fmt: skip
    await wait_for(lambda: completed(queue, doomed.id), "the killed task completed", pool)
    assert (await queue.get_task(doomed.id)).attempt_count == 2
    await wait_for(lambda: has_workers(queue, 2, but=victim), "a replacement registered", pool)
    assert len(pool.children()) == 3

    last = pool_task(log, seconds=[1.5])
    await queue.enqueue([last])
    await wait_for(lambda: running(queue, last.id), "the last task running", pool)
    pool.proc.send_signal(signal.SIGTERM)
    assert await pool.exit_code() == 0, pool.output()
    assert (await queue.get_task(last.id)).state is TaskState.COMPLETED
    await all_gone(set(pool.children()))
    assert "pool stopped: 3 worker process(es) started, 1 restarted" in pool.log()
    assert {w["pid"] for w in await queue.live_workers(within_s=60.0)} <= {victim}


@pytest.mark.sqlite_only("burst mode is the same on either backend")
async def test_a_burst_pool_ends_when_its_children_ran_dry(
    pools: Pools, queue: WorkerQueue, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "jobs.log"
    tasks = [pool_task(log, seconds=[0.3]) for _ in range(6)]
    await queue.enqueue(tasks)
    pool = pools.start(database_url, "--processes", "2", "--burst", "-c", "2")
    assert await pool.exit_code() == 0, pool.output()
    assert await all_completed(queue, tasks)
    assert len(re.findall(r"ran dry and exited", pool.log())) == 2
    assert "restarting it in" not in pool.log()
    await all_gone(set(pool.children()))


@pytest.mark.sqlite_only("the hint is the same on either backend")
@pytest.mark.parametrize(
    "case",
    [
        (["--processes", "2", "-c", "1"], {}, max(1, usable_cores() // 2)),
        (["-c", "1"], {}, usable_cores()),  # one process: no supervisor
        (["--processes", "2", "-c", "2"], {"QUEUE_TASK_THREADS": "3"}, 3),
    ],
    ids=["pool", "one-process", "set-by-the-user"],
)
async def test_each_worker_process_tells_its_tasks_their_share_of_the_cores(
    pools: Pools,
    queue: WorkerQueue,
    database_url: str,
    tmp_path: Path,
    case: tuple[list[str], dict[str, str], int],
) -> None:
    args, env, expected = case
    tasks = [pool_task(tmp_path / "jobs.log") for _ in range(4)]
    await queue.enqueue(tasks)
    pool = pools.start(database_url, *args, "--burst", env=env)
    assert await pool.exit_code() == 0, pool.output()
    results = [(await queue.get_task(task.id)).items[0].result for task in tasks]
    assert {result["task_threads"] for result in results} == {str(expected)}  # type: ignore[index,call-overload]


@pytest.mark.sqlite_only("the supervisor's death is the same on either backend")
async def test_the_children_stop_when_the_supervisor_is_killed(
    pools: Pools, queue: WorkerQueue, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL of the supervisor: each child sees its control pipe end, lets its running
    task finish and exits; none is left."""
    log = tmp_path / "jobs.log"
    pool = pools.start(database_url, "--processes", "2")
    await wait_for(lambda: has_workers(queue, 2), "two workers registered", pool)
    task = pool_task(log, seconds=[1.5])
    await queue.enqueue([task])
    await wait_for(lambda: running(queue, task.id), "the task running", pool)
    children = set(pool.children())
    pool.proc.kill()
    await pool.exit_code()
    await all_gone(children)
    assert (await queue.get_task(task.id)).state is TaskState.COMPLETED
    assert await queue.live_workers(within_s=60.0) == []


@pytest.mark.sqlite_only("the child's memory is the same on either backend")
async def test_a_child_past_its_memory_limit_is_replaced_between_tasks(
    pools: Pools, queue: WorkerQueue, database_url: str, tmp_path: Path
) -> None:
    """Each task leaks 120 MiB; a child starts near 80 MiB, its limit is 160: it retires
    after each task, and the supervisor replaces it at once (no backoff). Every task runs
    once, to its end."""
    log = tmp_path / "jobs.log"
    tasks = [pool_task(log, seconds=[0.5], leak_mb=120) for _ in range(3)]
    await queue.enqueue(tasks)
    pool = pools.start(database_url, "--max-memory-mb", "160", "-c", "1")
    await wait_for(lambda: all_completed(queue, tasks), "all tasks completed", pool)
    await pool.until_logged(r"retired \(exited with code 75 after [\d.]+ s\); starting its "
                            r"replacement", count=3)  # fmt: skip
    assert "restarting it in" not in pool.log()
    assert re.search(r"retiring: its memory \(\d+ MiB resident\) is above its limit of 160 MiB",
                     pool.log())  # fmt: skip
    started = [(task_id, pid) for what, task_id, _, pid in runs(log) if what == "started"]
    assert sorted(task_id for task_id, _ in started) == sorted(t.id for t in tasks)
    assert len({pid for _, pid in started}) == 3  # a process per task
    assert all(what == "done" for what, *_ in runs(log)[1::2])
    pool.proc.send_signal(signal.SIGTERM)
    assert await pool.exit_code() == 0, pool.output()
    await all_gone(set(pool.children()))


@pytest.mark.sqlite_only("the count of claims is the same on either backend")
async def test_children_are_replaced_after_their_task_limit(
    pools: Pools, queue: WorkerQueue, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "jobs.log"
    tasks = [pool_task(log, seconds=[0.2]) for _ in range(7)]
    await queue.enqueue(tasks)
    pool = pools.start(database_url, "--processes", "2", "--max-tasks", "2", "-c", "1")
    await wait_for(lambda: all_completed(queue, tasks), "all tasks completed", pool)
    started = [(task_id, pid) for what, task_id, _, pid in runs(log) if what == "started"]
    assert sorted(task_id for task_id, _ in started) == sorted(t.id for t in tasks)
    per_process = Counter(pid for _, pid in started)
    assert max(per_process.values()) <= 2
    assert len(per_process) >= 4
    await pool.until_logged("retired", count=3)
    assert "restarting it in" not in pool.log()
    pool.proc.send_signal(signal.SIGTERM)
    assert await pool.exit_code() == 0, pool.output()
    await all_gone(set(pool.children()))


@pytest.mark.sqlite_only("the count of claims is the same on either backend")
async def test_a_burst_pool_replaces_a_retired_child_until_nothing_is_left(
    pools: Pools, queue: WorkerQueue, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "jobs.log"
    tasks = [pool_task(log, seconds=[0.01]) for _ in range(3)]
    await queue.enqueue(tasks)
    pool = pools.start(database_url, "--max-tasks", "1", "--burst", "-c", "1")
    assert await pool.exit_code() == 0, pool.output()
    stats = await queue.get_queue_stats()
    assert (stats["completed"], stats["pending"]) == (3, 0), pool.output()
    assert len({pid for what, _, _, pid in runs(log) if what == "started"}) == 3


@pytest.mark.sqlite_only("a child that dies at its start never reaches the database")
async def test_a_child_that_keeps_dying_is_restarted_with_a_growing_backoff(
    pools: Pools, database_url: str
) -> None:
    pool = pools.start(database_url, "--processes", "2", "--processors", "tests.pool_jobs_crash")
    found = await pool.until_logged(
        r"worker process 1 \(pid \d+\) exited with code 9 after [\d.]+ s; restarting it in "
        r"(\d+) s",
        count=4,
    )
    assert [int(match.group(1)) for match in found[:4]] == [1, 2, 4, 8]
    pool.proc.send_signal(signal.SIGTERM)
    assert await pool.exit_code() == 0, pool.output()
    await all_gone(set(pool.children()))


@pytest.mark.sqlite_only("a usage error is the same on either backend")
async def test_a_usage_error_of_the_children_stops_the_pool(
    pools: Pools, database_url: str
) -> None:
    pool = pools.start(database_url, "--processes", "2", "--processors", "no_such_module")
    assert await pool.exit_code() == 2, pool.output()
    assert "cannot import processors module 'no_such_module'" in pool.log()
    assert "a usage error (see its message), which a restart would repeat" in pool.log()
    await all_gone(set(pool.children()))


@pytest.mark.sqlite_only("one process is the same on either backend")
async def test_one_process_without_limits_runs_no_supervisor(
    pools: Pools, queue: WorkerQueue, database_url: str
) -> None:
    pool = pools.start(database_url, "--processes", "1")
    await wait_for(lambda: has_workers(queue, 1), "the worker registered", pool)
    assert list((await live_pids(queue)).values()) == [pool.proc.pid]
    assert "supervisor" not in pool.log()
    pool.proc.send_signal(signal.SIGTERM)
    assert await pool.exit_code() == 0, pool.output()


def test_the_retired_exit_code_is_wq_s() -> None:
    from worker.cli.session import ExitCode

    assert ExitCode.RETIRED == RETIRED_EXIT_CODE


async def has_workers(queue: WorkerQueue, count: int, but: int | None = None) -> bool:
    pids = [pid for pid in (await live_pids(queue)).values() if pid != but]
    return len(pids) == count


async def running(queue: WorkerQueue, task_id: str) -> bool:
    return (await queue.get_task(task_id)).state is TaskState.PROCESSING


async def completed(queue: WorkerQueue, task_id: str) -> bool:
    return (await queue.get_task(task_id)).state is TaskState.COMPLETED


async def all_completed(queue: WorkerQueue, tasks: list[Task]) -> bool:
    return all([await completed(queue, task.id) for task in tasks])
