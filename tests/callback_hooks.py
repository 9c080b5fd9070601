"""Callbacks for the tests of ``on_success`` / ``on_failure`` (tests/test_callbacks.py).

Each appends a line to the file its task names in ``metadata["log"]``: ``attempt``,
``success <id> <result as JSON>`` or ``failure <id> <error>``. ``flaky_success`` fails until it
has been called ``metadata["fail_times"]`` times.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pydantic import JsonValue

from worker import Task


def _log(task: Task) -> Path:
    where = task.metadata["log"]
    assert isinstance(where, str)
    return Path(where)


def _note(task: Task, line: str) -> int:
    """Append ``line``; returns how many ``attempt`` lines the file holds now."""
    path = _log(task)
    with path.open("a") as out:
        out.write(line + "\n")
    return path.read_text().splitlines().count("attempt")


def flaky_success(task: Task, result: JsonValue) -> None:
    fail_times = task.metadata.get("fail_times", 0)
    assert isinstance(fail_times, int)
    if _note(task, "attempt") <= fail_times:
        raise RuntimeError("not yet")
    _note(task, f"success {task.id} {json.dumps(result)}")


async def record_failure(task: Task, error: str | None) -> None:
    await asyncio.sleep(0)
    _note(task, "attempt")
    _note(task, f"failure {task.id} {error}")
