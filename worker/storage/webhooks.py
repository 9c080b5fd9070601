"""All webhook SQL: the scan of finished tasks, delivery rows, claims and outcomes.

The scan (:mod:`worker.storage.endings`, which callbacks share) reads ``tasks`` through the
partial index on ``finished_at`` and never writes to it;
the hot path (enqueue, claim, acknowledge) never touches these tables. Rows are claimed
and settled as a :class:`~worker.storage.outbox.LeasedOutbox` (a lease per attempt, an
outcome written only while that lease is still the row's). (Purge,
in :mod:`worker.storage.control`, deletes a purged task's rows in its own transaction.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from worker.core.deliveries import Claimed, DeliveryState, Finished, WebhookDelivery
from worker.core.states import TERMINAL_STATES
from worker.storage.backend import Backend, Insert
from worker.storage.database import Database
from worker.storage.endings import EndedScan
from worker.storage.outbox import PENDING, LeasedOutbox
from worker.storage.schema import tasks, webhook_deliveries, webhook_scan
from worker.storage.sql import has_response_url, state_in

_PENDING = PENDING
_D = webhook_deliveries.c


def _has_url() -> sa.ColumnElement[bool]:
    """Whether some item of a task has a response URL (a request field of that name may
    match too on SQLite, which reads the text: that costs a parse, see :func:`_urls`)."""
    return has_response_url(sa.type_coerce(tasks.c.task_items, sa.Text))


def _urls(items_text: str | None) -> dict[int, str]:
    if items_text is None:
        return {}
    try:
        items = json.loads(items_text or "[]")
    except ValueError:
        return {}
    if not isinstance(items, list):
        return {}
    return {
        index: item["response_url"]
        for index, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("response_url"), str)
    }


def _insert(backend: Backend) -> Insert:
    """One delivery row per parameter set (``task_id``, ``item_index``, ``url``,
    ``finished_at``, ``now``), only while the task still ends at ``finished_at``; an existing
    row for that ending is left alone. A row is made only for its task's current ending, so
    the item's rows already there are of its earlier endings: ``ending`` counts on from them
    (not from their ``finished_at``, which a clock set back could leave out of order)."""
    task_id = sa.bindparam("task_id", type_=sa.String)
    index = sa.bindparam("item_index", type_=sa.Integer)
    finished_at = sa.bindparam("finished_at", type_=sa.Float)
    now = sa.bindparam("now", type_=sa.Float)
    earlier = (
        sa.select(sa.func.count())
        .select_from(webhook_deliveries)
        .where(_D.task_id == task_id, _D.item_index == index)
        .scalar_subquery()
    )
    row = sa.select(
        task_id, index, sa.bindparam("url", type_=sa.Text), finished_at, earlier + 1,
        sa.literal(_PENDING), sa.literal(0), now, now, now,
    ).where(tasks.c.id == task_id, tasks.c.finished_at == finished_at)  # fmt: skip
    columns = [
        "task_id", "item_index", "url", "finished_at", "ending",
        "state", "attempts", "next_attempt_at", "created_at", "updated_at",
    ]  # fmt: skip
    return backend.insert(webhook_deliveries).from_select(columns, row).on_conflict_do_nothing()


def _wanted() -> sa.ColumnElement[bool]:
    return sa.and_(state_in(*TERMINAL_STATES), _has_url())


def _items_text() -> list[sa.ColumnElement[Any]]:
    return [sa.type_coerce(tasks.c.task_items, sa.Text)]


class WebhookStore:
    def __init__(self, db: Database) -> None:
        scan = EndedScan(db, webhook_scan, _wanted, _items_text, "webhook")
        self._outbox = LeasedOutbox(db, webhook_deliveries, scan, _insert, "webhook deliveries")

    # -- the scan of finished tasks ------------------------------------------------------

    async def scanned_to(self) -> float:
        """Tasks that finished at or before this have their delivery rows."""
        return await self._outbox.scan.scanned_to()

    async def finished(
        self, after: float, upto: float | None, limit: int
    ) -> tuple[list[Finished], bool, float | None]:
        """Ended tasks with ``after < finished_at [<= upto]`` whose items have a response URL,
        oldest first, with those URLs; whether ``limit`` cut the scan short; and how far it
        looked (:meth:`worker.storage.endings.EndedScan.ended`). Tasks without URLs (most)
        are passed over in SQL: they are neither sent nor parsed.
        """
        rows, cut, reached = await self._outbox.scan.ended(after, upto, limit)
        found = [Finished(str(i), float(at), _urls(items)) for i, at, items in rows]
        return found, cut, reached

    async def add(self, found: Sequence[Finished], now: float, scanned_to: float | None) -> int:
        """Create the missing delivery rows (due now) and advance the scan mark; one
        transaction. Returns how many rows were created.

        A row is one item's delivery of one ending of its task, told apart by the task's
        ``finished_at``: seeing the same ending again creates nothing, and a resumed task that
        ended again gets new rows (``ending`` + 1). A task that no longer ends at that time
        (resumed, or purged, since the scan read it) gets none."""
        rows = [
            {
                "task_id": task.task_id,
                "item_index": index,
                "url": url,
                "finished_at": task.finished_at,
                "now": now,
            }
            for task in found
            for index, url in sorted(task.urls.items())
        ]
        endings = [(task.task_id, task.finished_at) for task in found]
        return await self._outbox.add(rows, endings, scanned_to)

    # -- attempts ------------------------------------------------------------------------

    async def claim(self, now: float, lease_s: float, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due deliveries for one attempt each, oldest due first."""
        rows = await self._outbox.claim(
            now, lease_s, limit, ("task_id", "item_index", "url", "finished_at", "ending")
        )
        return [
            Claimed(int(i), str(t), int(n), str(u), int(a), str(lease), float(f), int(e))
            for i, t, n, u, f, e, a, lease in rows
        ]

    async def delivered(self, claimed: Claimed, status: int, now: float) -> bool:
        """pending -> delivered; False if the claim's lease was lost meanwhile."""
        values = {
            "state": DeliveryState.DELIVERED.value,
            "last_status": status,
            "last_error": None,
            "delivered_at": now,
            "updated_at": now,
        }
        return await self._outbox.settle(claimed.id, claimed.lease_id, values)

    async def failed(
        self,
        claimed: Claimed,
        error: str,
        status: int | None,
        now: float,
        retry_at: float | None,
    ) -> bool:
        """Record a failed attempt: due again at ``retry_at``, or failed for good (None)."""
        values = {"last_error": error, "last_status": status, "updated_at": now}
        outcome = LeasedOutbox.failure(values, DeliveryState.FAILED.value, retry_at)
        return await self._outbox.settle(claimed.id, claimed.lease_id, outcome)

    # -- reads ---------------------------------------------------------------------------

    async def for_task(self, task_id: str) -> list[WebhookDelivery]:
        rows = await self._outbox.for_task(task_id, ("ending", "item_index"))
        return [_delivery(row._mapping) for row in rows]


def _delivery(row: Any) -> WebhookDelivery:
    pending = row["state"] == _PENDING
    return WebhookDelivery(
        task_id=row["task_id"],
        item_index=row["item_index"],
        url=row["url"],
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if pending else None,
        last_error=row["last_error"],
        last_status=row["last_status"],
        delivered_at=row["delivered_at"],
        finished_at=row["finished_at"],
        ending=row["ending"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
