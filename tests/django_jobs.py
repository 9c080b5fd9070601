"""Django task functions for tests/test_django_tasks.py, run by a real ``wq worker``. With
DJANGO_TEST_SIGNALS set, the worker appends ``signal id status`` lines to that file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from worker.integrations.django.compat import (
    TaskContext,
    TaskResult,
    task,
    task_finished,
    task_started,
)


@task
def add(a: int, b: int) -> int:
    return a + b


@task
async def shout(text: str) -> dict[str, str]:
    return {"text": text.upper()}


@task(takes_context=True)
def whoami(context: TaskContext[Any, Any], greeting: str) -> dict[str, Any]:
    result = context.task_result
    return {"greeting": greeting, "id": result.id, "attempt": context.attempt,
            "status": str(result.status)}  # fmt: skip


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def opaque() -> object:
    return object()  # no JSON form: the attempt fails


@task
def record(path: str, name: str) -> str:
    with Path(path).open("a") as out:
        out.write(name + "\n")
    return name


def _signal(name: str) -> Any:
    def receiver(sender: type[Any], task_result: TaskResult[Any, Any], **kwargs: Any) -> None:
        where = os.environ.get("DJANGO_TEST_SIGNALS")
        if where:
            with Path(where).open("a") as out:
                out.write(f"{name} {task_result.id} {task_result.status}\n")

    return receiver


_started, _finished = _signal("started"), _signal("finished")
task_started.connect(_started)
task_finished.connect(_finished)
