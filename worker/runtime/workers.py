"""``Worker``: a worker loop, the retry sweeper, the schedules' ticks, the worker registry and
signal handling.

::

    async with WorkerQueue(QueueConfig.from_env()) as queue:
        await Worker(queue, concurrency=8, queues=["audio"]).run()

A worker registers itself in the database and sends a liveness beat every
``heartbeat_interval`` seconds (:mod:`worker.runtime.liveness`); the sweep of any process gives a
worker's running tasks back once it has been silent for ``worker_dead_after``, so a killed
worker's tasks run again within seconds whatever their visibility timeout. A cancel of a
running task reaches its handler within a second (:mod:`worker.runtime.watch`).

SIGINT or SIGTERM (handlers installed only while :meth:`Worker.run` runs) stops claiming
and lets running handlers finish within ``shutdown_grace`` seconds; the rest are cancelled and
released (their attempt is given back). A second signal stops them at once.

With ``max_tasks`` or ``max_memory_mb`` (default: ``QUEUE_WORKER_MAX_TASKS`` and
``QUEUE_WORKER_MAX_MEMORY_MB``; 0 is no limit) a worker *retires*: once it claimed that many
tasks, or its resident memory is above the limit, it claims no more, its running tasks run to
their end, and :meth:`Worker.run` returns with :attr:`Worker.retired` saying why (see
:mod:`worker.runtime.retirement`; a pool replaces such a process at once).

A burst worker that ran dry delivers the webhooks and runs the callbacks that are due (those of
the tasks it just finished, mostly) before it exits, for at most ``DRAIN_TIMEOUT_S`` (see
:func:`~worker.webhooks.drain_webhooks`); a signal cuts that short. A worker that was stopped
does not wait for deliveries: the next worker makes them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from collections.abc import Iterable, Sequence

from worker.core import arguments, observers
from worker.core.config import QueueConfig
from worker.core.errors import QueueError
from worker.core.limits import MAX_CONCURRENCY
from worker.core.models import Resources, Task
from worker.queue.worker_queue import WorkerQueue
from worker.runtime.acks import AckBuffer
from worker.runtime.callbacks import callback_loop, drain_callbacks
from worker.runtime.events import Callback, EventBus
from worker.runtime.liveness import Liveness
from worker.runtime.loop import Loop
from worker.runtime.memory import MemoryInfoError, read_meminfo, total_bytes
from worker.runtime.processors import ProcessorRegistry
from worker.runtime.processors import registry as default_registry
from worker.runtime.retirement import MIB, Retirement
from worker.runtime.scheduler import schedule_loop
from worker.runtime.sweeper import retry_sweeper
from worker.webhooks import drain_webhooks, webhook_loop

log = logging.getLogger(__name__)


def machine_resources() -> Resources:
    """This machine's memory and CPU count (no GPU): a worker's default capacity."""
    try:
        memory = total_bytes(read_meminfo())
    except MemoryInfoError as exc:
        log.warning("%s; tasks' memory needs are not checked", exc)
        memory = 2**62
    return Resources(memory_bytes=memory, cpu=float(os.cpu_count() or 1), gpu=False)


async def worker_loop(
    queue: WorkerQueue,
    registry: ProcessorRegistry | None = None,
    *,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    burst: bool = False,
    stop: asyncio.Event | None = None,
    force: asyncio.Event | None = None,
    events: EventBus | None = None,
    resources: Resources | None = None,
    liveness: Liveness | None = None,
    retirement: Retirement | None = None,
) -> dict[str, int]:
    """Claim and run tasks until ``stop`` is set (or, with ``burst``, until nothing is due
    and nothing runs). Every acknowledgement is written before it returns; returns counts
    (completed, retried, discarded, cancelled, released, refused).

    With ``liveness`` (a registered worker, as :class:`Worker` passes), tasks are claimed in
    its name and its heartbeat is sent; without, a task whose process dies waits out its
    visibility timeout. With ``retirement``, it stops claiming once that is due, and returns
    when its running tasks have ended."""
    events = events or EventBus()
    acks = AckBuffer(queue, events)
    loop = Loop(
        queue,
        registry or default_registry,
        concurrency=concurrency or queue.config.concurrency,
        queues=None if queues is None else list(queues),
        burst=burst,
        events=events,
        acks=acks,
        stop=stop or asyncio.Event(),
        force=force or asyncio.Event(),
        capacity=resources,
        liveness=liveness,
        retirement=retirement,
    )
    flusher = asyncio.create_task(acks.run())
    discards = _ClaimDiscards(acks.counts, loop.worker_id or queue.worker_id)
    observers.add(discards)
    try:
        await loop.run()
    finally:
        observers.remove(discards)
        flusher.cancel()
        # wait() never raises the flusher's own CancelledError, so a cancellation of this
        # coroutine still propagates (suppressing CancelledError here could swallow it).
        await asyncio.wait([flusher])
        await asyncio.shield(acks.close())
        await events.aclose()
    return acks.counts


class _ClaimDiscards:
    """Counts this loop's claims' discards of tasks that could not be loaded (a request
    kind it does not know) among its ``discarded``: none of its attempts ran them."""

    def __init__(self, counts: dict[str, int], worker_id: str | None) -> None:
        self._counts = counts
        self._worker_id = worker_id

    def unloadable(self, task_id: str, worker_id: str | None) -> None:
        if worker_id == self._worker_id:
            self._counts["discarded"] += 1

    def enqueued(self, tasks: Sequence[Task], inserted: int) -> None:
        return

    def refused(self, task: Task) -> None:
        return

    def lease_expired(self, task: Task) -> None:
        return

    def webhook(self, outcome: str) -> None:
        return


class Worker:
    """Runs tasks from ``queue`` with ``registry``'s handlers, ``concurrency`` at a time."""

    def __init__(
        self,
        queue: WorkerQueue,
        registry: ProcessorRegistry | None = None,
        *,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        burst: bool = False,
        sweep_interval_s: float | None = None,
        handle_signals: bool = True,
        worker_id: str | None = None,
        resources: Resources | None = None,
        schedules: bool = True,
        max_tasks: int | None = None,
        max_memory_mb: int | None = None,
    ) -> None:
        self.queue = queue
        self.registry = registry or default_registry
        self.concurrency = concurrency or queue.config.concurrency
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(
                f"concurrency must be from 1 to {MAX_CONCURRENCY:,}, got {self.concurrency}"
            )
        # Refused here: a bad name would fail every claim, logged each poll, for ever.
        self.queues = arguments.queue_names("queues", queues)
        self.burst = burst
        #: What this worker has to give its tasks: by default the machine's memory and CPUs,
        #: and no GPU (a worker with one says so), so a task that declares needs runs only
        #: where they fit.
        self.resources = resources if resources is not None else machine_resources()
        config = queue.config
        tasks_limit = config.worker_max_tasks if max_tasks is None else max_tasks
        memory_limit = config.worker_max_memory_mb if max_memory_mb is None else max_memory_mb
        #: When this worker retires (0: no limit).
        self.retirement = Retirement(
            max_tasks=tasks_limit or None,
            max_memory_bytes=memory_limit * MIB if memory_limit else None,
        )
        self.sweep_interval_s = sweep_interval_s
        #: Whether this worker fires the schedules' due ticks (any one worker suffices; each
        #: tick is enqueued once however many do).
        self.schedules = schedules
        self.handle_signals = handle_signals
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.events = EventBus()
        self.counts: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        #: Set once :meth:`run` has registered the worker and handles its signals: from
        #: then on SIGTERM stops it gracefully (what a supervisor or a test waits for).
        self.started = asyncio.Event()

    def register_callback(self, event: str, callback: Callback) -> None:
        """Call ``callback(TaskEvent)`` (sync or async) on ``event`` (see
        ``worker.runtime.events``)."""
        self.events.register(event, callback)

    @property
    def retired(self) -> str | None:
        """Why the worker retired (its task or memory limit), or None if it did not."""
        return self.retirement.reason

    @property
    def stopping(self) -> bool:
        """A stop was requested (a signal, or :meth:`request_stop`)."""
        return self._stop.is_set()

    def request_stop(self, *, force: bool = False) -> None:
        """Stop claiming (and, with ``force``, stop running handlers now)."""
        if self._stop.is_set() or force:
            self._force.set()
        self._stop.set()

    async def run(self) -> dict[str, int]:
        """Run until stopped (a signal, :meth:`request_stop`, or burst mode running dry)."""
        if self.queue.worker_id is None:
            self.queue.worker_id = self.id
        # Signals first: a SIGTERM while the worker registers stops it as gracefully as one
        # that comes later (it would otherwise end the process with the default action).
        installed = self._install_signals() if self.handle_signals else []
        try:
            return await self._run()
        finally:
            for signum in installed:
                asyncio.get_running_loop().remove_signal_handler(signum)

    async def _run(self) -> dict[str, int]:
        liveness = Liveness(
            self.queue,
            {
                "id": self.id,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": self.queues,
                "concurrency": self.concurrency,
            },
        )
        await liveness.register()
        log.info("worker %s started (concurrency %d, queues %s)", self.id, self.concurrency,
                 self.queues or "all")  # fmt: skip
        sweeper = asyncio.create_task(
            retry_sweeper(self.queue, self.sweep_interval_s, stop=self._stop)
        )
        webhooks = asyncio.create_task(webhook_loop(self.queue, stop=self._stop))
        callbacks = asyncio.create_task(callback_loop(self.queue, stop=self._stop))
        helpers = [sweeper, webhooks, callbacks]
        if self.schedules:
            helpers.append(asyncio.create_task(schedule_loop(self.queue, stop=self._stop)))
        self.started.set()
        try:
            self.counts = await worker_loop(
                self.queue,
                self.registry,
                concurrency=self.concurrency,
                queues=self.queues,
                burst=self.burst,
                stop=self._stop,
                force=self._force,
                events=self.events,
                resources=self.resources,
                liveness=liveness,
                retirement=self.retirement if self.retirement.enabled else None,
            )
            # Ran dry (not stopped, not retired: a retired worker's successor delivers).
            if self.burst and not self._stop.is_set() and self.retired is None:
                await self._deliver_before_exit(webhooks, callbacks)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.queue.storage_lost_error is None:  # else nothing can be written
                try:
                    await liveness.stopped()
                except QueueError:
                    log.exception("could not record worker %s as stopped", self.id)
        if self.retired is not None:
            log.info("worker %s retired (%s): %s", self.id, self.retired, self.counts)
        else:
            log.info("worker %s stopped: %s", self.id, self.counts)
        return self.counts

    async def _deliver_before_exit(
        self, webhooks: asyncio.Task[None], callbacks: asyncio.Task[None]
    ) -> None:
        """Burst mode ran dry: let the helpers end their current round and stop (so that no
        delivery or callback is left leased by a cancelled one), then deliver and run what
        is due. A signal or :meth:`request_stop` now sets ``_force``, which stops them."""
        self._stop.set()
        await asyncio.wait([webhooks, callbacks])
        await asyncio.gather(
            drain_webhooks(self.queue, stop=self._force),
            drain_callbacks(self.queue, stop=self._force),
        )

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (ValueError, RuntimeError, NotImplementedError) as exc:
                log.warning("cannot handle %s here (%s); stop with request_stop()", signum, exc)
                continue
            installed.append(signum)
        return installed

    def _on_signal(self, signum: signal.Signals) -> None:
        if self._stop.is_set():
            log.warning("%s while stopping: stopping now", signum.name)
            self._force.set()
        else:
            log.warning(
                "%s: no new tasks; running ones get %s s to finish (signal again to stop now)",
                signum.name, self.queue.config.shutdown_grace,
            )  # fmt: skip
        self._stop.set()


async def run_workers(
    config: QueueConfig,
    registry: ProcessorRegistry | None = None,
    *,
    modules: Iterable[str] = (),
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    burst: bool = False,
    worker_id: str | None = None,
    resources: Resources | None = None,
) -> dict[str, int]:
    """Open the queue, import ``modules`` (their ``@processor`` handlers register), and run
    a :class:`Worker` until a signal (or, with ``burst``, until the queue runs dry)."""
    chosen = registry or default_registry
    chosen.load_modules(modules)
    async with WorkerQueue(config) as queue:
        worker = Worker(
            queue,
            chosen,
            concurrency=concurrency,
            queues=queues,
            burst=burst,
            worker_id=worker_id,
            resources=resources,
        )
        return await worker.run()
