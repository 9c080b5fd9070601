"""Acknowledgements in batches: outcomes are buffered and written a few ms later, together.

Completions go out with one ``complete_many``, failures with one ``retry_many``; discards,
cancels and releases are rarer and go one statement each (releases in one). :meth:`close`
flushes everything: no outcome is lost at shutdown. Events fire, and one log line per task is
written (completions at DEBUG; retries, discards and cancels above it, with the task's id,
kind, attempt and error as ``extra`` fields for structured logs), once a write is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from worker.core import observers
from worker.core.errors import DatabaseLostError, InvalidStateTransitionError, QueueError
from worker.core.kinds import task_kinds
from worker.core.models import Completion, Failure, Task
from worker.queue.worker_queue import WorkerQueue
from worker.runtime.events import EventBus
from worker.runtime.execute import Outcome

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.005
MAX_BATCH = 100
#: After a failed write, wait this long before trying again.
RETRY_AFTER_S = 0.5
CLOSE_ATTEMPTS = 5

CANCELLED_REASON = "cancelled while running"


@dataclass
class _Batch:
    complete: list[tuple[Task, Outcome]] = field(default_factory=list)
    retry: list[tuple[Task, Outcome]] = field(default_factory=list)
    discard: list[tuple[Task, Outcome]] = field(default_factory=list)
    cancel: list[Task] = field(default_factory=list)
    release: list[Task] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(
            len(part)
            for part in (self.complete, self.retry, self.discard, self.cancel, self.release)
        )

    def tasks(self) -> list[Task]:
        """Every task an outcome here is for, in the order the outcomes were added per part."""
        return [
            *(task for task, _ in (*self.complete, *self.retry, *self.discard)),
            *self.cancel,
            *self.release,
        ]

    def merge(self, other: _Batch) -> None:
        self.complete[:0] = other.complete
        self.retry[:0] = other.retry
        self.discard[:0] = other.discard
        self.cancel[:0] = other.cancel
        self.release[:0] = other.release


class AckBuffer:
    def __init__(
        self,
        queue: WorkerQueue,
        events: EventBus,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._queue = queue
        self._events = events
        self._interval = flush_interval_s
        self._max = max_batch
        self._batch = _Batch()
        self._waiting = asyncio.Event()
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self.counts: dict[str, int] = dict.fromkeys(
            ("completed", "retried", "discarded", "cancelled", "released", "refused"), 0
        )

    # -- adding (sync: called from task done-callbacks) ------------------------------------

    def outcome(self, task: Task, outcome: Outcome) -> None:
        getattr(self._batch, outcome.verdict).append((task, outcome))
        self._added()

    def cancelled(self, task: Task) -> None:
        self._batch.cancel.append(task)
        self._added()

    def released(self, task: Task) -> None:
        self._batch.release.append(task)
        self._added()

    def _added(self) -> None:
        self._waiting.set()
        if not self._full.is_set() and len(self._batch) >= self._max:
            self._full.set()

    # -- writing ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush every few ms while there is something to write (until cancelled)."""
        while True:
            await self._waiting.wait()
            if len(self._batch) < self._max:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._interval)
            try:
                await self.flush()
            except DatabaseLostError:
                return  # the loop stops on it (see Loop._stop_when_lost)
            except QueueError:
                log.exception("writing acknowledgements failed; trying again")
                await asyncio.sleep(RETRY_AFTER_S)

    async def close(self) -> None:
        """Write everything still buffered (a few attempts when the database fails)."""
        for number in range(1, CLOSE_ATTEMPTS + 1):
            try:
                await self.flush()
            except DatabaseLostError:
                break  # nothing will be written again
            except QueueError:
                log.exception("writing acknowledgements at shutdown failed (%d)", number)
                await asyncio.sleep(RETRY_AFTER_S)
            else:
                return
        ids = [t.id for t, _ in self._batch.complete + self._batch.retry + self._batch.discard]
        log.error("acknowledgements lost at shutdown (the leases will expire): %s", ids)

    async def flush(self) -> None:
        async with self._lock:
            batch, self._batch = self._batch, _Batch()
            self._waiting.clear()
            self._full.clear()
            if not batch:
                return
            self._drop_superseded(batch)
            write = asyncio.ensure_future(self._write(batch))
            try:
                await asyncio.shield(write)
            except BaseException:
                try:
                    if not write.done():
                        # Cancelled (the worker stopping) while the write runs: its
                        # transaction may have committed already. Let it end, so that
                        # what it wrote (each part is emptied once written) is not
                        # merged back and written a second time, then refused.
                        await asyncio.wait([write])
                        if not write.cancelled() and (error := write.exception()) is not None:
                            log.error("writing acknowledgements failed while stopping: %s", error)
                finally:
                    self._batch.merge(batch)
                    self._waiting.set()
                raise

    def _drop_superseded(self, batch: _Batch) -> None:
        """Of two outcomes for one task (a run whose claim was lost, and the run of the later
        claim that took it, both by this worker), only the later claim's is written: the
        earlier lease is gone, and one ack per task keeps each refusal its own."""
        latest: dict[str, Task] = {}
        for task in batch.tasks():
            current = latest.get(task.id)
            if current is None or task.attempt_count >= current.attempt_count:
                latest[task.id] = task
        if len(latest) == len(batch):
            return
        for part in (batch.complete, batch.retry, batch.discard):
            stale = [entry for entry in part if latest[entry[0].id] is not entry[0]]
            part[:] = [entry for entry in part if latest[entry[0].id] is entry[0]]
            for task, _ in stale:
                self._refused(task, None)
        for tasks in (batch.cancel, batch.release):
            stale_tasks = [task for task in tasks if latest[task.id] is not task]
            tasks[:] = [task for task in tasks if latest[task.id] is task]
            for task in stale_tasks:
                self._refused(task, None)

    async def _write(self, batch: _Batch) -> None:
        # Each part is emptied once written, so a failure later re-queues only the rest.
        if batch.complete:
            refused = await self._queue.complete_many(
                [Completion(t.id, t.lease_id, o.results, o.progress) for t, o in batch.complete]
            )
            self._report(batch.complete, refused, "task_completed", "completed")
            batch.complete.clear()
        if batch.retry:
            refused = await self._queue.retry_many(
                [Failure(t.id, o.error or "failed", t.lease_id, o.delay_s) for t, o in batch.retry]
            )
            self._report(batch.retry, refused, "task_retry", "retried")
            batch.retry.clear()
        while batch.discard:
            task, outcome = batch.discard[0]
            try:
                await self._queue.mark_as_discarded(task.id, outcome.error, lease_id=task.lease_id)
            except InvalidStateTransitionError as exc:
                self._refused(task, exc)
            else:
                self.counts["discarded"] += 1
                self._log(logging.ERROR, "task_discarded", "discarded", task, outcome.error)
                self._events.emit("task_failed", task, error=outcome.error)
            batch.discard.pop(0)
        while batch.cancel:
            task = batch.cancel[0]
            try:
                await self._queue.mark_as_cancelled(
                    task.id, lease_id=task.lease_id, reason=CANCELLED_REASON
                )
            except InvalidStateTransitionError as exc:
                self._refused(task, exc)
            else:
                self.counts["cancelled"] += 1
                self._log(logging.WARNING, "task_cancelled", "cancelled", task, CANCELLED_REASON)
                self._events.emit("task_cancelled", task, error=CANCELLED_REASON)
            batch.cancel.pop(0)
        if batch.release:
            released = await self._queue.release(
                [(t.id, t.lease_id) for t in batch.release if t.lease_id is not None]
            )
            self.counts["released"] += len(released)
            missed = {t.id for t in batch.release} - set(released)
            if missed:
                log.warning("could not release tasks (leases lost): %s", sorted(missed))
            batch.release.clear()

    def _report(
        self, done: list[tuple[Task, Outcome]], refused: list[str], event: str, count: str
    ) -> None:
        lost = set(refused)
        for task, outcome in done:
            if task.id in lost:
                self._refused(task, None)
                continue
            self.counts[count] += 1
            if count == "retried":
                limit = task.max_attempts or self._queue.config.default_max_attempts
                last = task.attempt_count >= limit
                self._log(
                    logging.WARNING, "task_retry",
                    "failed, no attempts left" if last else "failed, retrying", task,
                    outcome.error, delay_s=None if last else outcome.delay_s,
                )  # fmt: skip
            elif log.isEnabledFor(logging.DEBUG):
                self._log(logging.DEBUG, "task_completed", "completed", task, None)
            self._events.emit(
                event, task, results=outcome.results, error=outcome.error, delay_s=outcome.delay_s
            )

    def _log(
        self,
        level: int,
        event: str,
        what: str,
        task: Task,
        error: str | None,
        *,
        delay_s: float | None = None,
    ) -> None:
        """One line about one task's outcome: ``task ID (kind) attempt N/M what: error``."""
        limit = task.max_attempts or self._queue.config.default_max_attempts
        kind = task_kinds(task)
        when = "" if delay_s is None else f" in {delay_s:g} s"
        extra: dict[str, Any] = {
            "event": event,
            "task_id": task.id,
            "kind": kind,
            "queue": task.queue,
            "attempt": task.attempt_count,
            "max_attempts": limit,
            "error": error,
            "delay_s": delay_s,
        }
        detail = f": {error}" if error else ""
        log.log(
            level,
            "task %s (%s) attempt %d/%d %s%s%s",
            task.id, kind, task.attempt_count, limit, what, when, detail,
            extra=extra,
        )  # fmt: skip

    def _refused(self, task: Task, exc: Exception | None) -> None:
        self.counts["refused"] += 1
        observers.refused(task)
        log.warning(
            "outcome of task %s dropped: its lease %s was lost%s",
            task.id, task.lease_id, f" ({exc})" if exc else "",
        )  # fmt: skip
