"""Webhooks end to end: a real Worker on either backend, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import JsonValue

from tests.runtime_worker import JobRequest, runtime_config, wait_until
from worker import (
    PermanentError,
    ProcessorRegistry,
    Task,
    TaskContext,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
)
from worker.webhooks import DeliveryState, WebhookDelivery, deliveries_for, drain_webhooks
from worker.webhooks.dispatcher import WebhookDispatcher

pytestmark = pytest.mark.timeout(30)

SECRET = "s3cret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: answers each request with the next of ``statuses`` (then 200)."""

    statuses: list[int] = field(default_factory=list)
    location: str = "/elsewhere"
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(request_line.split()[1], headers, body))
            status = self.statuses.pop(0) if self.statuses else 200
            extra = f"Location: {self.url(self.location)}\r\n" if 300 <= status < 400 else ""
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
                .encode()
            )  # fmt: skip
            await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def receiver(statuses: Iterable[int] = ()) -> AsyncIterator[Receiver]:
    server_state = Receiver(statuses=list(statuses))
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield server_state


def webhook_config(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "webhook_interval": 0.02,
        "webhook_base_delay": 0.0,
        "webhook_allow_private": True,
        "webhook_secret": SECRET,
        "webhook_timeout": 5.0,
    }
    values.update(fields)
    return values


async def ok(item: TaskItem, ctx: TaskContext) -> JsonValue:
    return {"index": ctx.index}


def registry_with(handler: Any = None) -> ProcessorRegistry:
    registry = ProcessorRegistry()
    registry.add("job", handler or ok)
    return registry


@asynccontextmanager
async def worker_running(
    database_url: str, handler: Any = None, **fields: Any
) -> AsyncIterator[WorkerQueue]:
    """A queue on ``database_url`` and a Worker running on it in the background."""
    config = runtime_config(database_url, **webhook_config(**fields))
    async with WorkerQueue(config) as queue:
        worker = Worker(queue, registry_with(handler), handle_signals=False)
        job = asyncio.create_task(worker.run())
        try:
            yield queue
        finally:
            worker.request_stop()
            async with asyncio.timeout(10):
                await job


def task_with(*urls: str | None) -> Task:
    return Task(items=[TaskItem(request=JobRequest(), response_url=url) for url in urls])


async def settled(
    queue: WorkerQueue, task_id: str, count: int, *states: DeliveryState
) -> list[WebhookDelivery]:
    """Wait until the task has ``count`` deliveries, all in one of ``states``."""

    async def done() -> bool:
        found = await queue.webhook_deliveries(task_id)
        return len(found) == count and all(d.state in states for d in found)

    await wait_until(done, 10.0, f"{count} deliveries of {task_id} in {states}")
    return await queue.webhook_deliveries(task_id)


@dataclass
class Rounds:
    """How many rounds the background delivery loops (``WebhookDispatcher.tick``) finished."""

    count: int = 0

    async def wait_for(self, more: int, what: str) -> None:
        """Wait until ``more`` rounds have ended from now (rounds of the loop, not a guess of
        how long they take)."""
        await self.reach(self.count + more, what)

    async def reach(self, total: int, what: str) -> None:
        async def reached() -> bool:
            return self.count >= total

        await wait_until(reached, 10.0, what, step=0.005)


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> Rounds:
    counter = Rounds()
    tick = WebhookDispatcher.tick

    async def counted(self: WebhookDispatcher) -> int:
        try:
            return await tick(self)
        finally:
            counter.count += 1

    monkeypatch.setattr(WebhookDispatcher, "tick", counted)
    return counter


def verify(request: Received, secret: str = SECRET) -> bool:
    timestamp = request.headers["x-webhook-timestamp"]
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    return hmac.compare_digest(
        f"sha256={digest.hexdigest()}", request.headers["x-webhook-signature"]
    )


# -- delivery ------------------------------------------------------------------------------


async def test_one_signed_post_per_item_with_a_response_url(database_url: str) -> None:
    async with receiver() as server, worker_running(database_url) as queue:
        task = task_with(server.url("/a"), None, server.url("/c"))
        await queue.enqueue([task])
        deliveries = await settled(queue, task.id, 2, DeliveryState.DELIVERED)
        stored = await queue.get_task(task.id)
        assert await deliveries_for(queue, task.id) == deliveries  # the same, as a function

    assert [d.item_index for d in deliveries] == [0, 2]
    assert all(d.attempts == 1 and d.last_status == 200 for d in deliveries)
    assert sorted(r.path for r in server.requests) == ["/a", "/c"]
    for request in server.requests:
        assert verify(request)
        assert not verify(request, "wrong secret")
        body = request.json()
        index = 0 if request.path == "/a" else 2
        assert body == {
            "task_id": task.id,
            "item_index": index,
            "queue": "default",
            "name": None,
            "state": "completed",
            "result": {"index": index},
            "error": None,
            "last_error": None,
            "created_at": stored.created_at,
            "started_at": stored.started_at,
            "finished_at": stored.finished_at,
            "attempts": 1,
        }
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-webhook-id"] == f"{task.id}:{index}"
        assert request.headers["x-webhook-attempt"] == "1"


async def test_a_discarded_task_posts_its_error(database_url: str) -> None:
    async def broken(item: TaskItem, ctx: TaskContext) -> JsonValue:
        raise PermanentError("no voice")

    async with receiver() as server, worker_running(database_url, broken) as queue:
        task = task_with(server.url())
        await queue.enqueue([task])
        await settled(queue, task.id, 1, DeliveryState.DELIVERED)

    (request,) = server.requests
    body = request.json()
    assert body["state"] == "discarded"
    assert "no voice" in body["last_error"]
    assert body["result"] is None


async def test_a_resumed_task_that_ends_again_is_delivered_again(database_url: str) -> None:
    async def fails_first(item: TaskItem, ctx: TaskContext) -> JsonValue:
        if ctx.task.attempt_count == 1:
            raise PermanentError("no voice")
        return {"attempt": ctx.task.attempt_count}

    async with receiver() as server, worker_running(database_url, fails_first) as queue:
        task = task_with(server.url())
        await queue.enqueue([task])
        (first,) = await settled(queue, task.id, 1, DeliveryState.DELIVERED)
        await queue.mark_as_resume(task.id)
        first_again, second = await settled(queue, task.id, 2, DeliveryState.DELIVERED)
        stored = await queue.get_task(task.id)

    assert first_again == first
    assert (first.ending, second.ending) == (1, 2)
    assert second.finished_at == stored.finished_at
    assert second.finished_at > first.finished_at
    discarded, completed = (r.json() for r in server.requests)
    assert (discarded["state"], discarded["result"]) == ("discarded", None)
    assert "no voice" in discarded["last_error"]
    assert (completed["state"], completed["result"]) == ("completed", {"attempt": 2})
    assert completed["finished_at"] == stored.finished_at
    assert [r.headers["x-webhook-id"] for r in server.requests] == [
        f"{task.id}:0",
        f"{task.id}:0:2",
    ]
    assert all(r.headers["x-webhook-attempt"] == "1" for r in server.requests)


async def test_a_server_that_fails_twice_gets_three_attempts(database_url: str) -> None:
    async with receiver([500, 500]) as server, worker_running(database_url) as queue:
        task = task_with(server.url())
        await queue.enqueue([task])
        (delivery,) = await settled(queue, task.id, 1, DeliveryState.DELIVERED)
        stored = await queue.get_task(task.id)

    assert delivery.attempts == 3
    assert delivery.last_status == 200
    assert delivery.last_error is None
    assert [r.headers["x-webhook-attempt"] for r in server.requests] == ["1", "2", "3"]
    assert stored.state is TaskState.COMPLETED
    assert stored.attempt_count == 1
    assert stored.items[0].result == {"index": 0}


async def test_attempts_used_up_leave_the_delivery_failed_and_the_task_alone(
    database_url: str,
) -> None:
    async with (
        receiver([503, 503, 503]) as server,
        worker_running(database_url, webhook_max_attempts=2) as queue,
    ):
        task = task_with(server.url())
        await queue.enqueue([task])
        (delivery,) = await settled(queue, task.id, 1, DeliveryState.FAILED)
        stored = await queue.get_task(task.id)

    assert delivery.attempts == 2
    assert delivery.last_status == 503
    assert delivery.last_error == "HTTP 503: not a 2xx response"
    assert len(server.requests) == 2
    assert stored.state is TaskState.COMPLETED


async def test_a_failed_delivery_is_retried_after_a_restart(
    database_url: str, rounds: Rounds
) -> None:
    async with receiver([500]) as server:
        async with worker_running(database_url, webhook_base_delay=1.0) as queue:
            task = task_with(server.url())
            await queue.enqueue([task])

            async def failed_once() -> bool:
                found = await queue.webhook_deliveries(task.id)
                return bool(found) and found[0].last_status == 500

            await wait_until(failed_once, 10.0, "the first attempt failed")
        # The first worker and its queue are gone; the retry is due about 1 s later.
        assert len(server.requests) == 1
        async with worker_running(database_url) as again:
            (delivery,) = await settled(again, task.id, 1, DeliveryState.DELIVERED)
            await rounds.wait_for(3, "three more rounds")  # room for a duplicate, were there one

    assert delivery.attempts == 2
    assert [r.headers["x-webhook-attempt"] for r in server.requests] == ["1", "2"]
    assert server.requests[0].body == server.requests[1].body


# -- burst mode ----------------------------------------------------------------------------

#: So long that only a drain, never the background loop's next round, delivers in these tests.
IDLE_LOOP = {"webhook_interval": 60.0}


async def test_a_burst_worker_delivers_before_it_exits(database_url: str) -> None:
    async with receiver() as server:
        config = runtime_config(database_url, **webhook_config(**IDLE_LOOP))
        async with WorkerQueue(config) as queue:
            tasks = [task_with(server.url(f"/{n}")) for n in range(20)]  # two claim batches
            await queue.enqueue(tasks)
            worker = Worker(queue, registry_with(), burst=True, handle_signals=False)
            async with asyncio.timeout(20):
                counts = await worker.run()
            found = [await queue.webhook_deliveries(task.id) for task in tasks]  # no waiting

    assert counts["completed"] == 20
    assert all(len(d) == 1 and d[0].state is DeliveryState.DELIVERED for d in found)
    assert sorted(r.path for r in server.requests) == sorted(f"/{n}" for n in range(20))


async def test_a_burst_worker_leaves_a_delivery_that_backed_off_for_later(
    database_url: str,
) -> None:
    async with receiver([500]) as server:
        fields = webhook_config(webhook_base_delay=60.0, **IDLE_LOOP)
        async with WorkerQueue(runtime_config(database_url, **fields)) as queue:
            task = task_with(server.url())
            await queue.enqueue([task])
            started = time.monotonic()
            await Worker(queue, registry_with(), burst=True, handle_signals=False).run()
            took = time.monotonic() - started
            (delivery,) = await queue.webhook_deliveries(task.id)

    assert took < 10, "it does not wait for the retry"
    assert len(server.requests) == 1
    assert delivery.state is DeliveryState.PENDING
    assert (delivery.attempts, delivery.last_status) == (1, 500)
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > time.time() + 50


async def test_a_drain_ends_at_its_timeout_or_when_stopped(database_url: str) -> None:
    async with receiver([500] * 100_000) as server:
        fields = webhook_config(
            webhook_max_attempts=100_000, retry_backoff_multiplier=1.0, **IDLE_LOOP
        )
        async with WorkerQueue(runtime_config(database_url, **fields)) as queue:
            await queue.enqueue([task_with(server.url())])
            (task,) = await queue.dequeue(1)
            await queue.mark_as_complete(task.id, lease_id=task.lease_id)

            started = time.monotonic()
            # Long enough for several rounds on a busy machine (0.3 s allowed one, once).
            assert not await drain_webhooks(queue, timeout_s=2.0), "a delivery is still due"
            took = time.monotonic() - started
            sent = len(server.requests)  # retried at once (no delay), until the drain's end
            assert sent > 1
            stop = asyncio.Event()
            stop.set()
            assert not await drain_webhooks(queue, stop=stop)
            assert len(server.requests) == sent

    assert 2.0 <= took < 10


async def test_a_stopped_worker_does_not_wait_for_deliveries(
    database_url: str, rounds: Rounds
) -> None:
    async def slow(item: TaskItem, ctx: TaskContext) -> JsonValue:
        await rounds.reach(1, "the first round")  # its next is 60 s away
        return None

    async with receiver() as server:
        async with worker_running(database_url, slow, **IDLE_LOOP) as queue:
            task = task_with(server.url())
            await queue.enqueue([task])
            await wait_until(
                lambda: _state_is(queue, task.id, TaskState.COMPLETED), 10.0, "task completed"
            )
        assert server.requests == []  # the next worker delivers it


# -- where deliveries may go ---------------------------------------------------------------


async def test_private_addresses_are_refused_without_a_connection(database_url: str) -> None:
    async with receiver() as server, worker_running(database_url, webhook_allow_private=False) as q:
        task = task_with(
            server.url(),
            "http://10.1.2.3:9/hook",
            server.url(host="localhost"),
            server.url(host="[::ffff:127.0.0.1]"),
            "http://169.254.169.254/latest/meta-data",
        )
        await q.enqueue([task])
        deliveries = await settled(q, task.id, 5, DeliveryState.FAILED)

    assert server.connections == 0
    for delivery in deliveries:
        assert delivery.attempts == 1, "a refusal is final"
        assert delivery.last_status is None
        assert delivery.last_error is not None
        assert "non-public address" in delivery.last_error
        assert "QUEUE_WEBHOOK_ALLOW_PRIVATE" in delivery.last_error


async def test_a_redirect_is_not_followed(database_url: str) -> None:
    async with receiver([302]) as server, worker_running(database_url, webhook_max_attempts=1) as q:
        task = task_with(server.url())
        await q.enqueue([task])
        (delivery,) = await settled(q, task.id, 1, DeliveryState.FAILED)

    assert [r.path for r in server.requests] == ["/hook"]
    assert delivery.last_status == 302
    assert delivery.last_error == "HTTP 302: redirect not followed"


async def test_tasks_without_response_urls_create_no_deliveries(
    database_url: str, rounds: Rounds
) -> None:
    async with worker_running(database_url) as queue:
        task = task_with(None, None)
        await queue.enqueue([task])
        await wait_until(
            lambda: _state_is(queue, task.id, TaskState.COMPLETED), 10.0, "task completed"
        )
        await rounds.wait_for(3, "three more rounds")
        assert await queue.webhook_deliveries(task.id) == []


async def _state_is(queue: WorkerQueue, task_id: str, state: TaskState) -> bool:
    return (await queue.get_task(task_id)).state is state
