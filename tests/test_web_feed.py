"""The change feed: fifty subscribers cost the database exactly what one does, and a change
another connection makes (a claim, progress, a completion) reaches every subscriber, on
both backends, through the real change detection (SQLite's files, PostgreSQL's LISTEN)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from tests.support import FakeClock, database_of
from worker import QueueConfig, TaskState, WorkerQueue
from worker.builtins.requests import CallRequest
from worker.core.errors import QueueClosedError
from worker.core.models import Task, TaskItem
from worker.runtime.wakeup import DatabaseWatcher
from worker.storage.sqlite.connection import sqlite_path
from worker.web import feed as feed_module
from worker.web.events import OVERVIEW, make_feed, task_topic
from worker.web.feed import Subscription, trigger_for


class ManualTrigger:
    """A trigger the test fires: rounds run exactly when it says (and for new subscribers)."""

    def __init__(self) -> None:
        self.fired = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        await self.fired.wait()
        self.fired.clear()

    def close(self) -> None:
        pass


@contextlib.contextmanager
def counted_statements(queue: WorkerQueue) -> Iterator[list[str]]:
    """Every statement ``queue``'s engine sends while the block runs."""
    sent: list[str] = []
    engine = database_of(queue).engine.sync_engine

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def until(check: Any, what: str, within_s: float = 20.0) -> None:
    give_up = time.monotonic() + within_s
    while not check():
        if time.monotonic() > give_up:
            raise AssertionError(f"not {what} within {within_s} s")
        await asyncio.sleep(0.01)


def call_task(**fields: Any) -> Task:
    return Task(items=[TaskItem(request=CallRequest(target="os:getcwd"))], **fields)


def progress_of(payload: object) -> Any:
    assert isinstance(payload, dict)
    return payload["task"]["progress"]


async def test_fifty_subscribers_cost_the_database_what_one_does(queue: WorkerQueue) -> None:
    await queue.enqueue([call_task()])
    [task] = await queue.list_tasks()
    [claimed] = await queue.dequeue(1)
    trigger = ManualTrigger()
    feed = make_feed(queue, read_only=False, trigger=lambda: trigger)
    topics = [OVERVIEW, task_topic(task.id)]

    async def one_round(subscriptions: list[Subscription], current: float) -> list[str]:
        """A progress report, one round, every subscriber served: the statements it sent."""
        await queue.set_progress(task.id, claimed.lease_id or "", current, 10, f"at {current}")
        rounds = feed.rounds
        with counted_statements(queue) as sent:
            trigger.fired.set()
            await until(
                lambda: all(
                    (progress_of(s.sent.get(topics[1])) or {}).get("current") == current
                    for s in subscriptions
                ),
                f"progress {current} at every subscriber",
            )
        assert feed.rounds == rounds + 1
        return sent

    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(feed.subscribe(topics))
        await until(lambda: len(first.sent) == 2, "the first payloads")
        alone = await one_round([first], 1)
        assert alone, "a round reads the database"
        others = [await stack.enter_async_context(feed.subscribe(topics)) for _ in range(49)]
        everyone = [first, *others]
        await until(lambda: all(len(s.sent) == 2 for s in everyone), "everyone's first payloads")
        crowd = await one_round(everyone, 2)
        assert feed.subscribers == 50
        assert feed.starts == 1
        assert len(crowd) == len(alone), (crowd, alone)
        assert feed.reads == feed.rounds * len(topics)
        for subscription in everyone:
            assert progress_of(subscription.sent[topics[1]])["message"] == "at 2"
            assert "<table>" in str(subscription.sent[OVERVIEW])
    assert not feed.running  # the last subscriber's end stopped the poller


async def test_a_change_from_another_connection_reaches_every_subscriber(
    queue: WorkerQueue, config: QueueConfig, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "REFRESH_S", 60.0)  # only a detected change starts a round
    await queue.enqueue([call_task()])
    [task] = await queue.list_tasks()
    feed = make_feed(queue, read_only=False)
    topic = task_topic(task.id)
    async with WorkerQueue(config, clock=clock) as other, contextlib.AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(feed.subscribe([topic])) for _ in range(10)
        ]

        def everyone(check: Any) -> Any:
            def seen(s: Subscription) -> bool:
                payload = s.sent.get(topic)
                return isinstance(payload, dict) and bool(check(payload["task"]))

            return lambda: all(seen(s) for s in subscriptions)

        await until(everyone(lambda t: t["state"] == "pending"), "pending seen")
        [claimed] = await other.dequeue(1)
        await until(everyone(lambda t: t["state"] == "processing"), "the claim seen")
        await other.set_progress(task.id, claimed.lease_id or "", 3, 4, "three of four")
        await until(
            everyone(lambda t: (t["progress"] or {}).get("fraction") == 0.75), "the progress seen"
        )
        await other.mark_as_complete(task.id, lease_id=claimed.lease_id)
        await until(everyone(lambda t: t["state"] == "completed" and t["terminal"]), "the end")
        assert feed.starts == 1
    assert (await queue.get_task(task.id)).state is TaskState.COMPLETED


async def test_a_slow_subscriber_keeps_the_newest_payloads(queue: WorkerQueue) -> None:
    subscription = Subscription(["t"])
    for n in range(feed_module.SUBSCRIBER_BACKLOG + 5):
        subscription.offer("t", n)
    subscription.offer("t", feed_module.SUBSCRIBER_BACKLOG + 4)  # the same again: not queued
    assert subscription.dropped == 5
    got = [await subscription.next() for _ in range(feed_module.SUBSCRIBER_BACKLOG)]
    assert got == [("t", n) for n in range(5, feed_module.SUBSCRIBER_BACKLOG + 5)]


async def test_closing_the_feed_ends_every_subscription(queue: WorkerQueue) -> None:
    feed = make_feed(queue, read_only=False)
    ended = []

    async def follow() -> None:
        async with feed.subscribe([OVERVIEW]) as subscription:
            while await subscription.next() is not None:
                pass
            ended.append(True)

    followers = [asyncio.create_task(follow()) for _ in range(3)]
    await until(lambda: feed.subscribers == 3 and feed.rounds >= 1, "three followers")
    await feed.close()
    async with asyncio.timeout(10):
        await asyncio.gather(*followers)
    assert ended == [True] * 3
    assert not feed.running
    with pytest.raises(QueueClosedError, match="shutting down"):
        async with feed.subscribe([OVERVIEW]):
            pass


async def test_the_trigger_watches_files_on_sqlite_and_listens_on_postgres(
    queue: WorkerQueue, backend: str, clock: FakeClock
) -> None:
    trigger = trigger_for(queue)
    try:
        watching = trigger._watcher is not None
        assert watching is (backend == "sqlite")
        started = time.monotonic()
        await queue.enqueue([call_task()])  # pokes this process's notifier: at once
        await asyncio.wait_for(trigger.wait(60), 10)
        assert time.monotonic() - started < 10
    finally:
        trigger.close()


async def settled(queue: WorkerQueue, quiet_s: float = 1.0, within_s: float = 30.0) -> None:
    """Until the SQLite files have not changed for ``quiet_s``."""
    path = sqlite_path(queue.config.database_url)
    assert path is not None
    watcher = DatabaseWatcher(path)
    give_up = time.monotonic() + within_s
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        assert time.monotonic() < give_up, "the database files kept changing"
        if watcher.changed():
            quiet_since = time.monotonic()
        await asyncio.sleep(0.02)


@pytest.mark.sqlite_only("PostgreSQL's feed looks every 0.5 s: what sends no NOTIFY")
async def test_an_idle_feed_on_sqlite_reads_nothing(
    queue: WorkerQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "REFRESH_S", 60.0)  # no round by the clock either
    await queue.enqueue([call_task()])
    feed = make_feed(queue, read_only=False)
    async with feed.subscribe([OVERVIEW]) as subscription:
        await until(lambda: OVERVIEW in subscription.sent, "the first payload")
        await settled(queue)  # the enqueue's checkpoint, if any, is behind us
        await asyncio.sleep(2 * feed_module.STAT_INTERVAL_S + feed_module.MIN_GAP_S)
        rounds = feed.rounds
        with counted_statements(queue) as sent:
            await asyncio.sleep(1.0)  # no commit anywhere: the files do not change
        assert sent == []
        assert feed.rounds == rounds
