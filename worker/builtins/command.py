"""The ``command`` handler: run an argv (no shell) in its own process group.

On timeout or cancellation the whole group gets SIGTERM, then SIGKILL after a short grace,
and the process is reaped: nothing the command started outlives its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

from pydantic import JsonValue

from worker.builtins.requests import CommandRequest
from worker.core.models import TaskItem
from worker.runtime.outcomes import PermanentError

if TYPE_CHECKING:
    from worker.runtime.context import TaskContext

log = logging.getLogger(__name__)

#: How much of each output stream the result keeps (its end).
TAIL_BYTES = 4096
#: Between SIGTERM and SIGKILL.
KILL_GRACE_S = 2.0


class CommandFailedError(Exception):
    """The command exited with a non-zero code (a normal, retryable failure)."""


class _Tail:
    """Keeps the last ``limit`` bytes of a stream."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.data = bytearray()

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self.data += chunk
            if len(self.data) > self.limit:
                del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def terminate(process: asyncio.subprocess.Process, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace_s``, and reap the leader."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        log.warning("command pid %s ignored SIGTERM for %s s; killing it", process.pid, grace_s)
    finally:
        _signal_group(process.pid, signal.SIGKILL)  # also any straggler in the group
    await process.wait()


async def run_command(item: TaskItem, ctx: TaskContext) -> JsonValue:
    request = item.request
    if not isinstance(request, CommandRequest):
        raise PermanentError(f"the command processor got a {type(request).__name__}")
    if not ctx.config.allow_commands:
        raise PermanentError(
            "command tasks are disabled: set QUEUE_ALLOW_COMMANDS=true (allow_commands) "
            "on the worker to run them"
        )
    try:
        process = await asyncio.create_subprocess_exec(
            *request.argv,
            cwd=request.cwd,
            env={**os.environ, **request.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        raise PermanentError(f"cannot start {request.argv[0]!r}: {exc}") from exc
    stdout, stderr = _Tail(), _Tail()
    try:
        async with asyncio.timeout(request.timeout_s):
            await asyncio.gather(stdout.drain(process.stdout), stderr.drain(process.stderr))
            code = await process.wait()
    except TimeoutError:
        await terminate(process)
        raise CommandFailedError(
            f"command timed out after {request.timeout_s} s; stderr: {stderr.text()}"
        ) from None
    except BaseException:
        await terminate(process)
        raise
    result: JsonValue = {
        "exit_code": code,
        "stdout_tail": stdout.text(),
        "stderr_tail": stderr.text(),
    }
    if code != 0:
        raise CommandFailedError(f"command exited with code {code}; stderr: {stderr.text()}")
    return result
