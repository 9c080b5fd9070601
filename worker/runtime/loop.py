"""``worker_loop``: claim due tasks into free slots, run them, keep their leases, ack them.

One loop owns a set of running tasks. It claims in batches up to its free concurrency, wakes
on enqueues and database changes (:mod:`worker.runtime.wakeup`), renews every running lease in one
``heartbeat`` call at a third of the smallest visibility timeout, stops handlers whose task was
cancelled or whose claim was lost within a second (:mod:`worker.runtime.watch`, which also sends a
registered worker's liveness beat), and on stop lets handlers finish within the grace before
cancelling them and releasing their tasks (the attempt is given back). A loop whose
:class:`~worker.runtime.retirement.Retirement` is due stops claiming and lets its running
tasks run to their end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from worker.core.errors import DatabaseLostError, QueueClosedError, QueueError
from worker.core.models import Resources, Task
from worker.queue.worker_queue import WorkerQueue
from worker.runtime.acks import AckBuffer
from worker.runtime.context import TaskContext
from worker.runtime.events import EventBus
from worker.runtime.execute import Outcome, attempt
from worker.runtime.memory import MemoryGovernor
from worker.runtime.outcomes import describe
from worker.runtime.processors import ProcessorRegistry
from worker.runtime.retirement import Retirement
from worker.runtime.sweeper import sweep
from worker.runtime.wakeup import DatabaseWatcher, Waker
from worker.runtime.watch import RunWatcher, StopReason
from worker.storage.sqlite.connection import sqlite_path

if TYPE_CHECKING:
    from worker.runtime.liveness import Liveness

log = logging.getLogger(__name__)

_REASONS: dict[StopReason, str] = {
    "cancel": "a cancel was requested",
    "lost": "its claim was lost (the task was given to another worker)",
    "shutdown": "the worker is stopping",
}

#: After a failed claim or heartbeat, wait this long before the next try.
ERROR_PAUSE_S = 0.5
#: How long cancelled handlers get to unwind before the loop stops waiting for them.
UNWIND_S = 5.0


@dataclass
class Running:
    task: Task
    ctx: TaskContext
    job: asyncio.Task[Outcome]
    stop_reason: StopReason | None = None

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.ctx.cancelled = True
            self.job.cancel()


class Loop:
    def __init__(
        self,
        queue: WorkerQueue,
        registry: ProcessorRegistry,
        *,
        concurrency: int,
        queues: list[str] | None,
        burst: bool,
        events: EventBus,
        acks: AckBuffer,
        stop: asyncio.Event,
        force: asyncio.Event,
        capacity: Resources | None = None,
        liveness: Liveness | None = None,
        retirement: Retirement | None = None,
    ) -> None:
        config = queue.config
        self.queue = queue
        self.registry = registry
        self.queues = queues
        self.burst = burst
        self.events = events
        self.acks = acks
        self.stop = stop
        self.force = force
        self.running: dict[str, Running] = {}
        self.capacity = capacity
        self.retirement = retirement
        self.memory = MemoryGovernor(concurrency, config.memory_threshold)
        path = sqlite_path(config.database_url)
        self.waker = Waker(DatabaseWatcher(path) if path else None, config.poll_interval)
        #: Tasks are claimed in the registered worker's name (its heartbeat vouches for them).
        self.worker_id = None if liveness is None else liveness.worker_id
        self.watcher = RunWatcher(
            queue,
            self._leases,
            self._stop,
            liveness=liveness,
            files=DatabaseWatcher(path) if path else None,
        )
        self._started = asyncio.Event()
        self._next_beat = float("inf")

    async def run(self) -> None:
        notifier = self.queue.notifier  # every enqueue of this process pokes it
        notifier.subscribe(self.waker.poke)
        self.queue.receive_wakeups()  # other processes' enqueues poke it too, where pushed
        helpers = [
            asyncio.create_task(self._poke_on(self.stop)),
            asyncio.create_task(self._stop_when_lost()),
            asyncio.create_task(self._keep_leases()),
            asyncio.create_task(self.watcher.run()),
        ]
        try:
            await self._claim_until_stopped()
            await self._finish_running()
            await self._drain()
        finally:
            notifier.unsubscribe(self.waker.poke)
            self.waker.close()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.running:  # the loop itself was cancelled: give the tasks back
                await self._stop_all()
        lost = self.queue.storage_lost_error
        if lost is not None:
            raise lost

    async def _stop_when_lost(self) -> None:
        """The database cannot keep what is written (see worker.storage.sqlite.walguard):
        stop at once."""
        await self.queue.storage_lost.wait()
        log.critical(
            "stopping: the database can no longer keep this worker's writes; its %d running "
            "task(s) are stopped; other workers run them again once this one counts as dead",
            len(self.running),
        )
        self.stop.set()
        self.force.set()

    async def _poke_on(self, event: asyncio.Event) -> None:
        await event.wait()
        self.waker.poke.set()

    # -- claiming --------------------------------------------------------------------------

    async def _claim_until_stopped(self) -> None:
        while not self.stop.is_set():
            if self._retiring():
                return
            free = self.memory.current() - len(self.running)
            if self.retirement is not None:
                free = self.retirement.room(free)
            claimed: list[Task] = []
            if free > 0:
                try:
                    claimed = await self.queue.dequeue(
                        size=free,
                        queues=self.queues,
                        resources=self._free_resources(),
                        worker_id=self.worker_id,
                    )
                except (QueueClosedError, DatabaseLostError):
                    raise
                except QueueError:
                    log.exception("claiming tasks failed; trying again in %s s", ERROR_PAUSE_S)
                    await asyncio.sleep(ERROR_PAUSE_S)
                    continue
                if self.retirement is not None:
                    self.retirement.took(len(claimed))
                for task in claimed:
                    self._start(task)
            if claimed:
                self.waker.busy()
                if len(claimed) == free:
                    continue
            elif self.burst and not self.running and not await self._more_due():
                return
            await self.waker.wait(watch=free - len(claimed) > 0)

    def _retiring(self) -> bool:
        reason = None if self.retirement is None else self.retirement.due()
        if reason is not None:
            log.info("retiring: %s; claiming no more, %d running task(s) run to their end",
                     reason, len(self.running))  # fmt: skip
        return reason is not None

    async def _finish_running(self) -> None:
        """Retiring: wait for the running tasks to end on their own, or for a stop."""
        if self.stop.is_set() or not self.running:
            return
        stopped = asyncio.create_task(self.stop.wait())
        try:
            while self.running and not self.stop.is_set():
                jobs = {r.job for r in self.running.values()}
                await asyncio.wait({stopped, *jobs}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()

    def _free_resources(self) -> Resources | None:
        """The capacity less what the running tasks declared (None: no capacity set)."""
        if self.capacity is None:
            return None
        needs = [r.task.resources for r in self.running.values()]
        return Resources(
            memory_bytes=max(0, self.capacity.memory_bytes - sum(n.memory_bytes for n in needs)),
            cpu=max(0.0, self.capacity.cpu - sum(n.cpu for n in needs)),
            gpu=self.capacity.gpu and not any(n.gpu for n in needs),
        )

    async def _more_due(self) -> bool:
        """Burst mode, about to exit: write the acks and sweep; is anything due now?"""
        await self.acks.flush()
        await sweep(self.queue)
        # Whoever moved them (this sweep or the sweeper task), are tasks claimable now?
        return await self.queue.any_due(self.queues, self._free_resources())

    def _start(self, task: Task) -> None:
        stale = self.running.get(task.id)
        if stale is not None:
            # Claimed again by this very worker: the earlier claim's lease was taken from it
            # (it was presumed dead while frozen, say, and its claim's reply was read only on
            # waking), so that run is over; its outcome would be refused anyway.
            log.warning("task %s: claimed again (attempt %d); stopping the run of attempt %d",
                        task.id, task.attempt_count, stale.task.attempt_count)  # fmt: skip
            stale.stop("lost")
        ctx = TaskContext(self.queue, task, partial(self._progressed))
        timeout_s = task.timeout_s or self.queue.config.worker_timeout
        job = asyncio.create_task(attempt(ctx, self.registry, timeout_s), name=f"task {task.id}")
        record = Running(task, ctx, job)
        self.running[task.id] = record
        job.add_done_callback(partial(self._finished, record))
        self._next_beat = min(self._next_beat, time.monotonic() + self._lease_s(task) / 3)
        self._started.set()
        self.watcher.started()
        self.events.emit("task_started", task)

    def _progressed(self, task: Task, progress: object) -> None:
        self.events.emit("task_progress", task, progress=progress)

    def _finished(self, record: Running, job: asyncio.Task[Outcome]) -> None:
        task = record.task
        if self.running.get(task.id) is record:  # not when a later claim superseded it
            del self.running[task.id]
        self.waker.poke.set()
        outcome: Outcome | None = None
        if not job.cancelled():
            error = job.exception()
            if error is None:
                outcome = job.result()
            else:  # only BaseExceptions other than Exception get here (attempt catches those)
                log.error("task %s: handler raised %s", task.id, describe(error))
                outcome = Outcome("retry", error=describe(error))
        reason = record.stop_reason
        if record.ctx.threads.alive():  # abandoned: the handler's thread runs on
            log.error(
                "task %s: its handler's thread still runs; the task is left to its lease "
                "(it runs again once the lease expires), not released beside it",
                task.id,
            )
        elif outcome is not None and outcome.verdict == "complete" and reason != "lost":
            self.acks.outcome(task, outcome)  # finished before the stop reached it
        elif reason == "lost":
            log.warning("task %s: lease lost; its handler was stopped, outcome dropped", task.id)
        elif reason == "cancel":
            self.acks.cancelled(task)
        elif reason == "shutdown":
            self.acks.released(task)
        elif outcome is None:  # the handler raised CancelledError itself
            self.acks.outcome(task, Outcome("retry", error="the handler was cancelled"))
        else:
            self.acks.outcome(task, outcome)

    # -- leases ----------------------------------------------------------------------------

    def _lease_s(self, task: Task) -> float:
        return task.visibility_timeout or self.queue.config.default_visibility_timeout

    async def _keep_leases(self) -> None:
        """Renew every running lease in one call, a third of the smallest timeout apart."""
        while True:
            self._started.clear()
            if not self.running:
                self._next_beat = float("inf")
                await self._started.wait()
                continue
            wait = self._next_beat - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):  # the beat is due
                    await asyncio.wait_for(self._started.wait(), wait)
                if self._started.is_set():
                    continue  # a new task: its lease may need an earlier beat
            records = list(self.running.values())
            try:
                beat = await self.queue.heartbeat(
                    [(r.task.id, r.task.lease_id) for r in records if r.task.lease_id]
                )
            except DatabaseLostError:
                raise
            except QueueError:
                log.exception("lease heartbeat failed; trying again in %s s", ERROR_PAUSE_S)
                self._next_beat = time.monotonic() + ERROR_PAUSE_S
                continue
            # Tasks started during the call count too: their leases are fresh but may be short.
            shortest = min((self._lease_s(r.task) for r in self.running.values()), default=None)
            self._next_beat = float("inf") if shortest is None else time.monotonic() + shortest / 3
            for task_id in beat.lost:
                self._stop(task_id, "lost")
            for task_id in beat.cancel_requested:
                self._stop(task_id, "cancel")

    def _leases(self) -> list[tuple[str, str]]:
        return [(r.task.id, r.task.lease_id) for r in self.running.values() if r.task.lease_id]

    def _stop(self, task_id: str, reason: StopReason) -> None:
        record = self.running.get(task_id)
        if record is not None and record.stop_reason is None:
            log.info("stopping task %s: %s", task_id, _REASONS[reason])
            record.stop(reason)

    # -- shutdown --------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Let running handlers finish within the grace (or until forced), then stop them."""
        grace = self.queue.config.shutdown_grace
        if self.running and not self.force.is_set():
            log.info("waiting up to %s s for %d running task(s)", grace, len(self.running))
            give_up = time.monotonic() + grace
            forced = asyncio.create_task(self.force.wait())
            try:
                while self.running and (left := give_up - time.monotonic()) > 0:
                    jobs = {r.job for r in self.running.values()}
                    done, _ = await asyncio.wait(
                        {forced, *jobs}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    if forced in done:
                        break
            finally:
                forced.cancel()
        await self._stop_all()

    async def _stop_all(self) -> None:
        records = list(self.running.values())
        if not records:
            return
        log.warning("stopping %d running task(s); they will be released", len(records))
        for record in records:
            record.stop("shutdown")
        _, late = await asyncio.wait({r.job for r in records}, timeout=UNWIND_S)
        for record in records:
            if record.job not in late:
                continue
            if record.ctx.threads.alive():
                # A plain def handler Python could not interrupt: stop waiting for it (its
                # attempt then ends, and _finished leaves the task to its lease).
                record.ctx.threads.abandon()
                continue
            log.error(
                "%s ignored cancellation for %s s; releasing it anyway",
                record.job.get_name(),
                UNWIND_S,
            )
            self.running.pop(record.task.id, None)
            self.acks.released(record.task)
        abandoned = [r.job for r in records if r.job in late and r.ctx.threads.abandoned]
        if abandoned:
            await asyncio.wait(abandoned, timeout=UNWIND_S)
