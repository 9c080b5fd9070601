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
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: The variable that carries the hint to handlers (``QueueConfig.task_threads``).
TASK_THREADS_VARIABLE = "QUEUE_TASK_THREADS"


def usable_cores() -> int:
    """The cores this process may use: those it may run on (its CPU affinity, where the
    system tells), fewer under a CPU quota (a container's CPU limit, from its cgroup)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_limit(
    root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPUs this process's cgroup may use in each period (``cpu.max`` in cgroup v2,
    ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` in v1); None without a limit, or off
    Linux. Docker's ``--cpus`` and Kubernetes' CPU limits set it."""
    try:
        groups = membership.read_text().splitlines()
    except OSError:
        return None
    paths = {}
    for line in groups:  # "0::/path" (v2), "4:cpu,cpuacct:/path" (v1)
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path.lstrip("/")
    try:
        if "cpu" in paths:
            folder = next(
                (root / name / paths["cpu"] for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu")
                 if (root / name).is_dir()),
                None,
            )  # fmt: skip
            if folder is not None:
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                period = int((folder / "cpu.cfs_period_us").read_text())
                return quota / period if quota > 0 and period > 0 else None
        if "" in paths:
            quota_text, period_text = (root / paths[""] / "cpu.max").read_text().split()
            if quota_text == "max" or int(period_text) <= 0:
                return None
            return int(quota_text) / int(period_text)
    except (OSError, ValueError) as exc:
        log.debug("no CPU quota read from the cgroup: %s", exc)
    return None


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
