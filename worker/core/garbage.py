"""Building and writing a large batch without the cyclic garbage collector's passes.

A bulk enqueue makes hundreds of thousands of small objects (tasks, items, rows), none of
them part of a reference cycle, so reference counting frees whatever is dropped and every
collection pass finds nothing. The passes still cost: the collector runs every 700 new
container objects, and each full pass walks every object alive in the process, which the
batch itself keeps growing. Building 50,000 tasks here spent half its time in them, and a
``submit_many`` whose tasks were built in slices beside its insert, each slice paused on its
own, spent a quarter of its call in them (0.63 s against 0.47 s with the collector off
throughout, on the 2-core machine): between two slices the insert's thread allocated, and
each pass it started walked all the slices had built.

:func:`paused_collection` turns automatic collection off for a block of synchronous code and
back on after the last such block still open ends, unless it was off before the first began.
Blocks may overlap, in any order, across threads (the insert's slices run in one while their
own blocks open and close inside it). It is process-wide: other threads allocating meanwhile
are not collected either, for the few tens of milliseconds a block lasts; reference counting
still frees all but cycles, which the next pass collects.

A block must not span an ``await``: a coroutine suspended in one and never resumed (its loop
closed under it) would be freed only by the collector it keeps off, which would stay off.
"""

from __future__ import annotations

import gc
import os
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
            self._open += 1  # counted first: an interrupt after it leaves a block end() closes
            if self._open == 1:
                self._turned_off = gc.isenabled()
                gc.disable()

    def end(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0 and self._turned_off:
                self._turned_off = False
                gc.enable()

    def after_fork(self) -> None:
        """In a child forked while a block was open (or the lock held): no block is open
        there, so the collector is as it was before the first one."""
        self._lock = threading.Lock()
        if self._open and self._turned_off:
            gc.enable()
        self._open = 0
        self._turned_off = False


_PAUSES = _Pauses()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_PAUSES.after_fork)


@contextmanager
def paused_collection() -> Iterator[None]:
    """Automatic garbage collection off for the block (see the module docstring)."""
    _PAUSES.begin()
    try:
        yield
    finally:
        _PAUSES.end()
