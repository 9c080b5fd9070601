"""The delivery loop: one per :class:`~worker.Worker`, next to the retry sweeper.

Each tick it (1) scans tasks that ended since the last scan and creates a delivery row for
each item with a ``response_url``, and (2) claims due deliveries, posts them and records each
outcome, scheduling a failed one again after backoff until its attempts are used up.

The scan runs twice over every finished task (:class:`~worker.runtime.endings.EndingsCursor`,
which callbacks share): at once, and again once ``settle_s`` has passed, for tasks that
committed late; creating rows is idempotent, so neither pass nor several workers can
duplicate a delivery, while a task that was resumed and ended again gets new ones.

A delivery never changes its task: the task's state and outcome are what they were.

A burst worker that ran dry calls :func:`drain_webhooks` before it exits, so that the tasks it
just finished are delivered by it rather than by whichever worker runs next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from worker.core import observers
from worker.core.backoff import retry_delay_s
from worker.core.clock import Clock
from worker.core.deliveries import Claimed, WebhookDelivery
from worker.core.errors import DatabaseLostError, QueueClosedError, QueueError, TaskNotFoundError
from worker.queue.worker_queue import WorkerQueue
from worker.runtime.endings import SETTLE_MARGIN_S, EndingsCursor
from worker.webhooks import guard, signing
from worker.webhooks.errors import AddressRefusedError, TransportError
from worker.webhooks.transport import HttpxTransport, Outgoing, Transport

log = logging.getLogger(__name__)

#: Finished tasks read per scan, and deliveries claimed per tick.
SCAN_BATCH = 1000
CLAIM_BATCH = 16
#: A claimed delivery is someone's for its timeout plus this; then it is due again.
LEASE_MARGIN_S = 30.0
#: How long :func:`drain_webhooks` (a burst worker about to exit) starts new rounds.
DRAIN_TIMEOUT_S = 30.0
#: Why a delivery of an outcome the task no longer has was given up.
SUPERSEDED = (
    "superseded: the task was resumed after this outcome (a new ending has its own delivery)"
)


class WebhookDispatcher:
    """Creates and sends the deliveries of one queue's database (see the module docstring)."""

    def __init__(
        self,
        queue: WorkerQueue,
        transport: Transport,
        *,
        clock: Clock | None = None,
        resolver: guard.Resolver = guard.system_resolver,
    ) -> None:
        self.queue = queue
        self.config = queue.config
        self._transport = transport
        self._clock = queue.clock if clock is None else clock
        self._resolver = resolver
        self._store = queue.storage.webhooks
        self.settle_s = self.config.busy_timeout + SETTLE_MARGIN_S
        self._cursor = EndingsCursor(
            self._store, self._clock, settle_s=self.settle_s, batch=SCAN_BATCH
        )

    async def tick(self) -> int:
        """One round: create missing deliveries, post the due ones; returns how many were
        claimed (a full batch means more may be due)."""
        await self.collect()
        return await self.deliver_due()

    # -- creating deliveries -------------------------------------------------------------

    async def collect(self) -> int:
        created = await self._cursor.collect()
        if created:
            log.debug("created %d webhook deliveries", created)
        return created

    @property
    def behind(self) -> bool:
        """The last quick scan was cut short: more tasks have ended than it read."""
        return self._cursor.behind

    # -- sending -------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        lease_s = self.config.webhook_timeout + LEASE_MARGIN_S
        claimed = await self._store.claim(self._clock(), lease_s, CLAIM_BATCH)
        if claimed:
            await asyncio.gather(*(self._attempt(c) for c in claimed))
        return len(claimed)

    async def _attempt(self, claimed: Claimed) -> None:
        config = self.config
        if claimed.attempts > config.webhook_max_attempts:  # the last attempt was cut short
            await self._failed(claimed, "attempts used up (the last one was interrupted)", None)
            return
        try:
            task = await self.queue.get_task(claimed.task_id)
        except TaskNotFoundError:
            await self._failed(claimed, "the task no longer exists", None, final=True)
            return
        if claimed.item_index >= len(task.items):
            await self._failed(claimed, "the task has no such item", None, final=True)
            return
        if task.finished_at != claimed.finished_at:  # only the current outcome can be sent
            await self._failed(claimed, SUPERSEDED, None, final=True)
            return
        now = self._clock()
        body = signing.encode(signing.payload(task, claimed.item_index))
        secret = config.webhook_secret
        headers = signing.headers(
            body,
            delivery_id=signing.delivery_id(claimed.task_id, claimed.item_index, claimed.ending),
            attempt=claimed.attempts,
            now=now,
            secret=None if secret is None else secret.get_secret_value(),
        )
        timeout_s = config.webhook_timeout
        try:
            async with asyncio.timeout(timeout_s):
                where = await guard.target(
                    claimed.url, allow_private=config.webhook_allow_private, resolver=self._resolver
                )
                if where.host_header is not None:
                    headers["Host"] = where.host_header
                status = await self._transport.post(
                    Outgoing(where.url, body, headers, where.sni_hostname), timeout_s
                )
        except AddressRefusedError as error:
            await self._failed(claimed, str(error), None, final=True)
            return
        except TransportError as error:
            await self._failed(claimed, str(error), None)
            return
        except TimeoutError:
            await self._failed(claimed, f"no response within {timeout_s} s", None)
            return
        if 200 <= status < 300:
            observers.webhook("delivered")
            if not await self._store.delivered(claimed, status, self._clock()):
                log.warning("webhook %s:%d delivered after its lease was lost",
                            claimed.task_id, claimed.item_index)  # fmt: skip
            return
        reason = "redirect not followed" if 300 <= status < 400 else "not a 2xx response"
        await self._failed(claimed, f"HTTP {status}: {reason}", status)

    async def _failed(
        self, claimed: Claimed, error: str, status: int | None, *, final: bool = False
    ) -> None:
        config = self.config
        now = self._clock()
        retry_at = None
        if not final and claimed.attempts < config.webhook_max_attempts:
            retry_at = now + retry_delay_s(
                claimed.attempts,
                base_delay_s=config.webhook_base_delay,
                multiplier=config.retry_backoff_multiplier,
                max_delay_s=config.max_retry_delay,
            )
        log.log(
            logging.INFO if retry_at is not None else logging.WARNING,
            "webhook %s:%d attempt %d failed: %s%s", claimed.task_id, claimed.item_index,
            claimed.attempts, error, "" if retry_at is None else " (will retry)",
        )  # fmt: skip
        observers.webhook("failed" if retry_at is not None else "given_up")
        await self._store.failed(claimed, error, status, now, retry_at)


async def webhook_loop(
    queue: WorkerQueue,
    *,
    stop: asyncio.Event | None = None,
    interval_s: float | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    resolver: guard.Resolver = guard.system_resolver,
) -> None:
    """Deliver webhooks every ``interval_s`` (default: the config's ``webhook_interval``)
    until ``stop`` is set or the coroutine is cancelled. A failed round is logged and tried
    again; an attempt cut short by cancellation is retried after its lease expires."""
    interval = queue.config.webhook_interval if interval_s is None else interval_s
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        if transport is None:
            transport = await stack.enter_async_context(HttpxTransport())
        dispatcher = WebhookDispatcher(queue, transport, clock=clock, resolver=resolver)
        while not stop.is_set():
            claimed = 0
            try:
                claimed = await dispatcher.tick()
            except (QueueClosedError, DatabaseLostError):
                raise
            except QueueError:
                log.exception("webhook round failed; trying again in %s s", interval)
            if claimed >= CLAIM_BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


async def drain_webhooks(
    queue: WorkerQueue,
    *,
    timeout_s: float = DRAIN_TIMEOUT_S,
    stop: asyncio.Event | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    resolver: guard.Resolver = guard.system_resolver,
) -> bool:
    """Run delivery rounds back to back until no delivery is due now: the deliveries of
    every task that has ended are created, and each due one is posted (a failed one that
    backed off into the future is left for later). No round starts once ``stop`` is set or
    ``timeout_s`` has passed; the POSTs of a round under way end within ``webhook_timeout``.
    Returns True when nothing due was left; otherwise logs what stopped it."""
    stop = stop or asyncio.Event()
    deadline = time.monotonic() + timeout_s
    async with contextlib.AsyncExitStack() as stack:
        if transport is None:
            transport = await stack.enter_async_context(HttpxTransport())
        dispatcher = WebhookDispatcher(queue, transport, clock=clock, resolver=resolver)
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                await dispatcher.collect()
                claimed = await dispatcher.deliver_due()
            except (QueueClosedError, DatabaseLostError):
                raise
            except QueueError:
                log.exception("webhook round failed; deliveries still due are left for later")
                return False
            if not claimed and not dispatcher.behind:
                return True
    why = "asked to stop" if stop.is_set() else f"{timeout_s} s passed"
    log.warning("stopped delivering webhooks (%s); deliveries still due are left for later", why)
    return False


async def deliveries_for(queue: WorkerQueue, task_id: str) -> list[WebhookDelivery]:
    """The webhook deliveries of a task's items (as ``queue.webhook_deliveries``)."""
    return await queue.webhook_deliveries(task_id)
