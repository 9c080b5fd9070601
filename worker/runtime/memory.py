"""Memory awareness: fewer concurrent tasks while the machine runs short of memory, and this
process's own resident memory (:func:`rss_bytes`, for the worker's memory limit).

:func:`used_fraction` and :func:`adjust` are pure; :class:`MemoryGovernor` reads
``/proc/meminfo`` (Linux) at most once per ``check_interval_s``.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MEMINFO = Path("/proc/meminfo")
STATM = Path("/proc/self/statm")
#: Pressure must fall this far below the threshold before concurrency goes back up.
HYSTERESIS = 0.05


class MemoryInfoError(RuntimeError):
    """Memory use cannot be read (not Linux, or an unexpected /proc/meminfo)."""


def _fields(meminfo: str) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields


def total_bytes(meminfo: str) -> int:
    """The machine's memory, from /proc/meminfo text (kB there)."""
    total = _fields(meminfo).get("MemTotal")
    if not total:
        raise MemoryInfoError("/proc/meminfo has no MemTotal line")
    return total * 1024


def used_fraction(meminfo: str) -> float:
    """Fraction of memory in use, ``1 - MemAvailable / MemTotal``, from /proc/meminfo text."""
    fields = _fields(meminfo)
    total = fields.get("MemTotal")
    available = fields.get("MemAvailable")
    if not total or available is None:
        raise MemoryInfoError("/proc/meminfo has no MemTotal and MemAvailable lines")
    return min(1.0, max(0.0, 1.0 - available / total))


def adjust(current: int, base: int, fraction: float, threshold: float) -> int:
    """The concurrency to use at memory use ``fraction``: halve above the threshold (min 1),
    double back (up to ``base``) once use is clearly below it."""
    if fraction > threshold:
        return max(1, current // 2)
    if fraction < threshold - HYSTERESIS:
        return min(base, current * 2)
    return current


def resident_bytes(statm: str, page_size: int) -> int:
    """Resident memory from /proc/self/statm text (its second field counts pages)."""
    fields = statm.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise MemoryInfoError(f"unexpected /proc/self/statm: {statm[:80]!r}")
    return int(fields[1]) * page_size


def rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak so far (getrusage)."""
    try:
        return resident_bytes(STATM.read_text(), os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, MemoryInfoError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB elsewhere


def read_meminfo() -> str:
    try:
        return MEMINFO.read_text()
    except OSError as exc:
        raise MemoryInfoError(
            f"memory awareness reads {MEMINFO}, which only Linux has ({exc}); "
            "set QUEUE_MEMORY_THRESHOLD=1 to turn it off"
        ) from exc


class MemoryGovernor:
    """The concurrency limit a worker may use now, given memory pressure."""

    def __init__(
        self,
        base: int,
        threshold: float,
        *,
        read: Callable[[], str] = read_meminfo,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.limit = base
        self.threshold = threshold
        self._read = read
        self._interval = check_interval_s
        self._clock = clock
        self._next_check = clock()
        self._enabled = threshold < 1.0

    def current(self) -> int:
        """The limit, re-read from memory use when the last check is old enough."""
        if not self._enabled or self._clock() < self._next_check:
            return self.limit
        self._next_check = self._clock() + self._interval
        try:
            fraction = used_fraction(self._read())
        except MemoryInfoError as exc:
            log.warning("memory awareness is off: %s", exc)
            self._enabled = False
            return self.limit
        wanted = adjust(self.limit, self.base, fraction, self.threshold)
        if wanted < self.limit:
            log.warning(
                "memory use %.0f%% is above %.0f%%: concurrency %d -> %d",
                fraction * 100, self.threshold * 100, self.limit, wanted,
            )  # fmt: skip
        elif wanted > self.limit:
            log.info("memory use %.0f%%: concurrency %d -> %d", fraction * 100, self.limit, wanted)
        self.limit = wanted
        return wanted
