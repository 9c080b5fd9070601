"""What this web process did, as Prometheus counters (in the app's own registry, so two
apps in one process count apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class Counters:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.submitted = Counter(
            "worker_queue_web_tasks_submitted",
            "Tasks submitted through this web process's API.",
            ["queue"],
            registry=self.registry,
        )
        self.actions = Counter(
            "worker_queue_web_actions",
            "Task actions (cancel, resume, hold, release, run_now) this web process made.",
            ["action"],
            registry=self.registry,
        )
        self.scrapes = Counter(
            "worker_queue_web_scrapes",
            "Scrapes of /metrics this web process answered.",
            registry=self.registry,
        )
