"""Building and writing a large batch without the cyclic garbage collector's passes.

A bulk enqueue makes hundreds of thousands of small objects (tasks, items, rows), none of
them part of a reference cycle, so reference counting frees whatever is dropped and every
collection pass finds nothing. The passes still cost: the collector runs every 700 new
container objects, and each full pass walks every object alive in the process, which the
batch itself keeps growing. Building 50,000 tasks here spent half its time in them, and a
``submit_many`` that paused them only while it built (on again around its insert, as its
tasks were built in slices beside it) spent a quarter of its time in them (0.63 s against
0.47 s on the 2-core machine, ``bench/bench_producers.py``).

:func:`paused_collection` turns automatic collection off for a block and back on after the
last such block still open ends, unless it was off before the first began. Blocks may span
``await``s and overlap, in any order, across coroutines and threads: the collector is on
again once none is open. It is process-wide: other code allocating meanwhile is not
collected either, for as long as the blocks last (a bulk call's fraction of a second);
reference counting still frees all but cycles, which the next pass after it collects.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """The blocks open now, and whether the first one turned the collector off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._turned_off = False

    def begin(self) -> None:
        with self._lock:
            if self._open == 0:
                self._turned_off = gc.isenabled()
                if self._turned_off:
                    gc.disable()
            self._open += 1

    def end(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0 and self._turned_off:
                self._turned_off = False
                gc.enable()


_PAUSES = _Pauses()


@contextmanager
def paused_collection() -> Iterator[None]:
    """Automatic garbage collection off for the block (see the module docstring)."""
    _PAUSES.begin()
    try:
        yield
    finally:
        _PAUSES.end()
