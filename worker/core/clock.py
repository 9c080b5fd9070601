"""The clock a queue decides with: this machine's, or the database server's.

Leases, schedules, the sweep and webhook backoff all compare times that different processes
wrote. On one machine (SQLite) they share a clock. Machines sharing a PostgreSQL database
may not: a worker whose clock runs 30 s ahead would expire live leases, and one 30 s behind
would keep a dead worker's tasks for 30 s more. :class:`DatabaseClock` reads this machine's
clock corrected by its offset from the server's, measured when the queue opens and again
every :data:`REMEASURE_S` (the measurement with the shortest round trip of a few is kept, so
the offset is good to within half a round trip), so every machine reads the server's time
without a round trip per statement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: How often the offset is measured again (clocks drift; NTP steps them).
REMEASURE_S = 60.0
#: Round trips per measurement; the shortest one's reading is kept.
SAMPLES = 3


class DatabaseClock:
    """``local()`` plus the database server's offset from it (see the module docstring)."""

    def __init__(
        self, server_time: Callable[[], Awaitable[float]], local: Clock | None = None
    ) -> None:
        self._server_time = server_time
        # time.time looked up at each call: what the machine's clock says now.
        self._local: Clock = local or (lambda: time.time())  # noqa: PLW0108
        self.offset = 0.0
        self._measured_at: float | None = None
        self._remeasuring: asyncio.Task[None] | None = None

    def __call__(self) -> float:
        now = self._local()
        if self._measured_at is not None and now - self._measured_at > REMEASURE_S:
            self._remeasure_soon()
        return now + self.offset

    async def measure(self) -> float:
        """Measure the offset now (a few round trips); returns it."""
        best: tuple[float, float] | None = None
        for _ in range(SAMPLES):
            sent = self._local()
            server = await self._server_time()
            back = self._local()
            trip = back - sent
            if best is None or trip < best[0]:
                best = (trip, server - (sent + back) / 2)
        assert best is not None
        self.offset = best[1]
        self._measured_at = self._local()
        if abs(self.offset) > 1.0:
            log.warning(
                "this machine's clock is %+.3f s off the database server's: the queue uses "
                "the server's time",
                -self.offset,
            )
        return self.offset

    def _remeasure_soon(self) -> None:
        if self._remeasuring is not None and not self._remeasuring.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: the next call will do it
            return
        self._measured_at = self._local()  # one attempt per interval, even if it fails
        self._remeasuring = loop.create_task(self._remeasure())

    async def _remeasure(self) -> None:
        try:
            await self.measure()
        except Exception:
            log.warning("measuring the database server's clock failed; keeping the offset "
                        "%+.3f s", self.offset, exc_info=True)  # fmt: skip

    async def close(self) -> None:
        task, self._remeasuring = self._remeasuring, None
        if task is not None and not task.done():
            task.cancel()
            # Its own cancellation is expected; ours (while waiting) still propagates.
            await asyncio.gather(task, return_exceptions=True)
