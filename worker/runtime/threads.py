"""Plain ``def`` work in a thread, stopped as far as Python lets a thread be stopped.

A coroutine stops when its task is cancelled; a thread cannot be cancelled. Handing a plain
function to ``asyncio.to_thread`` and walking away when its task is stopped (a timeout, a
cancel request, a lost claim, shutdown) leaves the function running while the task is
retried, or released and claimed again: two runs of one task at once. So :func:`in_thread`,
which the runtime runs every plain ``def`` handler and task function with, does this instead:

- A stop raises :class:`Interrupted` inside the function's thread (CPython's
  ``PyThreadState_SetAsyncExc``, as dramatiq's time limits do). Python delivers it at the
  next bytecode the thread runs: a pure-Python loop stops at once, a blocking call
  (``time.sleep``, a socket read, a C extension's work) when it returns. It derives from
  ``BaseException``, so a handler's ``except Exception`` does not swallow it; ``finally``
  blocks and ``with`` exits run as for any exception.
- The attempt waits for the thread to end before the stop goes on: the task keeps its lease
  (the worker goes on renewing it), and its retry, release or cancellation happens after the
  function has returned, never beside it.
- Only an abandoned attempt (:meth:`ThreadGroup.abandon`: the worker's shutdown grace and
  its unwind time are over, or the stop was asked for twice outside a worker) stops waiting.
  The worker then leaves the task to its lease rather than releasing it
  (:meth:`ThreadGroup.alive`), so it runs again once the lease expires: when the process
  has exited, or a worker's liveness lapses.

The threads are daemons: a process that exits does not wait for one that never returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a stopped thread may take before the log says it is being waited for.
SLOW_STOP_S = 1.0


class Interrupted(BaseException):  # a signal to stop, like KeyboardInterrupt
    """Raised inside a plain ``def`` handler's thread when its task is stopped (a timeout, a
    cancel request, a lost claim, or the worker's shutdown)."""


class ThreadGroup:
    """The threads one attempt runs (see the module docstring); ``name`` names them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._runs: set[_Run[Any]] = set()
        self._abandoned = asyncio.Event()

    def alive(self) -> bool:
        """Whether a thread of this attempt still runs."""
        return any(run.thread.is_alive() for run in self._runs)

    def abandon(self) -> None:
        """Stop waiting for this attempt's threads: the stop goes on while they run."""
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def _add(self, run: _Run[Any]) -> None:
        self._runs.add(run)
        run.future.add_done_callback(lambda _: self._runs.discard(run))


#: The group of the attempt running in this context (:func:`attempt_threads` sets it).
_group: contextvars.ContextVar[ThreadGroup] = contextvars.ContextVar("worker_thread_group")


def attempt_threads(group: ThreadGroup) -> contextvars.Token[ThreadGroup]:
    """Make ``group`` the one :func:`in_thread` adds to in this context (an attempt's)."""
    return _group.set(group)


def release_attempt_threads(token: contextvars.Token[ThreadGroup]) -> None:
    _group.reset(token)


async def in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a thread of its own, with this context's variables
    (as ``asyncio.to_thread``), stopped as the module docstring says when the awaiting task
    is cancelled: interrupted, waited for, then the cancellation goes on."""
    group = _group.get(None)
    run: _Run[T] = _Run(asyncio.get_running_loop(), function, args, kwargs, group)
    try:
        return await asyncio.shield(run.future)
    except asyncio.CancelledError:
        run.interrupt()
        await _outlast(run, group)
        if run.future.done():
            run.future.exception()  # retrieved: the stop, not this, is what goes on
        raise


async def _outlast(run: _Run[Any], group: ThreadGroup | None) -> None:
    """Wait for the interrupted thread to end (or the attempt to be abandoned), whatever
    further cancellations come: the first one is raised when this returns."""
    gave_up = asyncio.ensure_future(group._abandoned.wait()) if group is not None else None
    waiting = {run.future} if gave_up is None else {run.future, gave_up}
    warned = False
    try:
        while not run.future.done() and not (group is not None and group.abandoned):
            try:
                done, _ = await asyncio.wait(
                    waiting,
                    timeout=None if warned else SLOW_STOP_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            except asyncio.CancelledError:
                if group is None:  # asked twice, and no worker to say when to give up
                    log.warning("%s: asked again to stop; no longer waiting for it", run.name)
                    return
                continue  # still running: the stop goes on once it ends
            if not done and not warned:
                warned = True
                log.warning(
                    "%s: stopped, but still running after %s s (blocked in a call Python "
                    "cannot interrupt); waiting for it to return",
                    run.name,
                    SLOW_STOP_S,
                )
    finally:
        if gave_up is not None:
            gave_up.cancel()


class _Run(Generic[T]):
    """One call in one daemon thread; its outcome lands in ``future`` on the loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        function: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        group: ThreadGroup | None,
    ) -> None:
        self.name = group.name if group is not None else getattr(function, "__qualname__", "?")
        self.future: asyncio.Future[T] = loop.create_future()
        self._loop = loop
        # Held while the thread's "running" changes and while an interrupt is sent, so that
        # an interrupt reaches the function, never the code that reports its outcome.
        self._lock = threading.Lock()
        self._running = True
        self._interrupted = False
        context = contextvars.copy_context()
        self.thread = threading.Thread(
            target=self._body, args=(context, function, args, kwargs), name=self.name, daemon=True
        )
        if group is not None:
            group._add(self)
        self.thread.start()

    def _body(
        self,
        context: contextvars.Context,
        function: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        outcome: tuple[bool, Any]
        try:
            try:
                outcome = (True, context.run(function, *args, **kwargs))
            finally:
                with self._lock:
                    self._running = False
        except BaseException as exc:  # raised by the awaiting coroutine
            outcome = (False, exc)
        try:
            self._loop.call_soon_threadsafe(_settle, self.future, outcome)
        except RuntimeError:  # the loop closed: nobody awaits this any more
            log.warning(
                "%s: returned after its event loop closed; its outcome is dropped", self.name
            )

    def interrupt(self) -> None:
        """Raise :class:`Interrupted` in the thread, once, if the function still runs."""
        with self._lock:
            if not self._running or self._interrupted or self.thread.ident is None:
                return
            self._interrupted = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread.ident), ctypes.py_object(Interrupted)
            )


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled: nothing awaits it (only a shield's inner future is here)
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
