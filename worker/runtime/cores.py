"""How many threads one task may use for CPU work: a hint ``wq worker`` gives its handlers.

Libraries that compute on CPU (ONNX Runtime under the speech engines, BLAS, OpenMP) start a
thread per core by default. A worker runs ``concurrency`` tasks at once in each of its
processes, so those defaults crowd the cores: with two processes on two cores, four threads
of synthesis ran slower than one process alone. ``wq worker`` shares the usable cores out
over its processes and their concurrency and exports the share as ``QUEUE_TASK_THREADS``
(a setting a user may give instead); a handler reads it with :func:`task_threads_hint`.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: The variable that carries the hint to handlers (``QueueConfig.task_threads``).
TASK_THREADS_VARIABLE = "QUEUE_TASK_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def task_threads(processes: int, concurrency: int) -> int:
    """The usable cores shared out over ``processes`` x ``concurrency`` tasks, at least 1."""
    return max(1, usable_cores() // (processes * concurrency))


def export_task_threads(threads: int) -> None:
    """Give this process's handlers (and the worker processes it starts) the hint."""
    os.environ[TASK_THREADS_VARIABLE] = str(threads)
    log.debug("%s=%d", TASK_THREADS_VARIABLE, threads)


def task_threads_hint() -> int | None:
    """The threads one task may use, as ``wq worker`` (or the user) set them; None outside a
    worker that set it."""
    value = os.environ.get(TASK_THREADS_VARIABLE)
    if value is None:
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        log.warning("ignoring %s=%r: not a whole number above 0", TASK_THREADS_VARIABLE, value)
        return None
    return threads
