"""A worker process in a pool: it takes its supervisor's orders from a control pipe.

The supervisor (:mod:`worker.runtime.pool`) writes one order per line: ``stop`` (no new tasks;
running ones finish within the grace, as on a first SIGTERM) or ``force`` (stop them now, as
on a second). The pipe's end of file means the supervisor is gone, however it ended (even
``SIGKILL``): the worker then stops as on ``stop``, so a pool never leaves orphans behind. A
``stop`` that finds the worker stopping already (the process manager signalled it too) changes
nothing, where a second signal would force it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat

from worker.runtime.pool import FORCE, STOP
from worker.runtime.workers import Worker

log = logging.getLogger(__name__)


async def follow_supervisor(control_fd: int, worker: Worker) -> None:
    """Read the orders on ``control_fd`` and stop ``worker`` as they say, until the pipe
    ends (or this is cancelled). The descriptor is closed at the end. A descriptor that is no
    pipe stops the worker: a child that cannot hear its supervisor must not run on."""
    try:
        if not stat.S_ISFIFO(os.fstat(control_fd).st_mode):
            raise OSError(f"descriptor {control_fd} is no pipe")
    except OSError as exc:
        log.error("cannot read the supervisor's pipe: %s; stopping", exc)
        worker.request_stop()
        return
    reader = asyncio.StreamReader()
    pipe = os.fdopen(control_fd, "rb", buffering=0)
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
    except BaseException:
        pipe.close()
        raise
    try:
        while True:
            order = await reader.readline()
            if order == FORCE:
                log.warning("the supervisor asks to stop now")
                worker.request_stop(force=True)
            elif order in (STOP, b""):
                if not worker.stopping:
                    why = "the supervisor asks to stop" if order else "the supervisor is gone"
                    log.warning("%s: no new tasks; running ones get %s s to finish", why,
                                worker.queue.config.shutdown_grace)  # fmt: skip
                    worker.request_stop()
                if not order:
                    return
            else:
                log.warning("ignoring an unknown order from the supervisor: %r", order)
    finally:
        transport.close()
