"""One attempt at one task: run its items in order, under the task's timeout, and say how
it ended (:class:`Outcome`). Cancellation is not an outcome: it propagates."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Literal

from pydantic import JsonValue

from worker.core.kinds import kind_of
from worker.core.models import Progress
from worker.core.storable import json_problem
from worker.runtime.context import TaskContext
from worker.runtime.outcomes import PermanentError, judge
from worker.runtime.processors import ProcessorRegistry
from worker.runtime.threads import attempt_threads, in_thread, release_attempt_threads

#: Results of these types need no check that the database can store them (a string may
#: hold a lone surrogate, and JSON has no NaN or Infinity: see :mod:`worker.core.storable`).
_JSON_SCALARS = frozenset({type(None), bool, int})


@dataclass(frozen=True, slots=True)
class Outcome:
    """``complete`` with ``results`` (one per item), ``retry`` (optional delay) or ``discard``."""

    verdict: Literal["complete", "retry", "discard"]
    results: list[JsonValue] | None = None
    error: str | None = None
    delay_s: float | None = None
    #: A completed task's last progress report not yet written (it goes with the ack).
    progress: Progress | None = None


async def run_items(ctx: TaskContext, registry: ProcessorRegistry) -> list[JsonValue]:
    """Run every item not finished by an earlier attempt; checkpoint after each but the last."""
    task = ctx.task
    results: list[JsonValue] = []
    last = len(task.items) - 1
    for index, item in enumerate(task.items):
        ctx.index = index
        if index in ctx.done:
            results.append(ctx.done[index])
            continue
        handler = registry.get(kind_of(type(item.request)))
        if inspect.iscoroutinefunction(handler):
            result = await handler(item, ctx)
        else:
            result = await in_thread(handler, item, ctx)
            if inspect.isawaitable(result):
                result = await result
        if type(result) not in _JSON_SCALARS and (problem := json_problem(result)):
            # Refused here, for this task alone: a batch of acknowledgements would refuse it.
            raise PermanentError(f"item {index}'s result {problem}")
        if index < last:
            await ctx.flush_progress()
            await ctx.finish_item(result)
        results.append(result)
    return results


async def attempt(ctx: TaskContext, registry: ProcessorRegistry, timeout_s: float) -> Outcome:
    """Run the task once; failures become outcomes, cancellation propagates. A handler that
    raises ``SystemExit`` or ``KeyboardInterrupt`` fails its task, not the worker: the
    worker's own stop comes by its signal handlers, never as an exception in a handler."""
    deadline = asyncio.timeout(timeout_s)
    threads = attempt_threads(ctx.threads)  # plain def handlers' threads wait out a stop
    try:
        async with deadline:
            results = await run_items(ctx, registry)
    except TimeoutError as exc:
        if not deadline.expired():
            return _failed(exc)
        return Outcome("retry", error=timeout_message(ctx.task.timeout_s, timeout_s))
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        return _failed(exc)
    finally:
        release_attempt_threads(threads)
        ctx.stop_timer()
    return Outcome("complete", results=results, progress=ctx.take_progress())


def timeout_message(task_timeout_s: float | None, timeout_s: float) -> str:
    """The error of an attempt that ran out of time, naming the setting that raises the limit:
    the task's own ``timeout_s`` when it set one, else ``QUEUE_WORKER_TIMEOUT``."""
    if task_timeout_s is not None and task_timeout_s == timeout_s:
        where = "the task's timeout_s (wq submit --timeout) sets the limit"
    else:
        where = "QUEUE_WORKER_TIMEOUT raises the limit, or a task's timeout_s (wq submit --timeout)"
    return f"timed out after {timeout_s:g} s ({where})"


def _failed(exc: Exception | SystemExit | KeyboardInterrupt) -> Outcome:
    judgement = judge(exc)
    return Outcome(judgement.verdict, error=judgement.error, delay_s=judgement.delay_s)
