"""Callbacks by name: run a task's ``on_success`` / ``on_failure`` once its outcome is stored.

A task may name callables, ``Task(on_success="app.hooks:done", on_failure="app.hooks:failed")``.
After the task completed, a worker calls ``on_success(task, result)`` (``result``: the result
of its one item, or the list of its items' results when it has several); after it was
discarded (its last attempt failed, or a handler raised ``PermanentError``),
``on_failure(task, error)`` (``error``: the task's ``last_error``). A cancelled task runs
neither. The callable may be a coroutine function; a plain function runs in a thread.

Running code that task data names is opt-in: only functions of the modules listed in
``QUEUE_CALLBACK_ALLOWED_MODULES`` are imported and run (the rules of
:mod:`worker.builtins.allowlist`, as for ``call`` tasks); any other is refused, and the refusal
is recorded on the callback and logged.

Each run is persisted and runs at least once, as a webhook delivery does (this module mirrors
:mod:`worker.webhooks.dispatcher`): every :class:`~worker.Worker` scans tasks that ended
(:class:`~worker.runtime.endings.EndingsCursor`) and creates one row per ending of a task
that names a callback for it, claims due rows with a lease, runs them, and records each
outcome; a callback that raises (or outlives ``callback_timeout``) runs again after a backoff
until ``callback_max_attempts`` are used up. One whose worker died is due again when its
lease expires. Its state, attempts and last error are the task's ``queue.task_callbacks(id)``
(and ``wq status ID``). A callback never changes its task: the task's state and outcome are
what they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from typing import Any

from pydantic import JsonValue

from worker.builtins.allowlist import AllowList, CallRefusedError, allowed_callable
from worker.core.backoff import retry_delay_s
from worker.core.callbacks import CallbackEvent, ClaimedCallback
from worker.core.clock import Clock
from worker.core.errors import DatabaseLostError, QueueClosedError, QueueError, TaskNotFoundError
from worker.core.models import Task
from worker.queue.worker_queue import WorkerQueue
from worker.runtime.endings import SETTLE_MARGIN_S, EndingsCursor

log = logging.getLogger(__name__)

#: Ended tasks read per scan, and callbacks claimed per round.
SCAN_BATCH = 1000
CLAIM_BATCH = 16
#: A claimed callback is someone's for its timeout plus this; then it is due again.
LEASE_MARGIN_S = 30.0
#: How long :func:`drain_callbacks` (a burst worker about to exit) starts new rounds.
DRAIN_TIMEOUT_S = 30.0
SUPERSEDED = "superseded: the task was resumed after this outcome (a new ending has its own run)"


def callback_result(task: Task) -> JsonValue:
    """What ``on_success`` gets as its result: the one item's, or every item's in a list."""
    if len(task.items) == 1:
        return task.items[0].result
    return [item.result for item in task.items]


class CallbackRunner:
    """Creates and runs the callbacks of one queue's database (see the module docstring)."""

    def __init__(self, queue: WorkerQueue, *, clock: Clock | None = None) -> None:
        self.queue = queue
        self.config = config = queue.config
        self._clock = queue.clock if clock is None else clock
        self._store = queue.storage.callbacks
        self._cursor = EndingsCursor(
            self._store,
            self._clock,
            settle_s=config.busy_timeout + SETTLE_MARGIN_S,
            batch=SCAN_BATCH,
        )
        self._allowed = AllowList(
            config.callback_allowed_modules,
            setting="QUEUE_CALLBACK_ALLOWED_MODULES (callback_allowed_modules)",
            purpose="to let tasks name its functions as callbacks",
            what="callback",
        )

    @property
    def behind(self) -> bool:
        """The last quick scan was cut short: more tasks have ended than it read."""
        return self._cursor.behind

    async def tick(self) -> int:
        """One round: create missing callback runs, run the due ones; returns how many were
        claimed (a full batch means more may be due)."""
        await self.collect()
        return await self.run_due()

    async def collect(self) -> int:
        created = await self._cursor.collect()
        if created:
            log.debug("created %d callback runs", created)
        return created

    async def run_due(self) -> int:
        lease_s = self.config.callback_timeout + LEASE_MARGIN_S
        claimed = await self._store.claim(self._clock(), lease_s, CLAIM_BATCH)
        if claimed:
            await asyncio.gather(*(self._attempt(c) for c in claimed))
        return len(claimed)

    async def _attempt(self, claimed: ClaimedCallback) -> None:
        if claimed.attempts > self.config.callback_max_attempts:  # the last one was cut short
            await self._failed(claimed, "attempts used up (the last one was interrupted)")
            return
        try:
            task = await self.queue.get_task(claimed.task_id)
        except TaskNotFoundError:
            await self._failed(claimed, "the task no longer exists", final=True)
            return
        if task.finished_at != claimed.finished_at:  # only the current outcome is reported
            await self._failed(claimed, SUPERSEDED, final=True)
            return
        try:
            function = allowed_callable(claimed.target, self._allowed)
        except CallRefusedError as error:
            await self._failed(claimed, str(error), final=True)
            return
        if claimed.event is CallbackEvent.SUCCESS:
            arguments: tuple[Any, ...] = (task, callback_result(task))
        else:
            arguments = (task, task.last_error)
        timeout_s = self.config.callback_timeout
        try:
            async with asyncio.timeout(timeout_s):
                await _call(function, arguments)
        except TimeoutError:
            await self._failed(claimed, f"no return within {timeout_s:g} s")
            return
        except Exception as error:  # the callback's own failure, whatever it is: recorded
            log.debug("callback %s of task %s raised", claimed.target, task.id, exc_info=True)
            await self._failed(claimed, f"{type(error).__name__}: {error}")
            return
        if not await self._store.done(claimed, self._clock()):
            log.warning("callback %s of task %s ran after its lease was lost",
                        claimed.target, claimed.task_id)  # fmt: skip
            return
        log.info(
            "callback %s of task %s (%s) done", claimed.target, claimed.task_id,
            claimed.event.value, extra={"event": "callback_done", "task_id": claimed.task_id},
        )  # fmt: skip

    async def _failed(self, claimed: ClaimedCallback, error: str, *, final: bool = False) -> None:
        config = self.config
        now = self._clock()
        retry_at = None
        if not final and claimed.attempts < config.callback_max_attempts:
            retry_at = now + retry_delay_s(
                claimed.attempts,
                base_delay_s=config.callback_base_delay,
                multiplier=config.retry_backoff_multiplier,
                max_delay_s=config.max_retry_delay,
            )
        log.log(
            logging.INFO if retry_at is not None else logging.WARNING,
            "callback %s of task %s attempt %d failed: %s%s", claimed.target, claimed.task_id,
            claimed.attempts, error, " (will retry)" if retry_at is not None else " (given up)",
            extra={"event": "callback_failed", "task_id": claimed.task_id},
        )  # fmt: skip
        await self._store.failed(claimed, error, now, retry_at)


async def _call(function: Any, arguments: tuple[Any, ...]) -> None:
    if inspect.iscoroutinefunction(function):
        await function(*arguments)
        return
    returned = await asyncio.to_thread(function, *arguments)
    if inspect.isawaitable(returned):
        await returned


async def callback_loop(
    queue: WorkerQueue,
    *,
    stop: asyncio.Event | None = None,
    interval_s: float | None = None,
    clock: Clock | None = None,
) -> None:
    """Run callbacks every ``interval_s`` (default: the config's ``callback_interval``) until
    ``stop`` is set or the coroutine is cancelled. A failed round is logged and tried again;
    an attempt cut short by cancellation runs again after its lease expires."""
    interval = queue.config.callback_interval if interval_s is None else interval_s
    stop = stop or asyncio.Event()
    runner = CallbackRunner(queue, clock=clock)
    while not stop.is_set():
        claimed = 0
        try:
            claimed = await runner.tick()
        except (QueueClosedError, DatabaseLostError):
            raise
        except QueueError:
            log.exception("callback round failed; trying again in %s s", interval)
        if claimed >= CLAIM_BATCH:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def drain_callbacks(
    queue: WorkerQueue,
    *,
    timeout_s: float = DRAIN_TIMEOUT_S,
    stop: asyncio.Event | None = None,
    clock: Clock | None = None,
) -> bool:
    """Run rounds back to back until no callback is due now (a failed one that backed off
    into the future is left for later); no round starts once ``stop`` is set or ``timeout_s``
    has passed. Returns True when nothing due was left; otherwise logs what stopped it."""
    stop = stop or asyncio.Event()
    deadline = time.monotonic() + timeout_s
    runner = CallbackRunner(queue, clock=clock)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            await runner.collect()
            claimed = await runner.run_due()
        except (QueueClosedError, DatabaseLostError):
            raise
        except QueueError:
            log.exception("callback round failed; callbacks still due are left for later")
            return False
        if not claimed and not runner.behind:
            return True
    why = "asked to stop" if stop.is_set() else f"{timeout_s} s passed"
    log.warning("stopped running callbacks (%s); callbacks still due are left for later", why)
    return False
