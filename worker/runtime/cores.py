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
    """The CPUs this process's cgroup may use in each period: the lowest limit on the way
    from its cgroup up to the root (``cpu.max`` in cgroup v2; ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us`` in v1); None without a limit, or off Linux. Docker's ``--cpus``
    and Kubernetes' CPU limits set it. Inside a container whose cgroup is not its own
    namespace, the path named in ``membership`` is not under the mount, whose top then holds
    the container's limit: it is read too."""
    try:
        paths = _cgroup_paths(membership.read_text())
        limits = []
        if "cpu" in paths:  # v1: the cpu controller, mounted alone or with cpuacct
            mounts = [root / name for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
            for mount in (m for m in mounts if m.is_dir()):
                limits += [_v1_limit(folder) for folder in _up_from(mount, paths["cpu"])]
                break
        elif "" in paths:  # v2: one hierarchy
            limits += [_v2_limit(folder) for folder in _up_from(root, paths[""])]
    except (OSError, ValueError) as exc:
        log.debug("no CPU quota read from the cgroup: %s", exc)
        return None
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _cgroup_paths(text: str) -> dict[str, str]:
    """Each controller's cgroup path, from ``/proc/self/cgroup`` (``""``: cgroup v2)."""
    paths = {}
    for line in text.splitlines():  # "0::/path" (v2), "4:cpu,cpuacct:/path" (v1)
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2].strip().lstrip("/")
    return paths


def _up_from(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and each one above it, up to the mount's top."""
    folders = [mount]
    for part in Path(path).parts:
        folders.append(folders[-1] / part)
    return folders[::-1]


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except FileNotFoundError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except FileNotFoundError:
        return None
    return None if quota == "max" or int(period) <= 0 else int(quota) / int(period)


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
