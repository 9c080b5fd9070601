"""A worker process's liveness: its row in the worker registry, renewed every few seconds.

A :class:`~worker.runtime.workers.Worker` registers when it starts, beats every
``heartbeat_interval`` seconds while it runs, and records that it stopped when it ends. Each
beat is one write (``workers.heartbeat_at``) that, in the same transaction, reads back which
of the worker's running claims were lost or asked to stop. The sweep treats a worker whose
last beat is older than ``worker_dead_after`` as dead and gives its running tasks back at
once (see :mod:`worker.storage.sweep`), so a killed worker's tasks run again within seconds,
whatever their visibility timeout. A worker that was only frozen finds, at its next beat, that its
claims were lost, and stops their handlers; its late acknowledgements are refused (fencing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.queue.worker_queue import WorkerQueue
    from worker.storage.control import LeaseReport

log = logging.getLogger(__name__)


class Liveness:
    """One worker's registry entry: :meth:`register`, then :meth:`beat`, then :meth:`stopped`."""

    def __init__(self, queue: WorkerQueue, info: Mapping[str, Any]) -> None:
        self.queue = queue
        self.worker_id = str(info["id"])
        self._info = dict(info)

    async def register(self) -> None:
        await self.queue.register_worker(self._info)

    async def beat(self, leases: Sequence[tuple[str, str]]) -> LeaseReport:
        """Record the worker alive; report which of its running ``leases`` were lost or
        asked to stop."""
        report = await self.queue.worker_alive(self.worker_id, leases)
        if report is None:
            log.warning(
                "worker %s was no longer registered (silent for a long time?); registering again",
                self.worker_id,
            )
            await self.register()
            report = await self.queue.lease_report(leases)
        return report

    async def stopped(self) -> None:
        """Record that the worker stopped: the sweep gives back anything it still held."""
        await self.queue.worker_heartbeat(self.worker_id, stopped=True)
