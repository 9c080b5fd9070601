"""One call per request: ``submit`` and ``submit_many``, the producer half of
:class:`worker.queue.worker_queue.WorkerQueue` beside ``enqueue``.

``WorkerQueue`` inherits these methods; the queue sets the attributes declared below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from pydantic import BaseModel

from worker.core.config import QueueConfig
from worker.core.errors import InvalidInputError, InvalidTaskError, UnknownRequestKindError
from worker.core.garbage import paused_collection
from worker.core.ids import new_ids
from worker.core.models import Task
from worker.queue.notifier import Notifier
from worker.queue.submission import SubmitOptions, tasks_of, template
from worker.storage.interface import Storage
from worker.storage.rows import insert_values, uniform_rows

#: How many tasks :meth:`QueueProducer._submit` builds per slice while its rows are written:
#: about a millisecond's work, after which the interpreter lock is offered to the driver's thread
#: (see :func:`worker.storage.database._alongside`).
_SLICE = 512


class QueueProducer:
    """``submit`` and ``submit_many`` (a base of
    :class:`~worker.queue.worker_queue.WorkerQueue`)."""

    config: QueueConfig
    notifier: Notifier
    _clock: Callable[[], float]
    _storage: Storage

    if TYPE_CHECKING:  # QueueAdmin's, beside this class among the queue's bases

        async def get_task(self, task_id: str) -> Task: ...

    async def submit(self, request: BaseModel, **options: Unpack[SubmitOptions]) -> Task:
        """Enqueue one request (an instance of a registered request model) as a task;
        returns it, as :meth:`get_task` would (``id`` set, pending).

        ``options`` are the task's fields (``queue``, ``priority``, ``schedule_at``,
        ``max_attempts``, ``retry_policy``, ``timeout_s``, ``visibility_timeout``,
        ``depends_on`` (ids or tasks), ``idempotency_key``, ``name``, ``metadata``,
        ``held``, ``resources``), ``delay`` (seconds from now) and ``response_url``; a bad
        one raises :class:`~worker.core.errors.InvalidInputError` naming it. A request whose
        idempotency key a live task holds returns that task.
        """
        if not isinstance(request, BaseModel):
            many = " (submit_many takes a list)" if isinstance(request, list | tuple) else ""
            raise InvalidInputError(
                "request must be an instance of a registered request model, got "
                f"{type(request).__name__}{many}"
            )
        tasks, inserted = await self._submit([request], options, many=False)
        if not inserted:  # its key is held: the holder, as it is now
            return await self.get_task(tasks[0].id)
        return tasks[0]

    async def submit_many(
        self, requests: Iterable[BaseModel], **options: Unpack[SubmitOptions]
    ) -> list[Task]:
        """Enqueue many requests atomically, each as a task with the same ``options`` (as
        :meth:`submit`'s, but for ``idempotency_key``); returns the tasks, in order. One
        bad request refuses the batch, naming its index; nothing is written."""
        if isinstance(requests, str | bytes | BaseModel) or not isinstance(requests, Iterable):
            raise InvalidInputError(
                f"requests must be a list of request model instances, got {type(requests).__name__}"
            )
        tasks, _ = await self._submit(list(requests), options, many=True)
        return tasks

    async def _submit(
        self, requests: Sequence[BaseModel], options: Any, *, many: bool
    ) -> tuple[list[Task], int]:
        now = self._clock()
        task, url = template(options, now, many=many)
        if not requests:
            return [], 0
        ids = new_ids(len(requests))
        try:
            with paused_collection():
                rows = uniform_rows(insert_values(task, ""), ids, requests, url)
        except UnknownRequestKindError as exc:
            raise InvalidTaskError(f"{_which(requests, exc)}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise InvalidTaskError(str(exc)) from exc
        made: list[Task] = []

        def build() -> bool:  # a slice at a time, while the rows are written
            start = len(made)
            with paused_collection():
                made.extend(
                    tasks_of(task, ids[start : start + _SLICE], requests[start : start + _SLICE])
                )
            return len(made) < len(ids)

        stored, inserted = await self._storage.insert(
            rows, now, max_pending=self.config.max_pending, meanwhile=build
        )
        if inserted:
            self.notifier.notify()
        if len(made) == len(ids):
            tasks = made
        else:
            with paused_collection():
                tasks = tasks_of(task, ids, requests)
        if stored != ids:  # a key held by a live task: that task's id
            for each, task_id in zip(tasks, stored, strict=True):
                each.__dict__["id"] = task_id
        if inserted and task.depends_on:  # how many are unfinished: the same for every task
            waiting = (await self.get_task(stored[0])).waiting_on
            for each in tasks:
                each.__dict__["waiting_on"] = waiting
        return tasks, inserted


def _which(requests: Sequence[BaseModel], exc: UnknownRequestKindError) -> str:
    """The first request of a kind no one registered (for the message)."""
    from worker.core.kinds import kind_of

    for index, request in enumerate(requests):
        try:
            kind_of(type(request))
        except UnknownRequestKindError:
            return f"requests[{index}]"
    return "requests"
