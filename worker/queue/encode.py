"""Tasks become the bulk insert's rows here: ids, times and JSON columns filled in.

:meth:`~worker.queue.worker_queue.WorkerQueue.enqueue` and the schedules' ticks
(:mod:`worker.queue.schedules`) both insert through it.
"""

from __future__ import annotations

from worker.core.errors import InvalidTaskError, UnknownRequestKindError
from worker.core.ids import new_ids
from worker.core.models import Task
from worker.storage.rows import InsertRow, insert_values, items_json


def task_rows(checked: list[Task], now: float) -> list[InsertRow]:
    """The insert's rows for validated tasks. Fills in each task's ``id`` (a new ULID),
    ``created_at``, ``updated_at`` and ``schedule_at`` when empty or zero; a value the
    database cannot store raises :class:`InvalidTaskError` naming the task's index."""
    fresh_ids = iter(new_ids(sum(1 for task in checked if not task.id)))
    rows = []
    for index, task in enumerate(checked):
        try:
            items = items_json(task.items)
        except UnknownRequestKindError as exc:
            raise InvalidTaskError(f"tasks[{index}].items: {exc}") from exc
        except ValueError as exc:  # a value the database cannot store, named
            raise InvalidTaskError(f"tasks[{index}].{exc}") from exc
        # Known-good values, set without re-running validation (enqueue's hot path).
        fields = task.__dict__
        if not task.id:
            fields["id"] = next(fresh_ids)
        for name in ("created_at", "updated_at", "schedule_at"):
            if not fields[name]:
                fields[name] = now
        try:
            rows.append(insert_values(task, items))
        except ValueError as exc:
            raise InvalidTaskError(f"tasks[{index}].{exc}") from exc
    return rows
