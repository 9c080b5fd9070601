"""The schedules half of :class:`~worker.queue.worker_queue.WorkerQueue`: declaring periodic
tasks, reading and removing them, and firing the ticks that are due.

``WorkerQueue`` inherits these methods. Every :class:`~worker.Worker` fires the due ticks
every ``schedule_interval`` seconds (:mod:`worker.runtime.scheduler`); each tick is enqueued
exactly once whichever worker gets there first (see :mod:`worker.storage.schedules`). Times
come from the queue's clock: the database server's on PostgreSQL (``database_clock``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, JsonValue, ValidationError

from worker.core import arguments
from worker.core.clock import Clock
from worker.core.errors import InvalidInputError, ScheduleNotFoundError, UnknownRequestKindError
from worker.core.kinds import kind_of, model_for
from worker.core.models import RetryPolicy
from worker.core.schedules import (
    CatchUp,
    Schedule,
    due_ticks,
    first_run_at,
    schedule_name,
    tick_after,
    tick_task,
)
from worker.queue.encode import task_rows
from worker.storage.interface import Storage

if TYPE_CHECKING:
    from worker.queue.notifier import Notifier

log = logging.getLogger(__name__)

#: Due schedules read at a time by a round (it reads them all, page by page).
FIRE_BATCH = 100


@dataclass(frozen=True, slots=True)
class Fired:
    """One schedule fired by :meth:`QueueSchedules.fire_schedules`: the ticks it enqueued,
    their tasks' ids, and how many of those tasks are new (a tick whose idempotency key a
    live task held has that task's id)."""

    name: str
    ticks: list[float]
    task_ids: list[str]
    inserted: int


class QueueSchedules:
    """Schedule methods of the queue (a base of :class:`~worker.queue.worker_queue.WorkerQueue`)."""

    _clock: Clock
    _storage: Storage
    notifier: Notifier
    #: The last problem logged per schedule this process could not fire (logged once).
    _schedule_problems: dict[str, str]

    async def schedule(
        self,
        name: str,
        *,
        request: BaseModel,
        cron: str | None = None,
        interval_s: float | None = None,
        timezone: str = "UTC",
        catch_up: CatchUp = "skip",
        max_catch_up: int = 100,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        visibility_timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        task_name: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        on_success: str | None = None,
        on_failure: str | None = None,
    ) -> Schedule:
        """Declare (or update) the schedule ``name``: enqueue ``request`` as a task at each
        tick of ``cron`` (in ``timezone``) or every ``interval_s`` seconds, with the task
        options given. Returns the schedule as stored, with its ``next_run_at``.

        Declaring a schedule the same as the stored one changes nothing, so a program may
        declare its schedules each time it starts. A changed timing starts from the next
        tick after now; a schedule whose timing is unchanged keeps its ``next_run_at`` (ticks
        missed meanwhile are caught up as ``catch_up`` says: ``"skip"`` enqueues only the
        latest, ``"all"`` each of them, the latest ``max_catch_up`` at most).
        """
        if not isinstance(request, BaseModel):
            raise InvalidInputError(
                "request must be an instance of a registered request model, got "
                f"{type(request).__name__}"
            )
        try:
            kind = kind_of(type(request))
        except UnknownRequestKindError as exc:
            raise InvalidInputError(f"request: {exc}") from exc
        options: dict[str, Any] = {
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout_s": timeout_s,
            "visibility_timeout": visibility_timeout,
            "retry_policy": retry_policy,
            "name": task_name,
            "metadata": dict(metadata or {}),
            "on_success": on_success,
            "on_failure": on_failure,
        }
        try:
            declared = Schedule.model_validate(
                {
                    "name": name,
                    "timing": {"cron": cron, "interval_s": interval_s, "timezone": timezone},
                    "kind": kind,
                    "request": request.model_dump(mode="json"),
                    "options": {k: v for k, v in options.items() if v is not None},
                    "catch_up": catch_up,
                    "max_catch_up": max_catch_up,
                }
            )
        except ValidationError as exc:
            raise InvalidInputError(_problems(f"schedule {name!r}", exc)) from exc
        return await self.save_schedule(declared)

    async def save_schedule(self, schedule: Schedule) -> Schedule:
        """Declare (or update) a schedule given as a :class:`~worker.Schedule` model (its run
        times are the database's: they are ignored here); as :meth:`schedule`."""
        if not isinstance(schedule, Schedule):
            raise InvalidInputError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        now = self._clock()
        first = tick_after(schedule.timing, now)
        where = f"schedule {schedule.name!r}: "
        try:
            model_for(schedule.kind).model_validate(schedule.request)
        except UnknownRequestKindError as exc:
            raise InvalidInputError(f"{where}{exc}") from exc
        except ValidationError as exc:
            raise InvalidInputError(_problems(f"{where}request", exc)) from exc
        try:
            trial = tick_task(schedule, first)
        except ValidationError as exc:
            raise InvalidInputError(_problems(f"{where}options", exc)) from exc
        task_rows([trial], now)  # refuses what the database could not store, now

        def plan(existing: Schedule | None) -> float:
            if existing is not None and existing.timing == schedule.timing:
                return existing.next_run_at
            return first_run_at(
                schedule.timing, now, None if existing is None else existing.last_tick_at
            )

        saved = await self._storage.schedules.save(schedule, now, plan)
        self._schedule_problems.pop(saved.name, None)
        return saved

    async def remove_schedule(self, name: str) -> bool:
        """Delete the schedule ``name`` (tasks it enqueued stay); False if there was none."""
        return await self._storage.schedules.remove(_name(name))

    async def get_schedule(self, name: str) -> Schedule:
        """The schedule ``name``; :class:`~worker.core.errors.ScheduleNotFoundError` if none."""
        found = await self._storage.schedules.get(_name(name))
        if found is None:
            raise ScheduleNotFoundError(name)
        return found

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name, each with its ``next_run_at``."""
        return await self._storage.schedules.all()

    async def fire_schedules(self, limit: int = FIRE_BATCH) -> list[Fired]:
        """Enqueue the ticks that are due now (as its catch-up policy says for each
        schedule) and advance each schedule to its next tick; returns what this call
        enqueued. A schedule another process fired first is left to it. Workers call this
        every ``schedule_interval``; a program without workers may call it itself. Due
        schedules are read ``limit`` at a time."""
        arguments.count("limit", limit)
        now = self._clock()
        fired: list[Fired] = []
        # Page by page: schedules this process cannot fire stay due, and must not hide the
        # others behind them.
        after: tuple[float, str] | None = None
        while page := await self._storage.schedules.due(now, limit, after):
            for schedule in page:
                outcome = await self._fire(schedule, now)
                if outcome is not None:
                    fired.append(outcome)
            if len(page) < limit:
                break
            after = (page[-1].next_run_at, page[-1].name)
        return fired

    async def _fire(self, schedule: Schedule, now: float) -> Fired | None:
        """Enqueue a due schedule's ticks; None if it cannot be, or another process did."""
        ticks, next_run_at = due_ticks(schedule, now)
        try:
            tasks = [tick_task(schedule, tick) for tick in ticks]
            rows = task_rows(tasks, now)
        except (UnknownRequestKindError, ValidationError, InvalidInputError) as exc:
            self._cannot_fire(schedule.name, exc)
            return None
        outcome = await self._storage.schedules.fire(
            schedule.name,
            expected=schedule.next_run_at,
            next_run_at=next_run_at,
            last_tick_at=ticks[-1] if ticks else schedule.last_tick_at,
            rows=rows,
            now=now,
        )
        if outcome is None:
            return None  # another process fired this tick
        ids, inserted = outcome
        if inserted:
            self.notifier.notify()
        _report(schedule, ticks, ids)
        return Fired(schedule.name, ticks, ids, inserted)

    def _cannot_fire(self, name: str, error: Exception) -> None:
        """Log, once per schedule and problem, why this process cannot fire a schedule (a
        request kind it lacks, a request its model now refuses); the schedule stays due, for
        a process that can."""
        problem = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        if self._schedule_problems.get(name) == problem:
            return
        self._schedule_problems[name] = problem
        log.error(
            "schedule %s cannot be fired by this process (left for one that can): %s",
            name, problem, extra={"event": "schedule_unfirable", "schedule": name},
        )  # fmt: skip


def _problems(prefix: str, exc: ValidationError) -> str:
    return arguments.problems(prefix, exc).replace("Value error, ", "")


def _name(name: Any) -> str:
    try:
        return schedule_name(name)
    except ValueError as exc:
        raise InvalidInputError(f"name: {exc}") from None


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _report(schedule: Schedule, ticks: list[float], ids: list[str]) -> None:
    extra = {"event": "schedule_fired", "schedule": schedule.name, "ticks": ticks}
    skipped = not ticks or ticks[0] > schedule.next_run_at
    if skipped:
        log.warning(
            "schedule %s: ticks from %s missed (catch_up %s); enqueued %d tick(s): %s",
            schedule.name, _utc(schedule.next_run_at), schedule.catch_up, len(ticks),
            ", ".join(ids) or "none", extra=extra,
        )  # fmt: skip
    else:
        log.info(
            "schedule %s: enqueued %d tick(s): %s", schedule.name, len(ticks), ", ".join(ids),
            extra=extra,
        )  # fmt: skip
