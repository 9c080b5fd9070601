"""Persisted history of acknowledgements (``task_history``): written by the ack's own
transaction, read by the dashboard's charts and ``/api/history``.

Each acknowledgement batch adds one row of values per (queue, minute, outcome) it touched
(grouped in Python, one ``INSERT ... ON CONFLICT DO UPDATE`` executed for them all), so
the cost on the hot path is one statement per batch, not per task. Processing time is
``now - started_at`` (the claim of the attempt acknowledged), counted into the fixed
log-scale buckets of :data:`worker.storage.schema.HISTORY_BOUNDS`; p50/p95 are estimated
from those counts (:func:`quantile`), to within a factor of two.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from worker.storage.backend import Backend, Insert
from worker.storage.schema import HISTORY_BOUNDS, HISTORY_BUCKETS, task_history
from worker.storage.sql import stored_text

if TYPE_CHECKING:  # the database imports the statements, which import this module
    from worker.storage.database import Database

_H = task_history.c
#: How long rows are kept (the day window and a margin), in minutes.
KEEP_MINUTES = 2 * 24 * 60


def upsert(backend: Backend) -> Insert:
    """The upsert of one row of values: counts and sums add up with what the row holds."""
    names = ["queue", "minute", "outcome", "count", "seconds", *HISTORY_BUCKETS]
    insert = backend.insert(task_history).values({name: sa.bindparam(name) for name in names})
    adds = {
        name: task_history.c[name] + insert.excluded[name]
        for name in ["count", "seconds", *HISTORY_BUCKETS]
    }
    return insert.on_conflict_do_update(index_elements=["queue", "minute", "outcome"], set_=adds)


def bucket_of(seconds: float) -> int:
    """The index of the bucket ``seconds`` falls in."""
    return bisect.bisect_left(HISTORY_BOUNDS, seconds)


def rows_of(acked: Sequence[Sequence[Any]], now: float) -> list[dict[str, Any]]:
    """The upsert's values for the rows an acknowledgement statement returned:
    ``(id, dependents, state, lease_id, queue, started_at)`` each."""
    minute = int(now // 60)
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for row in acked:
        key = (stored_text(row[4]), str(row[2]))
        values = grouped.get(key)
        if values is None:
            values = grouped[key] = {
                "queue": key[0], "minute": minute, "outcome": key[1], "count": 0,
                "seconds": 0.0, **dict.fromkeys(HISTORY_BUCKETS, 0),
            }  # fmt: skip
        taken = max(now - float(row[5]), 0.0) if row[5] is not None else 0.0
        values["count"] += 1
        values["seconds"] += taken
        values[HISTORY_BUCKETS[bucket_of(taken)]] += 1
    return list(grouped.values())


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of the counts per bucket, interpolated log-linearly inside its
    bucket (the first bucket linearly from 0); None without counts."""
    total = sum(buckets)
    if total == 0:
        return None
    wanted = q * total
    seen = 0
    for index, number in enumerate(buckets):
        if number and seen + number >= wanted:
            share = (wanted - seen) / number
            upper = HISTORY_BOUNDS[min(index, len(HISTORY_BOUNDS) - 1)]
            if index == 0:
                return upper * share
            if index >= len(HISTORY_BOUNDS):
                return upper  # the open-ended bucket: at least its lower bound
            lower = HISTORY_BOUNDS[index - 1]
            return lower * math.exp(share * math.log(upper / lower))
        seen += number
    return HISTORY_BOUNDS[-1]


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One time bucket of a series: its start (epoch seconds), tasks finished by outcome,
    and the processing-time estimates of those that completed or failed in it."""

    at: float
    outcomes: dict[str, int] = field(default_factory=dict)
    p50_s: float | None = None
    p95_s: float | None = None
    mean_s: float | None = None


@dataclass(frozen=True, slots=True)
class HistoryTotals:
    """Acknowledgements ever recorded (within what is kept), per queue and outcome."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)


class HistoryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def series(
        self, queue: str | None, since: float, until: float, step_minutes: int
    ) -> list[HistoryPoint]:
        """Points every ``step_minutes`` from ``since`` to ``until`` (empty ones included),
        summed over the queues (or one ``queue``)."""
        first = int(since // 60)
        last = int(until // 60)
        # Summed per step in SQL: a day is 96 rows per outcome, not 1,440.
        slot_of = ((_H.minute - first) // step_minutes).label("slot")
        query = (
            sa.select(
                slot_of,
                _H.outcome,
                sa.func.sum(_H.count),
                sa.func.sum(_H.seconds),
                *(sa.func.sum(_H[name]) for name in HISTORY_BUCKETS),
            )
            .where(_H.minute >= first, _H.minute <= last)
            .group_by(slot_of, _H.outcome)
        )
        if queue is not None:
            query = query.where(_H.queue == queue)
        async with self._db.read("task history") as conn:
            rows = (await conn.execute(query)).all()
        slots = (last - first) // step_minutes + 1
        outcomes: list[dict[str, int]] = [{} for _ in range(slots)]
        seconds = [0.0] * slots
        buckets = [[0] * len(HISTORY_BUCKETS) for _ in range(slots)]
        for found_slot, outcome, count, total_s, *counts in rows:
            slot = int(found_slot)
            outcomes[slot][str(outcome)] = outcomes[slot].get(str(outcome), 0) + int(count)
            seconds[slot] += float(total_s)
            for index, number in enumerate(counts):
                buckets[slot][index] += int(number)
        points = []
        for slot in range(slots):
            done = sum(outcomes[slot].values())
            points.append(
                HistoryPoint(
                    at=float((first + slot * step_minutes) * 60),
                    outcomes=outcomes[slot],
                    p50_s=quantile(buckets[slot], 0.5),
                    p95_s=quantile(buckets[slot], 0.95),
                    mean_s=seconds[slot] / done if done else None,
                )
            )
        return points

    async def totals(self) -> HistoryTotals:
        """Counts per queue and outcome over the rows kept (for ``/metrics``)."""
        query = sa.select(_H.queue, _H.outcome, sa.func.sum(_H.count)).group_by(
            _H.queue, _H.outcome
        )
        async with self._db.read("task history totals") as conn:
            rows = (await conn.execute(query)).all()
        return HistoryTotals({(str(q), str(o)): int(n) for q, o, n in rows})

    async def prune(self, now: float) -> int:
        """Drop rows older than :data:`KEEP_MINUTES`; how many went."""
        statement = sa.delete(task_history).where(_H.minute < int(now // 60) - KEEP_MINUTES)
        async with self._db.write("prune history", lock_first=False) as conn:
            return int((await conn.execute(statement)).rowcount or 0)
