"""Webhook parts one at a time: signing, the address guard, the transport seam, the store's
claims and leases, the scan of finished tasks (with a fake clock), and migration 0003."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from alembic import command

import worker.webhooks
from tests.runtime_worker import JobRequest
from tests.support import FakeClock, raw_sql, sqlite_url
from worker import QueueConfig, Task, TaskItem, WorkerQueue
from worker.storage.database import Database
from worker.storage.migrate import alembic_config, head_revision
from worker.webhooks import (
    AddressRefusedError,
    DeliveryState,
    HttpxTransport,
    Outgoing,
    TransportError,
    signature,
)
from worker.webhooks.dispatcher import SUPERSEDED, WebhookDispatcher
from worker.webhooks.guard import Resolver, is_public, target

# -- signing -------------------------------------------------------------------------------


def test_the_signature_is_an_hmac_of_timestamp_dot_body() -> None:
    body = b'{"task_id":"x"}'
    expected = hmac.new(b"key", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("key", "1700000000", body) == f"sha256={expected}"
    assert signature("key", "1700000001", body) != signature("key", "1700000000", body)


def test_the_public_surface_is_pinned() -> None:
    assert len(worker.webhooks.__all__) == len(set(worker.webhooks.__all__))
    assert set(worker.webhooks.__all__) == {
        name for name in dir(worker.webhooks) if not name.startswith("_")
    } - {"dispatcher", "errors", "guard", "models", "signing", "store", "transport", "annotations"}


# -- the address guard ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("240.0.0.1", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.215.14", True),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def resolver_of(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def test_a_public_host_is_pinned_to_its_resolved_address() -> None:
    found = await target(
        "https://hooks.example.com:8443/cb?x=1",
        allow_private=False,
        resolver=resolver_of("93.184.215.14"),
    )
    assert found.url == "https://93.184.215.14:8443/cb?x=1"
    assert found.host_header == "hooks.example.com:8443"
    assert found.sni_hostname == "hooks.example.com"


async def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    with pytest.raises(AddressRefusedError, match=r"non-public address \(10\.0\.0\.7\)"):
        await target(
            "http://hooks.example.com/cb",
            allow_private=False,
            resolver=resolver_of("93.184.215.14", "10.0.0.7"),
        )


async def test_allow_private_leaves_the_url_alone() -> None:
    found = await target("http://127.0.0.1:9/x", allow_private=True)
    assert (found.url, found.host_header, found.sni_hostname) == (
        "http://127.0.0.1:9/x",
        None,
        None,
    )


# -- the transport seam --------------------------------------------------------------------


async def test_the_transport_makes_its_client_at_the_first_post_only() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    transport = HttpxTransport(httpx.MockTransport(answer))
    with pytest.raises(RuntimeError, match="not open"):
        await transport.post(Outgoing("https://93.184.215.14/cb", b"{}"), timeout_s=1.0)
    async with transport:
        assert transport._client is None  # a worker that never posts never loads TLS
        assert await transport.post(Outgoing("https://93.184.215.14/cb", b"{}"), 1.0) == 204
        assert transport._client is not None
    assert transport._client is None
    with pytest.raises(RuntimeError, match="not open"):
        await transport.post(Outgoing("https://93.184.215.14/cb", b"{}"), timeout_s=1.0)


async def test_the_transport_sends_the_pinned_host_and_never_follows_redirects() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(307, headers={"Location": "http://10.0.0.1/inside"})

    async with HttpxTransport(httpx.MockTransport(answer)) as transport:
        status = await transport.post(
            Outgoing(
                "https://93.184.215.14/cb",
                b"{}",
                {"Host": "hooks.example.com", "X-Webhook-Signature": "sha256=ab"},
                sni_hostname="hooks.example.com",
            ),
            timeout_s=1.0,
        )
    assert status == 307
    (request,) = seen
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.content == b"{}"


def rebinding_resolver(lookups: list[str]) -> Resolver:
    """Public the first time a host is looked up, then the cloud's metadata address."""

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(f"{host}:{port}")
        return ["93.184.215.14"] if len(lookups) == 1 else ["169.254.169.254"]

    return resolve


@pytest.mark.parametrize(
    ("url", "expected"),
    [  # the URL the POST goes to, its Host header, its TLS server name
        ("https://hooks.example.com/cb?x=1",
         ("https://93.184.215.14/cb?x=1", "hooks.example.com", "hooks.example.com")),
        ("http://hooks.example.com:8080/cb",
         ("http://93.184.215.14:8080/cb", "hooks.example.com:8080", None)),
    ],
)  # fmt: skip
async def test_the_dispatcher_posts_to_the_address_the_guard_checked(
    db_path: Path, clock: FakeClock, url: str, expected: tuple[str, str, str | None]
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    lookups: list[str] = []
    config = QueueConfig(database_url=sqlite_url(db_path), webhook_allow_private=False)
    async with (
        WorkerQueue(config, clock=clock) as queue,
        HttpxTransport(httpx.MockTransport(answer)) as transport,
    ):
        task = await finish(queue, url)
        dispatcher = WebhookDispatcher(
            queue, transport, clock=clock, resolver=rebinding_resolver(lookups)
        )
        assert await dispatcher.tick() == 1
        (delivery,) = await queue.webhook_deliveries(task.id)
    assert delivery.state is DeliveryState.DELIVERED
    assert len(lookups) == 1, "resolved once: a second answer is never asked for"
    (request,) = seen
    sent = (str(request.url), request.headers["host"], request.extensions.get("sni_hostname"))
    assert sent == expected
    assert json.loads(request.content)["task_id"] == task.id


@pytest.mark.parametrize("sni", ["hooks.example.com", None])
async def test_the_tls_handshake_to_a_pinned_address_names_the_original_host(
    sni: str | None,
) -> None:
    """A real connection to 127.0.0.1 and the ClientHello it sends, read by a plain TCP
    server (which has no certificate: the handshake then fails, as it should)."""
    hello = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(4096)
        if not hello.done():
            hello.set_result(data)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with server, HttpxTransport() as transport:
            outgoing = Outgoing(f"https://127.0.0.1:{port}/cb", b"{}", sni_hostname=sni)
            with pytest.raises(TransportError):
                await transport.post(outgoing, timeout_s=10.0)
            async with asyncio.timeout(10):
                data = await hello
    finally:
        server.close()
    assert data[:1] == b"\x16", "a TLS handshake record"
    # The server_name extension travels in the clear; an IP address is never sent as one.
    assert (b"hooks.example.com" in data) is (sni is not None)


# -- the store: claims, leases, the scan ---------------------------------------------------


@pytest.fixture
async def hook_queue(database_url: str, clock: FakeClock) -> AsyncIterator[WorkerQueue]:
    config = QueueConfig(database_url=database_url, webhook_allow_private=True)
    async with WorkerQueue(config, clock=clock) as queue:
        yield queue


async def finish(queue: WorkerQueue, *urls: str | None) -> Task:
    task = Task(items=[TaskItem(request=JobRequest(), response_url=u) for u in urls])
    await queue.enqueue([task])
    (claimed,) = await queue.dequeue(1)
    await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id)
    return task


async def test_a_delivery_is_claimed_once_until_its_lease_expires(
    hook_queue: WorkerQueue, clock: FakeClock
) -> None:
    store = hook_queue.storage.webhooks
    task = await finish(hook_queue, "http://127.0.0.1:9/a")
    found, cut, _ = await store.finished(0.0, None, 10)
    assert not cut
    assert await store.add(found, clock.now, None) == 1
    assert await store.add(found, clock.now, None) == 0, "one row per item, ever"

    (first,) = await store.claim(clock.now, 40.0, 10)
    assert await store.claim(clock.now, 40.0, 10) == [], "leased"
    clock.advance(41)
    (second,) = await store.claim(clock.now, 40.0, 10)  # the first claimer died
    assert (first.attempts, second.attempts) == (1, 2)
    assert first.lease_id != second.lease_id
    assert not await store.delivered(first, 200, clock.now), "a lost lease records nothing"
    assert await store.delivered(second, 200, clock.now)
    (delivery,) = await hook_queue.webhook_deliveries(task.id)
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("delivered", 2, None)


@pytest.mark.sqlite_only("SQLite's one write lock, held by another connection")
async def test_a_claim_with_nothing_due_leaves_the_write_lock_alone(
    hook_queue: WorkerQueue, db_path: Path
) -> None:
    """Idle workers ask for deliveries every second: finding none must not take the write
    lock (it would queue behind, and hold up, the producers)."""
    store = hook_queue.storage.webhooks
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a writer in another process holds the lock
        async with asyncio.timeout(5):  # a write would wait out the 30 s busy timeout
            assert await store.claim(time.time(), 40.0, 10) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_the_scan_returns_tasks_with_urls_and_says_how_far_it_looked(
    hook_queue: WorkerQueue, clock: FakeClock
) -> None:
    store = hook_queue.storage.webhooks
    assert await store.finished(0.0, None, 10) == ([], False, None)
    quiet = await finish(hook_queue, None)
    clock.advance(1)
    loud = await finish(hook_queue, None, "http://127.0.0.1:9/b")
    clock.advance(1)
    last_quiet = await finish(hook_queue, None)
    found, cut, reached = await store.finished(0.0, None, 10)
    assert [(f.task_id, f.urls) for f in found] == [(loud.id, {1: "http://127.0.0.1:9/b"})]
    assert not cut
    assert reached == (await hook_queue.get_task(last_quiet.id)).finished_at
    assert reached is not None
    assert reached > ((await hook_queue.get_task(quiet.id)).finished_at or 0.0)
    # Bounded by upto: the window ends before the last task.
    found, _, reached = await store.finished(0.0, clock.now - 0.5, 10)
    assert [f.task_id for f in found] == [loud.id]
    assert reached == (await hook_queue.get_task(loud.id)).finished_at


async def test_a_task_that_commits_late_is_found_by_the_settled_scan(
    hook_queue: WorkerQueue, clock: FakeClock
) -> None:
    dispatcher = WebhookDispatcher(hook_queue, HttpxTransport(), clock=clock)
    early = await finish(hook_queue, "http://127.0.0.1:9/early")
    clock.advance(10)
    later = await finish(hook_queue, "http://127.0.0.1:9/later")
    assert await dispatcher.collect() == 2

    clock.advance(-5)  # a task whose finish time was read before ``later`` but commits after
    late = await finish(hook_queue, "http://127.0.0.1:9/late")
    clock.advance(5)
    assert await dispatcher.collect() == 0, "the quick scan is past it"
    clock.advance(dispatcher.settle_s)
    assert await dispatcher.collect() == 1
    for task in (early, later, late):
        assert len(await hook_queue.webhook_deliveries(task.id)) == 1
    store = hook_queue.storage.webhooks
    assert await store.scanned_to() == (await hook_queue.get_task(later.id)).finished_at

    restarted = WebhookDispatcher(hook_queue, HttpxTransport(), clock=clock)
    assert await restarted.collect() == 0, "a new dispatcher starts from the stored mark"


async def discard(queue: WorkerQueue, *urls: str | None) -> Task:
    task = Task(items=[TaskItem(request=JobRequest(), response_url=u) for u in urls])
    await queue.enqueue([task])
    (claimed,) = await queue.dequeue(1)
    await queue.mark_as_discarded(claimed.id, error="broken", lease_id=claimed.lease_id)
    return task


async def resume_and_complete(queue: WorkerQueue, task_id: str) -> None:
    await queue.mark_as_resume(task_id)
    (claimed,) = await queue.dequeue(1)
    await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id, results=[{"ok": 1}])


async def test_each_ending_of_a_resumed_task_has_its_own_deliveries(
    hook_queue: WorkerQueue, clock: FakeClock
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with HttpxTransport(httpx.MockTransport(answer)) as transport:
        dispatcher = WebhookDispatcher(hook_queue, transport, clock=clock)
        task = await discard(hook_queue, "http://127.0.0.1:9/a")
        assert await dispatcher.collect() == 1
        clock.advance(1)
        await resume_and_complete(hook_queue, task.id)  # before the first one was sent
        assert await dispatcher.collect() == 1
        clock.advance(dispatcher.settle_s)
        assert await dispatcher.collect() == 0, "the settled scan sees each ending once"
        assert await dispatcher.deliver_due() == 2

    old, new = await hook_queue.webhook_deliveries(task.id)
    stored = await hook_queue.get_task(task.id)
    assert (old.ending, old.state, old.attempts) == (1, DeliveryState.FAILED, 1)
    assert old.last_error == SUPERSEDED, "a discarded outcome the task no longer has"
    assert old.finished_at < new.finished_at == stored.finished_at
    assert (new.ending, new.state) == (2, DeliveryState.DELIVERED)
    (request,) = seen
    assert request.headers["x-webhook-id"] == f"{task.id}:0:2"
    body = json.loads(request.content)
    assert (body["state"], body["result"]) == ("completed", {"ok": 1})


async def test_a_task_resumed_after_the_scan_read_it_gets_no_delivery_for_that_ending(
    hook_queue: WorkerQueue, clock: FakeClock
) -> None:
    store = hook_queue.storage.webhooks
    task = await discard(hook_queue, "http://127.0.0.1:9/a")
    found, _, _ = await store.finished(0.0, None, 10)
    await hook_queue.mark_as_resume(task.id)
    assert await store.add(found, clock.now, None) == 0
    assert await hook_queue.webhook_deliveries(task.id) == []


async def test_purge_deletes_the_deliveries_of_the_tasks_it_deletes(
    hook_queue: WorkerQueue, clock: FakeClock, database_url: str
) -> None:
    dispatcher = WebhookDispatcher(hook_queue, HttpxTransport(), clock=clock)
    old = await finish(hook_queue, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    clock.advance(3600)
    recent = await finish(hook_queue, "http://127.0.0.1:9/c")
    assert await dispatcher.collect() == 3
    store = hook_queue.storage.webhooks
    (sent,) = [c for c in await store.claim(clock.now, 40.0, 10) if c.item_index == 1]
    assert await store.delivered(sent, 200, clock.now)  # delivered and pending rows alike

    assert await hook_queue.purge(older_than_s=600) == 1
    assert await hook_queue.webhook_deliveries(old.id) == []
    (kept,) = await hook_queue.webhook_deliveries(recent.id)
    assert kept.url == "http://127.0.0.1:9/c"
    # No row is left without its task.
    assert await raw_sql(database_url, "SELECT count(*) FROM webhook_deliveries") == [(1,)]


async def test_a_second_purge_deletes_its_own_tasks_deliveries_not_the_firsts(
    hook_queue: WorkerQueue, clock: FakeClock, database_url: str
) -> None:
    """The purge's delete of deliveries once bound its ids inside the statement, which
    SQLAlchemy cached with the first purge's ids: every later purge in the process left its
    tasks' rows behind."""
    dispatcher = WebhookDispatcher(hook_queue, HttpxTransport(), clock=clock)
    first = await finish(hook_queue, "http://127.0.0.1:9/a")
    clock.advance(3600)
    assert await dispatcher.collect() == 1
    assert await hook_queue.purge(older_than_s=600) == 1
    assert await hook_queue.webhook_deliveries(first.id) == []

    second = await finish(hook_queue, "http://127.0.0.1:9/b")
    clock.advance(3600)
    assert await dispatcher.collect() == 1
    assert await hook_queue.purge(older_than_s=600) == 1
    assert await hook_queue.webhook_deliveries(second.id) == []
    assert await raw_sql(database_url, "SELECT count(*) FROM webhook_deliveries") == [(0,)]


async def test_the_scan_walks_the_finished_index(db_path: Path) -> None:
    async with WorkerQueue(QueueConfig(database_url=sqlite_url(db_path))):
        pass
    sql = (
        "SELECT id, finished_at, items FROM tasks WHERE finished_at IS NOT NULL "
        "AND finished_at > ? AND state IN ('completed', 'discarded', 'cancelled') "
        "ORDER BY finished_at LIMIT 1000"
    )
    with sqlite3.connect(db_path) as raw:
        plan = " ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", (0.0,)))
        due = " ".join(
            row[3]
            for row in raw.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM webhook_deliveries WHERE state = 'pending' "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 16",
                (0.0,),
            )
        )
    assert "USING INDEX ix_tasks_finished" in plan
    assert "TEMP B-TREE" not in plan
    assert "USING INDEX ix_webhook_deliveries_due" in due


# -- migration 0003 ------------------------------------------------------------------------


async def test_upgrade_from_0002_delivers_only_tasks_that_finish_afterwards(
    db_path: Path, clock: FakeClock
) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path), webhook_allow_private=True)
    db = Database(config)
    await db.open()
    try:
        async with db.write("migrate") as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0002"))
    finally:
        await db.close()
    items = '[{"kind":"job","request":{"log":null,"seconds":[0.0],"name":""},'
    items += '"response_url":"http://127.0.0.1:9/old"}]'
    with sqlite3.connect(db_path) as raw:  # one task that ended before, one still pending
        for task_id, state, finished in (
            ("01M82RQ68MFZ9T6GX810R5WW15", "completed", 1_700_000_000.0),
            ("01M82RQ68MFZ9T6GX810R5WW16", "pending", None),
        ):
            raw.execute(
                "INSERT INTO tasks (id, queue, state, priority, schedule_at, attempt_count,"
                " expired_count, errors, items, metadata, created_at, updated_at, finished_at)"
                " VALUES (?, 'default', ?, 0, 0, 0, 0, '[]', ?, '{}', 0, 0, ?)",
                (task_id, state, items, finished),
            )
    async with WorkerQueue(config, clock=clock) as queue:
        store = queue.storage.webhooks
        assert await store.scanned_to() == 1_700_000_000.0
        (claimed,) = await queue.dequeue(1)
        await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id)
        dispatcher = WebhookDispatcher(queue, HttpxTransport(), clock=clock)
        assert await dispatcher.collect() == 1
        assert await queue.webhook_deliveries("01M82RQ68MFZ9T6GX810R5WW15") == []
        (delivery,) = await queue.webhook_deliveries("01M82RQ68MFZ9T6GX810R5WW16")
        assert delivery.url == "http://127.0.0.1:9/old"
    with sqlite3.connect(db_path) as raw:
        (version,) = raw.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == head_revision() == "0007"


async def test_downgrade_to_0002_drops_the_webhook_tables(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path))
    async with WorkerQueue(config):
        pass
    db = Database(config)
    await db.open()
    try:
        async with db.write("migrate") as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0002"))
    finally:
        await db.close()
    with sqlite3.connect(db_path) as raw:
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert not {"webhook_deliveries", "webhook_scan", "ix_webhook_deliveries_due"} & names
