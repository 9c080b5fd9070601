"""``Pool``: worker processes under one supervisor (``wq worker --processes N``).

The supervisor starts ``processes`` children, each running the command it is given (a normal
``wq worker`` with the pool's options, exec'd in a fresh interpreter: it inherits none of the
supervisor's threads or connections, where a plain fork would), and from then on only watches
them; it opens no database.

- A child that exits unexpectedly (a crash, ``SIGKILL``, the OOM killer: any exit but the
  ones below) is started again after a backoff, :func:`restart_delay`: 1 s, doubling up to
  30 s while the children of its slot keep dying young. One that ran ``STABLE_AFTER_S`` or
  longer starts the count afresh. Every exit is one log line naming the slot, the pid, and
  the exit code or the signal.
- A child that retired (:data:`~worker.runtime.retirement.RETIRED_EXIT_CODE`: its task or
  memory limit) is replaced at once.
- In burst mode a child that exited 0 ran dry: it is not replaced, and the pool ends when
  all have.
- A child that exited with the usage-error code (2: a bad option, setting or processors
  module) would fail the same way again: the pool stops and exits 2.

**Stopping.** The first SIGTERM or SIGINT stops every child as a first signal would (no new
tasks; running ones finish within ``QUEUE_SHUTDOWN_GRACE``, the rest are released), a second
stops them at once, a third kills them (``SIGKILL``). The orders go down each child's control
pipe (:mod:`worker.runtime.supervised`) rather than as signals, so a process manager that
signals the whole group (systemd does) stops the children once, not twice (which would force
them). Children run in their own process group: a Ctrl-C at the terminal reaches the
supervisor only. The supervisor exits 0 once every child has exited.

**No orphans.** A child reads its control pipe; its end (the supervisor is gone, even killed
by ``SIGKILL``) stops it as a first signal would.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from worker.runtime.retirement import RETIRED_EXIT_CODE

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
#: A child that ran this long was a good start: its slot's backoff starts again at 1 s.
STABLE_AFTER_S = 30.0
#: ``wq``'s exit code for a usage error (worker.cli.session.ExitCode.USAGE).
USAGE_EXIT_CODE = 2
#: The supervisor looks at its children at least this often, signals or not.
CHECK_INTERVAL_S = 1.0

#: The orders a child reads from its control pipe, one per line.
STOP = b"stop\n"
FORCE = b"force\n"

#: Builds a child's command line, given the file descriptor of its control pipe.
Command = Callable[[int], Sequence[str]]


def restart_delay(failures: int) -> float:
    """Seconds before a slot whose children died young ``failures`` times in a row (1 or
    more) gets a new one: 1, 2, 4, ... up to 30."""
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** max(0, failures - 1))


def describe_exit(code: int) -> str:
    """``exited with code 9`` or ``was killed by SIGKILL`` (Popen's negative codes)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


@dataclass
class Slot:
    """One of the pool's places for a child, and the child in it, if any."""

    number: int
    proc: subprocess.Popen[bytes] | None = None
    control: int | None = None  # the write end of the child's control pipe
    started_at: float = 0.0
    #: Children of this slot that died young in a row.
    failures: int = 0
    #: When to start the next child (the supervisor's monotonic clock); None: never.
    start_at: float | None = 0.0

    @property
    def name(self) -> str:
        pid = "" if self.proc is None else f" (pid {self.proc.pid})"
        return f"worker process {self.number}{pid}"


@dataclass
class PoolCounts:
    started: int = 0
    restarted: int = 0
    retired: int = 0


class Pool:
    """``processes`` children running ``command``, restarted, replaced and stopped as the
    module says. :meth:`run` returns the supervisor's exit code."""

    def __init__(
        self,
        command: Command,
        processes: int,
        *,
        burst: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.command = command
        self.burst = burst
        self.slots = [Slot(number) for number in range(1, processes + 1)]
        self.counts = PoolCounts()
        self.exit_code = 0
        self._clock = clock
        self._signals = 0
        self._stopping = False

    # -- the supervisor's loop ---------------------------------------------------------------

    def run(self) -> int:
        """Start the children and watch them until the pool ends (a signal, burst mode
        running dry, a usage error); install the signal handlers for that long."""
        wake_in, wake_out = socket.socketpair()
        wake_in.setblocking(False)
        wake_out.setblocking(False)
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        previous_fd = signal.set_wakeup_fd(wake_out.fileno(), warn_on_full_buffer=False)
        previous = {signum: signal.signal(signum, _noted) for signum in handled}
        log.info("supervisor %d: starting %d worker processes", os.getpid(), len(self.slots))
        try:
            while not self._ended():
                self._start_due()
                select.select([wake_in], [], [], self._wait_s())
                for signum in _received(wake_in):
                    if signum != signal.SIGCHLD:
                        self._on_signal(signal.Signals(signum))
                self._reap()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
            wake_in.close()
            wake_out.close()
            self._abandon()
        return self.exit_code

    def _ended(self) -> bool:
        if any(slot.proc is not None for slot in self.slots):
            return False
        return self._stopping or all(slot.start_at is None for slot in self.slots)

    def _wait_s(self) -> float:
        now = self._clock()
        due = [s.start_at - now for s in self.slots if s.proc is None and s.start_at is not None]
        return max(0.0, min([CHECK_INTERVAL_S, *due]))

    # -- children --------------------------------------------------------------------------

    def _start_due(self) -> None:
        now = self._clock()
        for slot in self.slots:
            if self._stopping or slot.proc is not None or slot.start_at is None:
                continue
            if slot.start_at <= now:
                self._start(slot, now)

    def _start(self, slot: Slot, now: float) -> None:
        read_end, write_end = os.pipe()
        try:
            slot.proc = subprocess.Popen(
                list(self.command(read_end)),
                stdin=subprocess.DEVNULL,
                pass_fds=(read_end,),
                process_group=0,  # a Ctrl-C at the terminal is the supervisor's alone
            )
        except OSError as exc:
            os.close(write_end)
            slot.failures += 1
            delay = restart_delay(slot.failures)
            log.error("worker process %d could not start (%s); trying again in %g s",
                      slot.number, exc, delay)  # fmt: skip
            slot.start_at = now + delay
            return
        finally:
            os.close(read_end)
        slot.control, slot.started_at = write_end, now
        self.counts.started += 1
        log.info("%s started", slot.name)

    def _reap(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and (code := slot.proc.poll()) is not None:
                self._exited(slot, code, self._clock())

    def _exited(self, slot: Slot, code: int, now: float) -> None:
        name, ran_s = slot.name, now - slot.started_at
        slot.proc = None
        if slot.control is not None:
            os.close(slot.control)
            slot.control = None
        how = f"{describe_exit(code)} after {ran_s:.1f} s"
        if self._stopping:
            log.info("%s %s", name, how)
        elif code == RETIRED_EXIT_CODE:
            self.counts.retired += 1
            slot.failures, slot.start_at = 0, now
            log.info("%s retired (%s); starting its replacement", name, how)
        elif code == 0 and self.burst:
            slot.start_at = None
            log.info("%s ran dry and exited", name)
        elif code == USAGE_EXIT_CODE:
            log.error("%s %s: a usage error (see its message), which a restart would repeat; "
                      "stopping the pool", name, how)  # fmt: skip
            self.exit_code = USAGE_EXIT_CODE
            self._stop()
        else:
            slot.failures = 1 if ran_s >= STABLE_AFTER_S else slot.failures + 1
            delay = restart_delay(slot.failures)
            slot.start_at = now + delay
            self.counts.restarted += 1
            log.warning("%s %s; restarting it in %g s", name, how, delay)

    # -- stopping --------------------------------------------------------------------------

    def _on_signal(self, signum: signal.Signals) -> None:
        self._signals += 1
        alive = [slot for slot in self.slots if slot.proc is not None]
        if self._signals == 1:
            log.warning("%s: stopping %d worker process(es): no new tasks; running ones "
                        "finish or are released (signal again to stop them now)",
                        signum.name, len(alive))  # fmt: skip
            self._stop()
        elif self._signals == 2:
            log.warning("%s while stopping: stopping the worker processes now (signal again "
                        "to kill them)", signum.name)  # fmt: skip
            self._order(FORCE)
        else:
            log.warning("%s: killing %d worker process(es)", signum.name, len(alive))
            for slot in alive:
                assert slot.proc is not None
                slot.proc.kill()

    def _stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            for slot in self.slots:
                slot.start_at = None
            self._order(STOP)

    def _order(self, order: bytes) -> None:
        for slot in self.slots:
            if slot.proc is None or slot.control is None:
                continue
            try:
                os.write(slot.control, order)
            except OSError as exc:  # it is exiting already: its exit comes next
                log.debug("%s did not take %r: %s", slot.name, order, exc)

    def _abandon(self) -> None:
        """The loop ended while children live (an error of the supervisor's own): close
        their control pipes, which stops them as a first signal would."""
        for slot in self.slots:
            if slot.control is not None:
                os.close(slot.control)
                slot.control = None
            if slot.proc is not None and slot.proc.poll() is None:
                log.error("%s is left to stop on its own", slot.name)


def _noted(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing: the signal's number reaches the wake-up socket."""


def _received(wake_in: socket.socket) -> list[int]:
    """The signal numbers that arrived since the last call."""
    numbers: list[int] = []
    while True:
        try:
            data = wake_in.recv(4096)
        except BlockingIOError:
            return numbers
        if not data:
            return numbers
        numbers.extend(data)
