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

When the last block ends, what the blocks made is still in the youngest generation, and the
first allocation after it would start a pass that walks all of it: 40 to 60 ms of a
``submit_many`` of 50,000, whose returned tasks are 450,000 tracked objects. So, when the
blocks made at least :data:`PROMOTE_AT` of them, they are moved to the oldest generation
unwalked instead (``gc.freeze()`` then ``gc.unfreeze()``, two list splices), as if they had
survived the young passes, which they would have. A garbage cycle among them (the
program's other threads, or the caller, may make some while a block is open) then waits for
the next full pass, and the collector counts the objects that lead to one as they leave
the young passes, which these skip: so once :data:`PROMOTE_BUDGET` objects have been moved
since the last full pass, the block that would pass it runs one instead (``gc.collect()``,
after the blocks' lock is let go: a finalizer it runs may open a block). What cycles the
moves keep alive is bounded by that budget, whatever the rest of the program does. Nothing
is moved while the program holds objects frozen of its own (``gc.get_freeze_count()``),
which ``gc.unfreeze()`` would let go; and a thread of its own that freezes objects between
the two calls would have them let go, the one race this leaves. Counting them walks them
all (Python 3.11 keeps no count), 10 ms for 150,000, so once some are seen frozen the count
is taken again only :data:`FROZEN_RECHECK_S` later: taken at every run of a batch it had
made a program that froze its start-up objects build tasks three times as slowly.

A block must not span an ``await``: a coroutine suspended in one and never resumed (its loop
closed under it) would be freed only by the collector it keeps off, which would stay off.

The tasks a program builds itself before it enqueues them, ``[Task(items=[TaskItem(...)])
for ...]``, are outside any block, and there the passes cost most: each task is 12 tracked
objects, all kept, and the full passes their growth starts walk the whole batch again and
again (seven of them over 50,000 tasks, 0.7 s: two thirds of the building, on the 2-core
machine). So every task built counts (:func:`task_built`, from the model's
``model_post_init``), and when :data:`BATCH_RUN` of them were built within
:data:`BATCH_WINDOW_S`, a batch is being built: what is young is moved to the oldest
generation as above, under the same budget, unless a block is open or the collector is off.
A program that builds a task now and then is left to the collector as it is. The count is
the process's, and so is what is moved: other threads' young objects go too, and a garbage
cycle among them waits for the full pass the budget brings.

The lock these share is held only with the collector off (a move turns it off for its
while): a pass started by an allocation under it could run a finalizer that opens a block,
which would wait for the lock for good. A child forked by another thread in the middle of
a move lets go of what the move froze.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

#: The fewest objects made in paused blocks for which, when the last ends, they are moved to
#: the oldest generation rather than walked by the next young pass (about 3 ms of walking).
PROMOTE_AT = 10_000
#: The most objects moved that way between two full passes (a block that would move more
#: runs a full pass instead).
PROMOTE_BUDGET = 1_000_000
#: A run of this many tasks built by the program within :data:`BATCH_WINDOW_S` seconds (a
#: building rate of 10,000 a second or more) is a batch: what is young is moved.
BATCH_RUN = 256
BATCH_WINDOW_S = 0.025
#: Once the program is seen holding objects frozen, how long it is taken to go on holding
#: them before they are counted again.
FROZEN_RECHECK_S = 1.0


def _full_passes() -> int:
    return int(gc.get_stats()[-1]["collections"])


class _Pauses:
    """The blocks open now, and whether the first one turned the collector off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        #: Whether the collector is off because of a block (or a move), and was on before.
        self._turned_off = False
        #: Whether a move is between its ``gc.freeze()`` and ``gc.unfreeze()``.
        self._moving = False
        #: How many full passes had run at the last promotion, and the objects moved since
        #: the first one after that pass.
        self._passes = -1
        self._promoted = 0
        #: The tasks built in this run so far, and when the last run ended.
        self._built = 0
        self._run_ended = -BATCH_WINDOW_S
        #: Until when the program is taken to hold objects frozen of its own.
        self._frozen_until = float("-inf")

    def begin(self) -> None:
        with self._lock:
            self._open += 1  # counted first: an interrupt after it leaves a block end() closes
            if self._open == 1:
                self._turned_off = gc.isenabled()
                gc.disable()

    def end(self) -> None:
        collect = False
        with self._lock:
            self._open -= 1
            if self._open == 0 and self._turned_off:
                collect = self._promote(gc.get_count()[0], PROMOTE_AT)
                gc.enable()
                self._turned_off = False
        if collect:
            gc.collect()

    def task_built(self) -> None:
        """Count a task model the program built (unlocked: a count lost to a race only
        makes one run longer)."""
        self._built += 1
        if self._built >= BATCH_RUN:
            self._built = 0
            self.run_built(perf_counter())

    def run_built(self, now: float) -> None:
        """A run of :data:`BATCH_RUN` tasks built ended at ``now``: if it took at most
        :data:`BATCH_WINDOW_S`, move what is young (see the module docstring)."""
        collect = False
        with self._lock:
            began, self._run_ended = self._run_ended, now
            if now - began > BATCH_WINDOW_S or self._open or not gc.isenabled():
                return
            # Off while the lock is held, as in a block: a pass started by an allocation
            # here could run a finalizer that opens a block, and so takes the lock again.
            self._turned_off = True
            gc.disable()
            try:
                # At most this many: the youngest generation's, and each young pass's
                # survivors.
                young, passes, _ = gc.get_count()
                collect = self._promote(young + passes * (gc.get_threshold()[0] + 1), 0)
            finally:
                gc.enable()
                self._turned_off = False
        if collect:
            gc.collect()

    def _promote(self, young: int, at_least: int) -> bool:
        """Move the ``young`` objects of the young generations to the oldest, unwalked, if
        they are ``at_least`` that many; or, True, a full pass is due instead (see the
        module docstring)."""
        if young < at_least or self._frozen():
            return False
        passes = _full_passes()
        if passes != self._passes:  # a full pass ran since the last promotion
            self._passes, self._promoted = passes, 0
        if self._promoted + young > PROMOTE_BUDGET:
            return True
        self._promoted += young
        self._moving = True
        gc.freeze()
        gc.unfreeze()
        self._moving = False
        return False

    def _frozen(self) -> bool:
        """Whether the program holds objects frozen (see the module docstring)."""
        now = perf_counter()
        if now < self._frozen_until:
            return True
        if gc.get_freeze_count():
            self._frozen_until = now + FROZEN_RECHECK_S
            return True
        return False

    def after_fork(self) -> None:
        """In a child forked while a block was open (or the lock held, by another thread):
        no block is open there, so the collector is as it was before the first one, and
        what a move had frozen is let go."""
        self._lock = threading.Lock()
        if self._moving:  # only what the move froze is frozen (see _promote)
            gc.unfreeze()
            self._moving = False
        if self._turned_off:
            gc.enable()
        self._open = 0
        self._turned_off = False


_PAUSES = _Pauses()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_PAUSES.after_fork)


#: Count a task model the program built (see the module docstring).
task_built = _PAUSES.task_built


@contextmanager
def paused_collection() -> Iterator[None]:
    """Automatic garbage collection off for the block (see the module docstring)."""
    _PAUSES.begin()
    try:
        yield
    finally:
        _PAUSES.end()
