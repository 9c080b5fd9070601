"""When a worker retires: after a number of tasks, or once its memory passes a limit.

A worker with ``max_tasks`` claims no more than that many tasks in all; one with
``max_memory_bytes`` stops claiming once its resident memory (RSS) is above that, checked
before every claim, so after every task that finished. Either way its running tasks then run
to their end (no grace period: a retirement is no shutdown; a signal still stops the worker
as usual), and :meth:`Worker.run() <worker.Worker.run>` returns with ``Worker.retired`` saying
why. ``wq worker`` then exits with :data:`RETIRED_EXIT_CODE`, which the supervisor of a pool
(:mod:`worker.runtime.pool`) answers with a fresh process at once: a process that leaks memory,
or holds on to memory it freed, is replaced between tasks, and no task is lost or cut short.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.runtime.memory import rss_bytes

#: What a retired ``wq worker`` exits with: EX_TEMPFAIL of sysexits.h ("try again").
RETIRED_EXIT_CODE = 75
MIB = 1 << 20


class Retirement:
    """Counts a worker's claims and reads its memory; :meth:`due` says whether (and why) it
    should stop claiming. ``rss`` reads the resident memory (a fake in tests)."""

    def __init__(
        self,
        max_tasks: int | None = None,
        max_memory_bytes: int | None = None,
        *,
        rss: Callable[[], int] = rss_bytes,
    ) -> None:
        for name, value in (("max_tasks", max_tasks), ("max_memory_bytes", max_memory_bytes)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None: no limit), got {value}")
        self.max_tasks = max_tasks
        self.max_memory_bytes = max_memory_bytes
        self.claimed = 0
        #: Why the worker retires; None until it is due.
        self.reason: str | None = None
        self._rss = rss

    @property
    def enabled(self) -> bool:
        return self.max_tasks is not None or self.max_memory_bytes is not None

    def room(self, free: int) -> int:
        """How many of ``free`` slots the worker may fill: never past ``max_tasks`` in all."""
        if self.max_tasks is None:
            return free
        return max(0, min(free, self.max_tasks - self.claimed))

    def took(self, count: int) -> None:
        """The worker claimed ``count`` more tasks."""
        self.claimed += count

    def due(self) -> str | None:
        """The reason to retire now, if there is one (it stays once given)."""
        if self.reason is not None:
            return self.reason
        if self.max_tasks is not None and self.claimed >= self.max_tasks:
            self.reason = f"it claimed {self.claimed} tasks, its limit (max tasks)"
        elif self.max_memory_bytes is not None:
            used = self._rss()
            if used > self.max_memory_bytes:
                self.reason = (
                    f"its memory ({used / MIB:.0f} MiB resident) is above its limit of "
                    f"{self.max_memory_bytes / MIB:.0f} MiB"
                )
        return self.reason
