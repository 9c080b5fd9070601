"""What the web app refuses before the API sees a request: a missing or wrong bearer
token, an action in read-only mode, a body over the limit (declared or streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.web_support import api_client, call
from worker import WorkerQueue
from worker.web.guard import is_loopback


async def test_with_a_token_every_request_needs_it(queue: WorkerQueue) -> None:
    async with api_client(queue, token="s3cret") as client:
        for path in ("/api/status", "/metrics", "/", "/openapi.json"):
            refused = await client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert refused.headers["content-type"] == "application/problem+json"
        wrong = await client.get("/api/status", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        submit = await client.post("/api/tasks", json=call())
        assert submit.status_code == 401
        assert (await queue.get_queue_stats())["total"] == 0
        good = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/api/status", headers=good)).status_code == 200
        assert (await client.post("/api/tasks", json=call(), headers=good)).status_code == 201


async def test_read_only_refuses_every_action_and_serves_reads(queue: WorkerQueue) -> None:
    await queue.enqueue([{"items": [{"request": _call_request()}]}])
    [task] = await queue.list_tasks()
    async with api_client(queue, read_only=True) as client:
        for path in ("/api/tasks", f"/api/tasks/{task.id}/cancel", "/api/queues/default/pause"):
            refused = await client.post(path, json=call())
            assert refused.status_code == 403, path
            assert "read-only" in refused.json()["detail"]
        assert (await client.get(f"/api/tasks/{task.id}")).json()["state"] == "pending"
        assert "read-only" in (await client.get("/")).text
    assert (await queue.get_queue_stats())["total"] == 1
    assert await queue.paused_queues() == {}


async def test_a_body_over_the_limit_is_refused_declared_or_streamed(queue: WorkerQueue) -> None:
    big = call(metadata={"blob": "x" * 5000})
    async with api_client(queue, max_body_bytes=4096) as client:
        declared = await client.post("/api/tasks", json=big)
        assert declared.status_code == 413
        assert declared.json()["detail"] == "request body over 4096 bytes"
        chunk = b'{"kind": "call", "request": {"target": "os:getcwd"}, "name": "' + b"y" * 3000

        async def chunks() -> AsyncIterator[bytes]:
            yield chunk
            yield chunk  # no Content-Length: counted as it arrives

        streamed = await client.post(
            "/api/tasks", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text
        assert (await client.post("/api/tasks", json=call())).status_code == 201
    assert (await queue.get_queue_stats())["total"] == 1


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
     ("example.com", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _call_request() -> object:
    from worker import CallRequest

    return CallRequest(target="os:getcwd")
