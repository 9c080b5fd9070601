"""Several machines, simulated: worker and producer processes on one PostgreSQL database,
killed, frozen, and run on a clock 30 s off.

Every worker runs with short liveness settings (:data:`LIVENESS`). Each one notes the runs of
its handler (``--runs-file``: ``started``/``done <task> <attempt> <time>``) and the
completions the database accepted from it (``--report-file``); the test keeps its own log of
whom it killed and froze, and checks the runs against it at the end: a task may run more
than once (at-least-once) only where an earlier run was on a worker that was killed or frozen,
and it is completed exactly once, by its last claim.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.runtime_worker import job_task
from tests.spawning import ROOT, Spawner, lines
from worker import QueueConfig, Task, TaskState, WorkerQueue
from worker.storage.sweep import DEAD_WORKER_ERROR

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

#: A lease of 3 s (renewed every second), a liveness beat every 0.5 s, dead after 2 s of
#: silence, a sweep every 0.2 s by every worker: a kill is noticed within seconds. Dead-after
#: is four beats, so that a worker merely slowed down by a busy machine is not presumed dead.
LIVENESS = ("--visibility-timeout", "3", "--heartbeat-interval", "0.5", "--dead-after", "2",
            "--sweep-interval", "0.2")  # fmt: skip
#: Each worker runs 4 tasks at once: claims and acknowledgements go in batches.
BUSY = ("--concurrency", "4")
MAX_ATTEMPTS = 20  # kills cannot use them all up: no task may end DISCARDED
KILL_EVERY_S = 1.0
#: Kills go on until the producers are done and this many were made (or all tasks are).
KILLS = 10
SKEW_S = 30.0
#: Far more than a kill takes to be noticed here (a few seconds), far less than the skew.
NOTICED_WITHIN_S = 20.0
#: Conditions are awaited this long at most (a loaded machine is slow, not wrong).
PATIENCE_S = 120.0


@dataclass
class Member:
    """One worker process and its files."""

    proc: subprocess.Popen[bytes]
    runs: Path
    report: Path
    ready: Path
    err: Path
    out: Path
    worker_id: str = ""
    #: How far off the process's clock is set (its runs file's times are that far off).
    skew_s: float = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Run:
    pid: int
    attempt: int
    started_at: float
    done: bool = False


@dataclass
class Fleet:
    """The worker processes of a test, and its log of what was done to them."""

    spawner: Spawner
    directory: Path
    url: str
    members: list[Member] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    stopped: set[int] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    #: Tasks of the test's own (the killer) whose failure fails the test at once.
    helpers: list[asyncio.Task[Any]] = field(default_factory=list)

    def start(self, *extra: str, skew_s: float = 0.0) -> Member:
        n = len(self.spawner.procs)
        runs, report, ready = (self.directory / f"worker{n}.{kind}" for kind in
                               ("runs", "report", "ready"))  # fmt: skip
        proc = self.spawner.start(self.url, "--ready-file", str(ready), "--runs-file", str(runs),
                                  "--report-file", str(report), *LIVENESS, *extra,
                                  "--clock-skew", str(skew_s))  # fmt: skip
        member = Member(proc, runs, report, ready, self.spawner.err_path(proc),
                        self.directory / f"worker{n}.out", skew_s=skew_s)  # fmt: skip
        self.members.append(member)
        self.note(f"started worker{n} pid {proc.pid} {' '.join(extra)}")
        return member

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic():.3f} {what}")

    def output(self, member: Member) -> str:
        return self.spawner.output(member.proc)

    def check_alive(self) -> None:
        """Fail if a worker that was not killed has exited, or a helper failed."""
        for helper in self.helpers:
            if helper.done() and not helper.cancelled() and helper.exception() is not None:
                raise AssertionError("a helper of the test failed") from helper.exception()
        for member in self.members:
            if member.pid not in self.ended and member.proc.poll() is not None:
                pytest.fail(f"worker {member.pid} exited on its own: {self.output(member)}")

    async def ready(self, member: Member) -> Member:
        give_up = time.monotonic() + PATIENCE_S
        while not member.ready.exists():
            self.check_alive()
            assert time.monotonic() < give_up, f"not ready: {self.output(member)}"
            await asyncio.sleep(0.05)
        member.worker_id = json.loads(member.ready.read_text())["worker_id"]
        return member

    def ready_ones(self, *but: Member) -> list[Member]:
        return [m for m in self.members if m.worker_id and self.running(m) and m not in but]

    @property
    def ended(self) -> set[int]:
        """The pids of the workers the test killed or stopped."""
        return self.killed | self.stopped

    def running(self, member: Member) -> bool:
        return member.pid not in self.ended and member.proc.poll() is None

    async def stop(self, member: Member) -> None:
        """SIGTERM: the worker must exit 0."""
        self.stopped.add(member.pid)
        os.kill(member.pid, signal.SIGTERM)
        self.note(f"stopped pid {member.pid}")
        await exited(member, 0, self)

    async def kill(self, member: Member) -> None:
        self.killed.add(member.pid)
        os.kill(member.pid, signal.SIGKILL)
        self.note(f"killed pid {member.pid}")
        await exited(member, -signal.SIGKILL, self)

    async def stop_all(self) -> None:
        """SIGTERM every running worker; each must exit 0. A replacement still starting up
        is waited for first: before its signal handlers are in, SIGTERM just ends it."""
        running = [m for m in self.members if self.running(m)]
        for member in running:
            await self.ready(member)
        for member in running:
            self.stopped.add(member.pid)
            os.kill(member.pid, signal.SIGTERM)
        for member in running:
            await exited(member, 0, self)


async def exited(member: Member, code: int, fleet: Fleet) -> None:
    give_up = time.monotonic() + PATIENCE_S
    while member.proc.poll() is None:
        assert time.monotonic() < give_up, f"still running: {fleet.output(member)}"
        await asyncio.sleep(0.02)
    assert member.proc.returncode == code, fleet.output(member)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, fleet: Fleet,
                   within: float = PATIENCE_S) -> None:  # fmt: skip
    give_up = time.monotonic() + within
    while not await check():
        fleet.check_alive()
        if time.monotonic() > give_up:
            pytest.fail(f"not {what} after {within} s; log:\n" + "\n".join(fleet.log))
        await asyncio.sleep(0.1)


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """A connection pool of the test's own, for what the queue's API does not tell."""
    pool = create_async_engine(postgres_url)
    try:
        yield pool
    finally:
        await pool.dispose()


@pytest.fixture
async def queue(postgres_url: str) -> AsyncIterator[WorkerQueue]:
    async with WorkerQueue(QueueConfig(database_url=postgres_url)) as opened:
        yield opened


@pytest.fixture
def fleet(spawner: Spawner, tmp_path: Path, postgres_url: str) -> Fleet:
    return Fleet(spawner, tmp_path, postgres_url)


async def query(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text(sql), params)).all())


async def claims_of(engine: AsyncEngine, worker_id: str) -> dict[str, tuple[str, int]]:
    """The running tasks a worker holds: task id -> (lease id, attempt)."""
    rows = await query(engine, "SELECT id, lease_id, attempt_count FROM tasks "
                       "WHERE state = 'processing' AND worker_id = :w", w=worker_id)  # fmt: skip
    return {task_id: (lease, attempt) for task_id, lease, attempt in rows}


async def still_held(engine: AsyncEngine, claims: dict[str, tuple[str, int]]) -> set[str]:
    """Which of these claims still hold their lease."""
    rows = await query(engine, "SELECT id, lease_id FROM tasks WHERE state = 'processing' "
                       "AND id = ANY(:ids)", ids=list(claims))  # fmt: skip
    return {task_id for task_id, lease in rows if claims[task_id][0] == lease}


async def none_held(engine: AsyncEngine, claims: dict[str, tuple[str, int]]) -> bool:
    return not await still_held(engine, claims)


async def all_tasks(queue: WorkerQueue) -> dict[str, Task]:
    found: dict[str, Task] = {}
    after: str | None = None
    while page := await queue.list_tasks(limit=1000, after_id=after):
        found.update((task.id, task) for task in page)
        after = page[-1].id
    return found


def runs_of(fleet: Fleet) -> dict[str, list[Run]]:
    """Every handler run, per task, from the workers' runs files."""
    runs: dict[str, list[Run]] = defaultdict(list)
    for member in fleet.members:
        open_runs: dict[tuple[str, int], Run] = {}
        for line in lines(member.runs):
            what, task_id, attempt, at = line.split()
            if what == "started":
                run = Run(member.pid, int(attempt), float(at) - member.skew_s)
                runs[task_id].append(run)
                open_runs[task_id, int(attempt)] = run
            else:
                open_runs[task_id, int(attempt)].done = True
    return runs


def completer(task: Task) -> tuple[int, int]:
    """(pid, attempt) of the run whose completion the database kept."""
    result = task.items[0].result
    assert isinstance(result, dict), task
    pid, attempt = result["pid"], result["attempt"]
    assert isinstance(pid, int), task
    assert isinstance(attempt, int), task
    return pid, attempt


def presumed_dead(fleet: Fleet, tasks: dict[str, Task]) -> set[int]:
    """The pids of the workers some sweep presumed dead (their tasks' errors say so)."""
    by_id = {member.worker_id: member.pid for member in fleet.members if member.worker_id}
    named = {
        worker_id
        for task in tasks.values()
        for error in task.errors
        for worker_id in by_id
        if error.error == DEAD_WORKER_ERROR.format(worker_id)
    }
    return {by_id[worker_id] for worker_id in named}


def check_completed_once(fleet: Fleet, tasks: dict[str, Task], runs: dict[str, list[Run]],
                         may_rerun: set[int]) -> int:  # fmt: skip
    """Every task completed, by its last claim, and reported completed once; a task ran more
    than once only where its other runs were on workers in ``may_rerun`` (pids). Returns how
    many tasks ran more than once."""
    reported: dict[str, list[int]] = defaultdict(list)
    for member in fleet.members:
        for task_id in lines(member.report):
            reported[task_id].append(member.pid)
    assert {t.state for t in tasks.values()} == {TaskState.COMPLETED}
    rerun = 0
    for task in tasks.values():
        pid, attempt = completer(task)
        assert attempt == task.attempt_count, (task, runs[task.id])  # fenced: the last claim
        assert attempt <= MAX_ATTEMPTS
        assert len(reported[task.id]) <= 1, (task.id, reported[task.id])
        if pid not in fleet.killed:  # a killed worker may die between commit and report
            assert reported[task.id] == [pid], (task.id, reported[task.id])
        task_runs = runs[task.id]
        attempts = [run.attempt for run in task_runs]
        assert len(set(attempts)) == len(attempts), (task.id, task_runs)  # no claim twice
        finishing = [r for r in task_runs if (r.pid, r.attempt) == (pid, attempt)]
        assert len(finishing) == 1, (task.id, task_runs)
        assert finishing[0].done, (task.id, task_runs)
        others = [run for run in task_runs if run is not finishing[0]]
        assert all(run.pid in may_rerun for run in others), (task.id, task_runs, may_rerun)
        rerun += bool(others)
    return rerun


# -- processes stopped at the right moment -----------------------------------------------


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (``T``: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def tcp_ports(pid: int) -> list[int]:
    """The local ports of the TCP sockets ``pid`` holds: its connections to the server."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def in_transaction(engine: AsyncEngine, pid: int) -> bool:
    """Whether a (stopped) process has a transaction open on the server, or a statement in
    flight."""
    rows = await query(engine, "SELECT count(*) FROM pg_stat_activity WHERE client_port = "
                       "ANY(:ports) AND (xact_start IS NOT NULL OR state <> 'idle')",
                       ports=tcp_ports(pid))  # fmt: skip
    return bool(rows[0][0])


async def stop_holding_claims(
    engine: AsyncEngine, member: Member, fleet: Fleet
) -> dict[str, tuple[str, int]]:
    """SIGSTOP ``member`` at a moment it holds running claims and no open transaction;
    returns those claims.

    A worker frozen inside a transaction keeps its row locks, and the sweeps of all the
    others wait on them until it wakes (PostgreSQL has no timeout for that here), so the
    test freezes between transactions, as SQLite's test does between writes."""
    give_up = time.monotonic() + PATIENCE_S
    while True:
        fleet.check_alive()
        assert time.monotonic() < give_up, "never found the worker holding claims"
        os.kill(member.pid, signal.SIGSTOP)
        while process_state(member.pid) != "T":
            assert time.monotonic() < give_up, "SIGSTOP did not stop the worker"
            await asyncio.sleep(0.001)
        if not await in_transaction(engine, member.pid):
            claims = await claims_of(engine, member.worker_id)
            if claims:
                return claims
        os.kill(member.pid, signal.SIGCONT)
        await asyncio.sleep(random.uniform(0.02, 0.1))


def start_producer(directory: Path, url: str, n: int, count: int) -> subprocess.Popen[bytes]:
    with (
        (directory / f"producer{n}.out").open("wb") as out,
        (directory / f"producer{n}.err").open("wb") as err,
    ):
        return subprocess.Popen(
            [sys.executable, "-m", "tests.producer", "--db", url, "--count", str(count),
             "--ids-file", str(directory / f"producer{n}.ids"), "--batch", "100",
             "--pause", "0.3", "--max-attempts", str(MAX_ATTEMPTS)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
        )  # fmt: skip


@pytest.fixture
def producers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


async def completed(queue: WorkerQueue, count: int) -> bool:
    stats = await queue.get_queue_stats()
    return stats["completed"] >= count


# -- kills and a freeze ------------------------------------------------------------------


async def test_four_workers_two_producers_kills_and_a_freeze_complete_every_task_once(
    fleet: Fleet,
    queue: WorkerQueue,
    engine: AsyncEngine,
    producers: list[subprocess.Popen[bytes]],
) -> None:
    seed = random.randrange(2**32)
    print(f"random seed {seed}")
    per_producer = 1000
    for _ in range(4):
        fleet.start(*BUSY)
    for member in list(fleet.members):
        await fleet.ready(member)
    frozen = fleet.members[0]
    began = time.monotonic()
    for n in range(2):
        producers.append(start_producer(fleet.directory, fleet.url, n, per_producer))

    async def all_done() -> bool:
        stats = await queue.get_queue_stats()
        produced = all(p.poll() is not None for p in producers)
        return produced and stats["completed"] == len(enqueued(fleet.directory))

    killer = Killer(fleet, random.Random(seed), spare=frozen)
    killing = asyncio.create_task(killer.run(lambda: all(p.poll() is not None for p in producers),
                                             all_done))  # fmt: skip
    fleet.helpers.append(killing)
    try:
        await wait_for(lambda: completed(queue, 200), "200 completed", fleet)
        held = await stop_holding_claims(engine, frozen, fleet)
        fleet.note(f"froze pid {frozen.pid} holding {sorted(held)}")
        # Frozen until its leases were taken from it (it was presumed dead, or they expired).
        await wait_for(lambda: none_held(engine, held), "the frozen worker's claims taken", fleet)
        os.kill(frozen.pid, signal.SIGCONT)
        fleet.note(f"woke pid {frozen.pid}")
        await wait_for(all_done, "every task completed", fleet)
        await killing
    finally:
        await killer.cancel(killing)
    took = time.monotonic() - began
    for n, proc in enumerate(producers):
        assert proc.wait(timeout=10) == 0, (fleet.directory / f"producer{n}.err").read_text()
    await fleet.stop_all()

    tasks = await all_tasks(queue)
    ids = enqueued(fleet.directory)
    assert len(ids) == len(set(ids)) == 2 * per_producer
    assert set(tasks) == set(ids)  # none lost, none extra
    runs = runs_of(fleet)
    # A worker starved of CPU long enough on a busy machine is presumed dead as a frozen one
    # is (its beat is late): its runs may be repeated too, and their outcomes refused.
    starved = presumed_dead(fleet, tasks) - fleet.killed - {frozen.pid}
    rerun = check_completed_once(
        fleet, tasks, runs, may_rerun={*fleet.killed, frozen.pid, *starved}
    )
    # Fencing: the frozen worker's claims were completed by later claims, and what it did
    # with them on waking was refused (or its handlers stopped), never written.
    dropped = [line for line in lines(frozen.err) if "dropped" in line]
    for task_id, (_, attempt) in held.items():
        assert completer(tasks[task_id])[1] > attempt, (tasks[task_id], runs[task_id])
        assert any(task_id in line for line in dropped), (task_id, fleet.output(frozen))
    counts = json.loads(lines(frozen.out)[-1].removeprefix("COUNTS "))
    print(
        f"{len(tasks)} tasks in {took:.1f} s; {len(fleet.killed)} kills; {rerun} tasks ran more "
        f"than once; the frozen worker held {len(held)}, then had {counts['refused']} "
        f"acknowledgement(s) refused and {len(dropped)} outcome(s) dropped; "
        f"{len(starved)} live worker(s) presumed dead (late beats on a busy machine)"
    )
    assert len(fleet.killed) >= 3  # kills while the producers ran, at least (about 3 s)
    assert rerun >= len(held)


def enqueued(directory: Path) -> list[str]:
    """The ids the producers' batches committed."""
    return [i for ids in sorted(directory.glob("producer*.ids")) for i in lines(ids)]


@dataclass
class Killer:
    """SIGKILLs a random worker (not ``spare``) every second and starts a replacement."""

    fleet: Fleet
    chance: random.Random
    spare: Member
    replacements: list[asyncio.Task[Member]] = field(default_factory=list)

    async def run(self, produced: Callable[[], bool], done: Callable[[], Awaitable[bool]]) -> None:
        """Until the producers are done and KILLS workers were killed (each replacement's
        start costs a CPU second or so: more would only slow the test down), or ``done``."""
        kills = 0
        while kills < KILLS or not produced():
            await asyncio.sleep(KILL_EVERY_S)  # a pace, not a measurement
            if await done():
                break
            self.fleet.check_alive()
            if victims := self.fleet.ready_ones(self.spare):
                await self.fleet.kill(self.chance.choice(victims))
                kills += 1
                started = self.fleet.start(*BUSY)
                self.replacements.append(asyncio.create_task(self.fleet.ready(started)))
        await asyncio.gather(*self.replacements)  # each one got going

    async def cancel(self, killing: asyncio.Task[None]) -> None:
        for job in (killing, *self.replacements):
            job.cancel()
        await asyncio.gather(killing, *self.replacements, return_exceptions=True)


# -- a clock 30 s off --------------------------------------------------------------------

# A worker's process clock is set 30 s off (``--clock-skew``). On PostgreSQL the queue decides
# with the database server's clock (worker/core/clock.py: the machine's, corrected by its offset
# from the server's), so the skew must not matter; with QUEUE_DATABASE_CLOCK off these fail.


async def enqueue_jobs(queue: WorkerQueue, count: int, **fields: Any) -> list[str]:
    """``count`` job tasks of 5-20 ms, in batches of 100; returns their ids."""
    ids: list[str] = []
    for start in range(0, count, 100):
        batch = [
            job_task(seconds=[random.uniform(0.005, 0.02)], max_attempts=MAX_ATTEMPTS, **fields)
            for _ in range(min(100, count - start))
        ]
        await queue.enqueue(batch)
        ids += [task.id for task in batch]
    return ids


async def none_expired(engine: AsyncEngine) -> list[Any]:
    """The tasks that lost a lease so far (none should, while no worker was killed)."""
    return await query(engine, "SELECT id, errors FROM tasks WHERE expired_count > 0")


async def kill_holding_claims(
    engine: AsyncEngine, member: Member, fleet: Fleet
) -> dict[str, tuple[str, int]]:
    """SIGKILL ``member`` while it holds claims (stopped first, to see which); returns them."""
    claims = await stop_holding_claims(engine, member, fleet)
    await fleet.kill(member)
    fleet.note(f"killed pid {member.pid} holding {sorted(claims)}")
    return claims


async def test_a_worker_30_s_ahead_neither_steals_live_leases_nor_keeps_its_dead_ones(
    fleet: Fleet, queue: WorkerQueue, engine: AsyncEngine
) -> None:
    """Its sweep would find every other lease expired, and every other worker silent for
    30 s; its own beats and leases would look 30 s fresher than they are, and tasks due in
    a few seconds due now."""
    for _ in range(3):
        fleet.start(*BUSY)
    ahead = fleet.start(*BUSY, skew_s=SKEW_S)
    for member in list(fleet.members):
        await fleet.ready(member)
    due_at = time.time() + 5
    later = await enqueue_jobs(queue, 10, schedule_at=due_at)
    now = await enqueue_jobs(queue, 600)
    await wait_for(lambda: completed(queue, 300), "300 completed", fleet)
    assert await none_expired(engine) == [], "live leases were taken while no worker died"

    # Work that holds every slot for seconds, so that the worker ahead holds claims between
    # transactions when it is killed, however fast the rest has drained on this machine.
    slow = [job_task(seconds=[3.0, 0.005], max_attempts=MAX_ATTEMPTS) for _ in range(16)]
    await queue.enqueue(slow)
    claims = await kill_holding_claims(engine, ahead, fleet)
    await wait_for(lambda: none_held(engine, claims), "the dead worker's claims taken", fleet,
                   within=NOTICED_WITHIN_S)  # fmt: skip
    total = len(later) + len(now) + len(slow)
    await wait_for(lambda: completed(queue, total), "all completed", fleet)
    await fleet.stop_all()

    tasks = await all_tasks(queue)
    runs = runs_of(fleet)
    check_completed_once(fleet, tasks, runs, may_rerun={ahead.pid})
    for task in tasks.values():
        if task.id not in claims:
            assert (task.attempt_count, task.expired_count) == (1, 0), (task, runs[task.id])
    assert any(run.pid == ahead.pid for task_runs in runs.values() for run in task_runs), (
        "the worker 30 s ahead ran no task"
    )
    for task_id in later:  # none ran early (0.5 s: the clocks are one machine's)
        assert all(run.started_at >= due_at - 0.5 for run in runs[task_id]), runs[task_id]


async def test_a_worker_30_s_behind_neither_loses_its_live_leases_nor_keeps_dead_ones(
    fleet: Fleet, queue: WorkerQueue, engine: AsyncEngine
) -> None:
    """The others' sweeps would find it silent for 30 s and take its leases; it would see
    nothing due for 30 s; and its sweep would give a dead worker's tasks back 30 s late."""
    healthy = [fleet.start(*BUSY) for _ in range(2)]
    behind = fleet.start(skew_s=-SKEW_S)  # 2 at a time
    for member in list(fleet.members):
        await fleet.ready(member)
    ids = await enqueue_jobs(queue, 400)
    await wait_for(lambda: completed(queue, len(ids)), "all completed", fleet)
    assert await none_expired(engine) == [], "live leases were taken while no worker died"
    runs = runs_of(fleet)
    ran = any(run.pid == behind.pid for task_runs in runs.values() for run in task_runs)
    assert ran, "the worker 30 s behind ran no task (none looked due to it)"

    # Now the skewed worker is the only one sweeping: a worker that dies is its to notice.
    for member in healthy:
        await fleet.stop(member)
    victim = await fleet.ready(fleet.start("--sweep-interval", "3600"))  # sweeps as it starts
    slow = [job_task(seconds=[4.0, 0.005], max_attempts=MAX_ATTEMPTS) for _ in range(4)]
    await queue.enqueue(slow)

    async def victim_holds_two() -> bool:
        return len(await claims_of(engine, victim.worker_id)) == 2

    await wait_for(victim_holds_two, "two tasks claimed by the victim", fleet)
    claims = await kill_holding_claims(engine, victim, fleet)
    await wait_for(lambda: none_held(engine, claims), "the dead worker's claims taken", fleet,
                   within=NOTICED_WITHIN_S)  # fmt: skip
    await wait_for(lambda: completed(queue, len(ids) + len(slow)), "all completed", fleet)
    await fleet.stop_all()

    tasks = await all_tasks(queue)
    runs = runs_of(fleet)
    check_completed_once(fleet, tasks, runs, may_rerun={victim.pid})
    for task in tasks.values():
        expected = (2, 1) if task.id in claims else (1, 0)
        assert (task.attempt_count, task.expired_count) == expected, (task, runs[task.id])
