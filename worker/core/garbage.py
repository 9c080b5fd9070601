"""Building a large batch without the cyclic garbage collector's passes.

A bulk enqueue makes hundreds of thousands of small objects (tasks, items, rows), none of
them part of a reference cycle, so reference counting frees whatever is dropped and every
collection pass finds nothing. The passes still cost: the collector runs every 700 new
container objects, and each full pass walks every object alive in the process, which the
batch itself keeps growing. Building 50,000 tasks here spent half its time in them.

:func:`paused_collection` turns automatic collection off for such a block (synchronous code,
no ``await`` inside: nothing else of this thread runs meanwhile) and back on after it, unless
it was off already. It is process-wide: another thread allocating meanwhile is not collected
either, for the few tens of milliseconds a block lasts.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_collection() -> Iterator[None]:
    """Automatic garbage collection off for the block (if it was on)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
