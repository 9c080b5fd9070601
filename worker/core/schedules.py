"""Schedules: what a periodic task is, and when its ticks fall (pure: no I/O, no clock).

A schedule is a timing (a cron expression in a timezone, or an interval in seconds), what to
enqueue at each tick (a registered request kind, its request as JSON, and the task's options)
and a catch-up policy for ticks that passed while no worker ran:

- ``"skip"``: of the ticks due, only the latest is enqueued; the earlier ones are skipped.
- ``"all"``: each tick due is enqueued, the latest ``max_catch_up`` of them at most.

Cron expressions are read by cronsim (five fields, or six with seconds first; Debian cron's
rules for days, and its handling of daylight-saving changes for jobs at fixed times). Interval
ticks fall on whole multiples of the interval since the epoch (1970-01-01 00:00 UTC), so every
machine computes the same ticks: every 3600 s is on the hour, every 86400 s at midnight UTC.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from worker.core.kinds import model_for
from worker.core.limits import MAX_ATTEMPTS, MAX_DURATION_S
from worker.core.models import RetryPolicy, Task, TaskItem

#: The most ticks one catch-up may enqueue (``max_catch_up``'s bound).
MAX_CATCH_UP = 10_000
#: The shortest interval, in seconds (a tick per second is as often as workers look).
MIN_INTERVAL_S = 1.0
_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,150}$")

CatchUp = Literal["skip", "all"]


class ScheduleTaskOptions(BaseModel):
    """What each tick's task gets besides its request (as :class:`~worker.core.models.Task`'s
    fields of the same names; checked against it when the schedule is declared)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue: str = "default"
    priority: int = 0
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS)
    timeout_s: float | None = None
    visibility_timeout: float | None = None
    retry_policy: RetryPolicy | None = None
    #: The task's name (default: the schedule's).
    name: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    on_success: str | None = None
    on_failure: str | None = None


class ScheduleTiming(BaseModel):
    """When a schedule's ticks fall: ``cron`` in ``timezone``, or every ``interval_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str | None = None
    interval_s: float | None = Field(
        None, ge=MIN_INTERVAL_S, le=MAX_DURATION_S, allow_inf_nan=False
    )
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(
                f"{value!r} is not a cron expression ({exc}): five fields (minute hour "
                "day-of-month month day-of-week), or six with seconds first"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleTiming:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError("give either cron or interval_s (exactly one)")
        if self.interval_s is not None and self.timezone != "UTC":
            raise ValueError(
                "timezone applies to cron schedules only: interval ticks count seconds since "
                "the epoch (use a cron expression for times of day in a timezone)"
            )
        return self

    def describe(self) -> str:
        """``"cron 0 3 * * * (Europe/Paris)"`` or ``"every 30s"``, for people."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        assert self.interval_s is not None
        return f"every {self.interval_s:g}s"


class Schedule(BaseModel):
    """A stored schedule, as reads return it (``queue.schedule(...)`` declares one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    timing: ScheduleTiming
    kind: str
    request: dict[str, JsonValue]
    options: ScheduleTaskOptions = Field(default_factory=ScheduleTaskOptions)
    catch_up: CatchUp = "skip"
    max_catch_up: int = Field(100, ge=1, le=MAX_CATCH_UP)
    #: The tick due next (epoch seconds).
    next_run_at: float = 0.0
    #: The latest tick enqueued, and that tick's task.
    last_tick_at: float | None = None
    last_task_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return schedule_name(value)

    def definition(self) -> dict[str, Any]:
        """What was declared (no run times): two declarations are the same if these are."""
        return self.model_dump(
            mode="json",
            include={"name", "timing", "kind", "request", "options", "catch_up", "max_catch_up"},
        )


def schedule_name(value: Any) -> str:
    """A schedule name: 1 to 200 letters, digits and ``_ . : -``; else ``ValueError``."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"a schedule name is 1 to 150 letters, digits, '_', '.', ':' or '-', got {value!r:.300}"
        )
    return value


def zone(name: str) -> tzinfo:
    """The timezone ``name`` (an IANA name such as ``Europe/Paris``, or ``UTC``)."""
    if name == "UTC":
        return UTC
    if name.lower() == "localtime":  # a link to each machine's own zone, not one zone
        raise ValueError(
            f"{name!r} names each machine's own timezone, which machines sharing a schedule "
            "may not agree on: use an IANA name such as 'Europe/Paris' or 'UTC'"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None


def tick_after(timing: ScheduleTiming, after: float) -> float:
    """The first tick strictly after ``after``."""
    if timing.interval_s is not None:
        step = timing.interval_s
        count = math.floor(after / step) + 1
        while count * step <= after:  # float rounding at the boundary
            count += 1
        return count * step
    assert timing.cron is not None
    start = datetime.fromtimestamp(math.floor(after), zone(timing.timezone))
    return next(CronSim(timing.cron, start)).timestamp()


def _ticks_back(timing: ScheduleTiming, upto: float, since: float, limit: int) -> list[float]:
    """The latest ``limit`` ticks in ``[since, upto]``, newest first."""
    found: list[float] = []
    if timing.interval_s is not None:
        step = timing.interval_s
        count = math.floor(upto / step)
        while count * step > upto:
            count -= 1
        while len(found) < limit and count * step >= since:
            found.append(count * step)
            count -= 1
        return found
    assert timing.cron is not None
    # Iterating backwards from x.5 s starts with the whole second x itself.
    start = datetime.fromtimestamp(math.floor(upto) + 0.5, zone(timing.timezone))
    for moment in CronSim(timing.cron, start, reverse=True):
        at = moment.timestamp()
        if at < since or len(found) >= limit:
            break
        found.append(at)
    return found


def due_ticks(schedule: Schedule, now: float) -> tuple[list[float], float]:
    """The ticks to enqueue now (oldest first) and the schedule's next ``next_run_at``.

    Nothing is due before ``next_run_at``. Then the ticks from ``next_run_at`` up to ``now``
    are due: ``skip`` enqueues the latest of them, ``all`` the latest ``max_catch_up``.
    """
    if schedule.next_run_at > now:
        return [], schedule.next_run_at
    limit = 1 if schedule.catch_up == "skip" else schedule.max_catch_up
    ticks = _ticks_back(schedule.timing, now, schedule.next_run_at, limit)
    return sorted(ticks), tick_after(schedule.timing, now)


def first_run_at(timing: ScheduleTiming, now: float, last_tick_at: float | None) -> float:
    """When a newly declared timing ticks first: after ``now`` and after the last tick the
    schedule already enqueued (so that a changed timing never enqueues that tick again)."""
    return tick_after(timing, max(now, last_tick_at or 0.0))


def tick_key(name: str, tick_at: float) -> str:
    """The idempotency key of a schedule's task for one tick (one live task per tick)."""
    return f"schedule:{name}@{tick_at:.3f}"


def tick_task(schedule: Schedule, tick_at: float) -> Task:
    """The task a schedule enqueues for its tick at ``tick_at``: its request, its options,
    ``schedule_at`` the tick, the schedule's name (unless the options name the task), the
    schedule and the tick in ``metadata``, and the tick's idempotency key.

    Raises :class:`~worker.core.errors.UnknownRequestKindError` for a kind this process does
    not know, pydantic's ``ValidationError`` for a request or options it refuses."""
    request = model_for(schedule.kind).model_validate(schedule.request)
    options = schedule.options
    return Task(
        items=[TaskItem(request=request)],
        queue=options.queue,
        priority=options.priority,
        schedule_at=tick_at,
        max_attempts=options.max_attempts,
        timeout_s=options.timeout_s,
        visibility_timeout=options.visibility_timeout,
        retry_policy=options.retry_policy,
        name=options.name or schedule.name,
        metadata={**options.metadata, "schedule": schedule.name, "tick_at": tick_at},
        idempotency_key=tick_key(schedule.name, tick_at),
        on_success=options.on_success,
        on_failure=options.on_failure,
    )
