"""A worker process's own Prometheus metrics (``wq worker --metrics-port``): what this
process enqueued, started, finished, retried; the acknowledgements it had refused (fenced,
their lease gone); the lease expiries its sweep found; queue-wait and processing-time
histograms; webhook deliveries by outcome.

``prometheus_client`` comes with the ``web`` extra: this module is imported only when a
metrics port is asked for (:func:`load` names the extra when it is missing). Counts come
from the worker's events (:mod:`worker.runtime.events`) and the process observers
(:mod:`worker.core.observers`); labels are queue, kind and outcome, never a task id or an
attempt number. Figures that come from the database are the web app's ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from worker.core import observers
from worker.core.errors import InvalidInputError
from worker.core.kinds import task_kinds
from worker.core.models import Task

if TYPE_CHECKING:
    from worker.runtime.events import TaskEvent
    from worker.runtime.workers import Worker

#: Histogram buckets (seconds) for queue wait and processing time: 5 ms to 1 hour.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

#: Every metric family this module exports (names as exposed, without suffixes).
NAMES = (
    "worker_queue_worker_tasks_enqueued",
    "worker_queue_worker_tasks_started",
    "worker_queue_worker_tasks_finished",
    "worker_queue_worker_tasks_retried",
    "worker_queue_worker_lease_expiries",
    "worker_queue_worker_acks_refused",
    "worker_queue_worker_queue_wait_seconds",
    "worker_queue_worker_processing_seconds",
    "worker_queue_worker_webhook_deliveries",
)

_OUTCOMES = {
    "task_completed": "completed",
    "task_retry": "failed",
    "task_failed": "discarded",
    "task_cancelled": "cancelled",
}


class MetricsMissingError(InvalidInputError):
    """prometheus-client is not installed."""


def load() -> Any:
    """The ``prometheus_client`` module, or a clear error naming the extra."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise MetricsMissingError(
            "--metrics-port needs prometheus-client: pip install 'worker-queue[web]'"
        ) from exc
    return prometheus_client


class ProcessMetrics:
    """The families in one registry, fed by a worker's events and the process observers."""

    def __init__(self, clock: Any = time.time) -> None:
        client = load()
        self.client = client
        self.registry = client.CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._default_max_attempts = 1
        r = self.registry
        qk = ["queue", "kind"]
        self.enqueued_count = client.Counter(
            NAMES[0], "Tasks this process enqueued (new ones only).", qk, registry=r
        )
        self.started = client.Counter(NAMES[1], "Attempts this process started.", qk, registry=r)
        self.finished = client.Counter(
            NAMES[2],
            "Attempts this process finished, by outcome (completed, failed: to be retried, "
            "discarded, cancelled).",
            [*qk, "outcome"],
            registry=r,
        )
        self.retried = client.Counter(
            NAMES[3], "Failed attempts this process left to be retried.", qk, registry=r
        )
        self.expired = client.Counter(
            NAMES[4], "Attempts this process's sweep ended for an expired lease.", qk, registry=r
        )
        self.refused_count = client.Counter(
            NAMES[5],
            "Acknowledgements of this process refused because the lease had gone (fenced).",
            qk,
            registry=r,
        )
        self.wait = client.Histogram(
            NAMES[6],
            "From a task being due to this process claiming it.",
            ["queue"],
            buckets=BUCKETS,
            registry=r,
        )
        self.processing = client.Histogram(
            NAMES[7],
            "From the claim to the outcome of each attempt this process ran.",
            qk,
            buckets=BUCKETS,
            registry=r,
        )
        self.webhooks = client.Counter(
            NAMES[8],
            "Webhook delivery attempts of this process, by outcome (delivered, failed, given_up).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("delivered", "failed", "given_up"):
            self.webhooks.labels(outcome)

    # -- the worker's events ---------------------------------------------------------------

    def attach(self, worker: Worker) -> None:
        self._default_max_attempts = worker.queue.config.default_max_attempts
        worker.register_callback("task_started", self._started)
        for event in _OUTCOMES:
            worker.register_callback(event, self._finished)
        observers.add(self)

    def detach(self) -> None:
        observers.remove(self)

    def _started(self, event: TaskEvent) -> None:
        task = event.task
        self.started.labels(task.queue, task_kinds(task)).inc()
        if task.started_at is not None:
            self.wait.labels(task.queue).observe(max(task.started_at - task.schedule_at, 0.0))

    def _finished(self, event: TaskEvent) -> None:
        task = event.task
        kind = task_kinds(task)
        outcome = _OUTCOMES[event.name]
        limit = task.max_attempts or self._default_max_attempts
        if outcome == "failed" and task.attempt_count >= limit:
            outcome = "discarded"  # its last attempt: the sweep discards it
        self.finished.labels(task.queue, kind, outcome).inc()
        if outcome == "failed":
            self.retried.labels(task.queue, kind).inc()
        if task.started_at is not None:
            taken = max(self._clock() - task.started_at, 0.0)
            self.processing.labels(task.queue, kind).observe(taken)

    # -- observers -------------------------------------------------------------------------

    def enqueued(self, tasks: Sequence[Task], inserted: int) -> None:
        if inserted == len(tasks):
            for task in tasks:
                self.enqueued_count.labels(task.queue, task_kinds(task)).inc()
        elif inserted and tasks:  # some were idempotent duplicates: which ones is unknown
            self.enqueued_count.labels(tasks[0].queue, "unknown").inc(inserted)

    def refused(self, task: Task) -> None:
        self.refused_count.labels(task.queue, task_kinds(task)).inc()

    def lease_expired(self, task: Task) -> None:
        self.expired.labels(task.queue, task_kinds(task)).inc()

    def webhook(self, outcome: str) -> None:
        self.webhooks.labels(outcome).inc()

    def unloadable(self, task_id: str, worker_id: str | None) -> None:
        # No attempt ran, and the row's queue and kind are what could not be read: the
        # claim's log line and the task's error say it (not a finished attempt).
        return

    def serve(self, port: int) -> Any:
        """Serve the registry on 127.0.0.1:``port`` (a thread); returns the server."""
        server, _thread = self.client.start_http_server(port, "127.0.0.1", registry=self.registry)
        return server
