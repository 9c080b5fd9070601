"""The HTTP API (worker.web) through httpx, on both backends: submit, read, list, act,
and every refusal as a problem document with the library's message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.support import FakeClock, make_task
from tests.web_support import api_client, call
from worker import TaskState, WorkerQueue
from worker.web import create_app


@pytest.fixture
async def client(queue: WorkerQueue) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(queue) as c:
        yield c


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    return body


async def test_submit_answers_the_seed_s_shape_with_the_queue_position(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    first = await client.post("/api/tasks", json=call(name="first"))
    second = await client.post("/api/tasks", json=call(queue="other"))
    third = await client.post("/api/tasks", json=call())
    assert first.status_code == 201, first.text
    assert first.json() == {
        "task_id": first.json()["task_id"], "queued": True, "queue_position": 1,
        "state": "pending",
    }  # fmt: skip
    assert second.json()["queue_position"] == 1  # alone in its queue
    assert third.json()["queue_position"] == 2
    assert first.headers["location"] == f"/api/tasks/{first.json()['task_id']}"
    stored = await queue.get_task(first.json()["task_id"])
    assert stored.name == "first"
    assert stored.items[0].request.model_dump()["target"] == "os:getcwd"

    got = await client.get(f"/api/tasks/{third.json()['task_id']}")
    assert got.status_code == 200
    document = got.json()
    assert document["state"] == "pending"
    assert document["items"][0]["kind"] == "call"
    assert document["queue_position"] == 2
    assert document["why"] == await queue.why(third.json()["task_id"])


async def test_a_bad_request_is_refused_naming_its_field_and_nothing_is_written(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    missing = await client.post("/api/tasks", json={"kind": "call", "request": {}})
    assert "request.target: Field required" in problem_of(missing, 422)["detail"]
    unknown = await client.post("/api/tasks", json={"kind": "nope", "request": {}})
    assert "unknown request kind 'nope'" in problem_of(unknown, 422)["detail"]
    bad_option = await client.post("/api/tasks", json=call(priority="high"))
    assert problem_of(bad_option, 422)["detail"].startswith("priority:")
    bad_queue = await client.post("/api/tasks", json=call(queue="no spaces"))
    assert "queue" in problem_of(bad_queue, 422)["detail"]
    batch = await client.post(
        "/api/tasks/batch", json={"tasks": [call(), {"kind": "call", "request": {"x": 1}}]}
    )
    detail = problem_of(batch, 422)["detail"]
    assert "tasks[1].request.target: Field required" in detail
    not_json = await client.post(
        "/api/tasks", content=b"{", headers={"content-type": "application/json"}
    )
    # Not "1: JSON decode error": the position is not a field.
    assert problem_of(not_json, 422)["detail"].startswith("body: not JSON (")
    assert "at position 1" in problem_of(not_json, 422)["detail"]
    deep = await client.post(
        "/api/tasks",
        content=b"[" * 5000 + b"]" * 5000,
        headers={"content-type": "application/json"},
    )
    assert problem_of(deep, 400)["detail"] == "There was an error parsing the body"  # docs/web.md
    assert (await queue.get_queue_stats())["total"] == 0


async def test_a_batch_is_enqueued_whole(client: httpx.AsyncClient, queue: WorkerQueue) -> None:
    key = {"idempotency_key": "only-once"}
    response = await client.post(
        "/api/tasks/batch", json={"tasks": [call(**key), call(), call(**key)]}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["inserted"] == 2
    ids = [t["task_id"] for t in body["tasks"]]
    assert ids[0] == ids[2] != ids[1]
    assert [t["queue_position"] for t in body["tasks"]] == [1, 2, 1]
    assert (await queue.get_queue_stats())["pending"] == 2


async def test_pending_pages_carry_the_place_of_their_last_task(
    client: httpx.AsyncClient, queue: WorkerQueue, clock: FakeClock
) -> None:
    step = {"kind": "fixed", "delay_s": 0, "priority_step": -1}
    bodies = [
        call(name=f"t{i}", priority=p, retry_policy=step) for i, p in enumerate([0, 5, 0, 5, 0])
    ]
    submitted = await client.post("/api/tasks/batch", json={"tasks": bodies})
    ids = [t["task_id"] for t in submitted.json()["tasks"]]
    pending: dict[str, str | int] = {"state": "pending", "limit": 2}
    first = (await client.get("/api/tasks", params=pending)).json()
    assert [t["id"] for t in first["tasks"]] == [ids[1], ids[3]]
    assert (first["next_after"], first["next_after_priority"]) == (ids[3], 5)
    page = await client.get("/tasks", params=pending)
    assert f"after={ids[3]}&amp;after_priority=5" in page.text  # the next page's link
    # The page's last task fails once and comes back a step lower (5 -> 4), ahead of the
    # priority-0 tasks the next page starts with.
    for claimed in await queue.dequeue(2):
        await queue.mark_as_retry(claimed.id, "boom", lease_id=claimed.lease_id)
    clock.advance(1)
    await queue.retry()
    cursor = {"after": first["next_after"], "after_priority": first["next_after_priority"]}
    second = (await client.get("/api/tasks", params={**pending, **cursor})).json()
    assert [t["id"] for t in second["tasks"]] == [ids[1], ids[3]]  # now at 4, after 5
    # Without the priority the page would start after the task's new place (4), and skip
    # the moved tasks:
    moved = (await client.get("/api/tasks", params={**pending, "after": ids[3]})).json()
    assert [t["id"] for t in moved["tasks"]] == [ids[0], ids[2]]
    by_id = (await client.get("/api/tasks", params={"limit": 2})).json()
    assert (by_id["next_after"], by_id["next_after_priority"]) == (ids[1], None)


async def test_list_filters_and_pages_by_id(client: httpx.AsyncClient, queue: WorkerQueue) -> None:
    bodies = [call(name=f"t{i}", queue="a" if i % 2 else "b") for i in range(7)]
    submitted = await client.post("/api/tasks/batch", json={"tasks": bodies})
    ids = [t["task_id"] for t in submitted.json()["tasks"]]
    await queue.mark_as_cancelled(ids[3])

    seen, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"after": after} if after else {})}
        page = (await client.get("/api/tasks", params=params)).json()
        seen += [t["id"] for t in page["tasks"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == ids
    in_a = (await client.get("/api/tasks", params={"queue": "a"})).json()
    assert [t["id"] for t in in_a["tasks"]] == ids[1::2]
    cancelled = (await client.get("/api/tasks", params={"state": "cancelled"})).json()
    assert [t["id"] for t in cancelled["tasks"]] == [ids[3]]
    named = (await client.get("/api/tasks", params={"name": "t5", "limit": 1})).json()
    assert [t["id"] for t in named["tasks"]] == [ids[5]]
    assert named["next_after"] == ids[5]  # a full page: there may be more
    of_kind = (await client.get("/api/tasks", params={"kind": "call", "limit": 2})).json()
    assert [t["id"] for t in of_kind["tasks"]] == ids[:2]
    no_kind = (await client.get("/api/tasks", params={"kind": "tts"})).json()
    assert no_kind == {"tasks": [], "next_after": None, "next_after_priority": None}
    bad_state = await client.get("/api/tasks", params={"state": "asleep"})
    assert "state" in problem_of(bad_state, 422)["detail"]


async def test_actions_move_tasks_and_refusals_carry_the_library_s_message(
    client: httpx.AsyncClient, queue: WorkerQueue, clock: FakeClock
) -> None:
    later = (await client.post("/api/tasks", json=call(delay_s=3600))).json()["task_id"]
    assert (await queue.get_task(later)).schedule_at == clock.now + 3600
    done = await client.post(f"/api/tasks/{later}/run-now")
    assert done.json() == {"id": later, "state": "pending", "cancel_pending": False}
    assert (await queue.get_task(later)).schedule_at == clock.now

    held = await client.post(f"/api/tasks/{later}/hold")
    assert held.status_code == 200
    assert (await queue.get_task(later)).held
    assert (await client.get(f"/api/tasks/{later}")).json()["why"].startswith("held")
    await client.post(f"/api/tasks/{later}/release")
    assert not (await queue.get_task(later)).held

    cancelled = await client.post(f"/api/tasks/{later}/cancel")
    assert cancelled.json()["state"] == "cancelled"
    again = problem_of(await client.post(f"/api/tasks/{later}/hold"), 409)
    assert again["detail"] == f"cannot hold task {later!r}: it is cancelled, hold needs pending"
    assert again["error"] == "InvalidStateTransitionError"
    resume = problem_of(await client.post(f"/api/tasks/{later}/resume"), 409)
    assert "resume needs discarded or pending and held" in resume["detail"]

    failing = (await client.post("/api/tasks", json=call())).json()["task_id"]
    [claimed] = await queue.dequeue(1)
    running = await client.post(f"/api/tasks/{failing}/cancel")
    assert running.json() == {"id": failing, "state": "processing", "cancel_pending": True}
    await queue.mark_as_discarded(failing, "boom", lease_id=claimed.lease_id)
    resumed = await client.post(f"/api/tasks/{failing}/resume")
    assert resumed.json()["state"] == "pending"

    missing = problem_of(await client.get("/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404)
    assert missing["detail"] == "task '01ARZ3NDEKTSV4RRFFQ69G5FAV' not found"
    problem_of(await client.post("/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel"), 404)


async def test_status_queues_pause_stats_and_workers(
    client: httpx.AsyncClient, queue: WorkerQueue, clock: FakeClock
) -> None:
    body = {"tasks": [call(), call(), call(), call(), call(queue="mail")]}
    ids = [t["task_id"] for t in (await client.post("/api/tasks/batch", json=body)).json()["tasks"]]
    first, second = await queue.dequeue(2)
    await queue.mark_as_complete(first.id, lease_id=first.lease_id)
    await queue.mark_as_discarded(second.id, "x", lease_id=second.lease_id)
    await queue.dequeue(1)
    await queue.mark_as_cancelled(ids[4])
    status = (await client.get("/api/status")).json()
    assert status == {"queued": 1, "processing": 1, "completed": 1, "failed": 2, "total": 5}
    assert (await client.get("/api/status", params={"queue": "mail"})).json()["failed"] == 1

    paused = await client.post("/api/queues/mail/pause")
    assert paused.json() == {"queue": "mail", "paused": True, "was_paused": None}
    clock.advance(30)
    listed = {q["queue"]: q for q in (await client.get("/api/queues")).json()}
    assert listed["mail"]["paused"] is True
    assert listed["mail"]["counts"] == {"cancelled": 1}
    assert listed["default"]["counts"] == {
        "pending": 1, "processing": 1, "completed": 1, "discarded": 1,
    }  # fmt: skip
    assert listed["default"]["oldest_pending_age_s"] == pytest.approx(30)
    unpaused = (await client.post("/api/queues/mail/unpause")).json()
    assert unpaused == {"queue": "mail", "paused": False, "was_paused": True}
    problem_of(await client.post("/api/queues/no%20way/pause"), 422)

    stats = (await client.get("/api/stats", params={"window_s": 60})).json()
    assert stats["states"]["completed"] == 1
    assert stats["paused"] == {}
    await queue.register_worker(
        {"id": "w1", "hostname": "box", "pid": 42, "queues": ["default"], "concurrency": 3}
    )
    clock.advance(2)
    [worker] = (await client.get("/api/workers")).json()
    assert worker["id"] == "w1"
    assert worker["concurrency"] == 3
    assert worker["heartbeat_age_s"] == pytest.approx(2)
    assert worker["running"] == 0
    await queue.enqueue([make_task(), make_task()])
    assert len(await queue.dequeue(2, worker_id="w1")) == 2
    [worker] = (await client.get("/api/workers")).json()
    assert worker["running"] == 2
    overview = (await client.get("/")).text
    assert "<th>running</th>" in overview
    assert "<td>3</td><td>2</td>" in overview  # concurrency 3, running 2


async def test_the_openapi_document_describes_the_api(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert {"/api/tasks", "/api/tasks/batch", "/api/tasks/{task_id}/cancel", "/api/status"} <= set(
        document["paths"]
    )
    submit = document["components"]["schemas"]["Submit"]
    assert {"kind", "request"} <= set(submit["required"])
    assert "queue_position" in document["components"]["schemas"]["Submitted"]["properties"]


async def test_the_overview_page_shows_queues_and_workers_escaped(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    await client.post("/api/tasks", json=call(queue="speech"))
    await queue.register_worker(
        {"id": "w<1>", "hostname": "<script>alert(1)</script>", "pid": 7, "concurrency": 1}
    )
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<td>speech</td>" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>" not in page.text
    assert "w&lt;1&gt;" in page.text


async def test_the_app_mounts_under_a_prefix(queue: WorkerQueue) -> None:
    outer = Starlette(routes=[Mount("/queue", app=create_app(queue))])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as client:
        submitted = await client.post("/queue/api/tasks", json=call())
        assert submitted.status_code == 201
        assert submitted.headers["location"].startswith("/queue/api/tasks/")
        got = await client.get(submitted.headers["location"])
        assert got.json()["state"] == TaskState.PENDING.value
        assert (await client.get("/queue/api/status")).json()["total"] == 1
