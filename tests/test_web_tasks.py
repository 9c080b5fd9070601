"""The tasks page and its API on both backends: every filter in SQL, keyset pages, counts,
bulk actions by id and by filter (with the page's confirmation), the submit form of each
kind, ``/api/kinds``, CSRF, read-only pages, and escaping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import START, FakeClock, make_task
from tests.web_support import api_client, call
from worker import TaskState, WorkerQueue

TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
async def client(queue: WorkerQueue) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(queue) as c:
        yield c


async def submit(client: httpx.AsyncClient, **options: Any) -> str:
    response = await client.post("/api/tasks", json=call(**options))
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def csrf_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/tasks")
    assert page.status_code == 200, page.text
    found = TOKEN.search(page.text)
    assert found, page.text
    return found.group(1)


async def listed(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """Every id the list answers for ``params``, page by page (two a page)."""
    ids: list[str] = []
    after = None
    while True:
        query = {**params, "limit": 2, **({"after": after} if after else {})}
        response = await client.get("/api/tasks", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [t["id"] for t in body["tasks"]]
        after = body["next_after"]
        if after is None:
            return ids


async def test_each_filter_of_the_list_and_its_count(
    client: httpx.AsyncClient, queue: WorkerQueue, clock: FakeClock
) -> None:
    first = [await submit(client, name="nightly", queue="a") for _ in range(3)]
    clock.advance(3600)
    later = [await submit(client, name="other", queue="b") for _ in range(2)]
    tts = await client.post(
        "/api/tasks",
        json={"kind": "tts", "request": {"text": "Hi", "voice_id": "kokoro.af_heart"}},
    )
    tts_id = tts.json()["task_id"]
    [claimed] = await queue.dequeue(size=1, queues=["b"])
    await queue.mark_as_discarded(claimed.id, "ValueError: the Disk is full")

    assert await listed(client) == [*first, *later, tts_id]
    assert await listed(client, kind="call") == [*first, *later]
    assert await listed(client, kind="tts") == [tts_id]
    assert await listed(client, name="nightly") == first
    assert await listed(client, queue="b") == later
    assert await listed(client, state="discarded") == [claimed.id]
    assert await listed(client, error="disk IS full") == [claimed.id]
    assert await listed(client, created_after=START + 1800) == [*later, tts_id]
    assert await listed(client, created_before=START + 1800) == first
    iso = "2027-01-15T08:30:00Z"  # START + 1800 s, in ISO 8601
    assert await listed(client, created_before=iso) == first
    assert await listed(client, created_after="2027-01-15T08:30:00") == [*later, tts_id]
    assert await listed(client, state="pending", queue="b", kind="call") == [
        i for i in later if i != claimed.id
    ]
    count = await client.get("/api/tasks/count", params={"kind": "call", "queue": "a"})
    assert count.json() == {"count": 3}
    assert (await client.get("/api/tasks/count")).json() == {"count": 6}

    bad = await client.get("/api/tasks", params={"created_after": "yesterday"})
    assert bad.status_code == 422
    assert "created_after must be epoch seconds or an ISO 8601 time" in bad.json()["detail"]
    bad_state = await client.get("/api/tasks/count", params={"state": "running"})
    assert "unknown state 'running'" in bad_state.json()["detail"]


async def test_bulk_actions_by_ids_and_by_filter_report_what_they_did(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    ids = [await submit(client, queue="bulk") for _ in range(5)]
    other = await submit(client, queue="keep")
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

    dry = await client.post(
        "/api/tasks/actions", json={"action": "hold", "filter": {"queue": "bulk"}, "dry_run": True}
    )
    assert dry.json()["matched"] == 5
    assert dry.json()["changed"] == 0
    assert not any([(await queue.get_task(i)).held for i in ids])

    held = await client.post(
        "/api/tasks/actions", json={"action": "hold", "ids": [ids[0], ids[1], missing]}
    )
    assert held.status_code == 200, held.text
    body = held.json()
    assert (body["matched"], body["changed"], body["skipped"]) == (2, 2, 0)
    assert body["not_found"] == [missing]
    everything = await client.post(
        "/api/tasks/actions", json={"action": "hold", "filter": {"queue": "bulk"}}
    )
    assert (everything.json()["changed"], everything.json()["skipped"]) == (3, 2)

    cancelled = await client.post("/api/tasks/actions", json={"action": "cancel", "filter": {}})
    assert cancelled.json()["changed"] == 6
    assert (await queue.get_task(other)).state is TaskState.CANCELLED
    again = await client.post("/api/tasks/actions", json={"action": "cancel", "ids": ids})
    assert again.json()["skipped_ids"] == ids
    resumed = await client.post(
        "/api/tasks/actions", json={"action": "resume", "filter": {"state": "cancelled"}}
    )
    assert (resumed.json()["matched"], resumed.json()["changed"]) == (6, 0)

    both = await client.post(
        "/api/tasks/actions", json={"action": "cancel", "ids": ids, "filter": {}}
    )
    assert both.status_code == 422
    assert "give either ids or filter" in both.json()["detail"]
    neither = await client.post("/api/tasks/actions", json={"action": "cancel"})
    assert neither.status_code == 422
    assert "give the tasks to act on: ids, or filter" in neither.json()["detail"]
    unknown = await client.post("/api/tasks/actions", json={"action": "explode", "ids": ids})
    assert unknown.status_code == 422
    metrics = (await client.get("/metrics")).text
    assert 'worker_queue_web_actions_total{action="cancel"} 6.0' in metrics


async def test_the_kinds_and_their_schemas(client: httpx.AsyncClient) -> None:
    kinds = {k["kind"]: k["schema"] for k in (await client.get("/api/kinds")).json()}
    assert {"call", "command", "tts", "audio"} <= set(kinds)
    assert kinds["tts"]["required"] == ["text", "voice_id"]


async def test_the_tasks_page_lists_pages_and_escapes(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    ids = [await submit(client, name=f"n{i}") for i in range(3)]
    evil = await submit(client, name="<script>alert(1)</script>")
    [claimed] = await queue.dequeue(size=1)
    await queue.mark_as_discarded(claimed.id, "<img src=x onerror=alert(2)>")
    page = await client.get("/tasks", params={"limit": 2})
    assert page.status_code == 200
    assert f'href="/tasks/{ids[0]}"' in page.text
    assert f'name="ids" value="{ids[1]}"' in page.text
    assert ids[2] not in page.text
    next_link = re.search(r'<a rel="next" href="\?([^"]+)">', page.text)
    assert next_link
    second = await client.get("/tasks?" + next_link.group(1).replace("&amp;", "&"))
    assert ids[2] in second.text
    assert evil in second.text
    assert "<script>alert(1)" not in second.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in second.text
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(2)&gt;" in page.text
    filtered = await client.get("/tasks", params={"name": "n1", "state": ""})
    assert ids[1] in filtered.text
    assert ids[0] not in filtered.text
    bad = await client.get("/tasks", params={"created_before": "soon"})
    assert bad.status_code == 422
    assert "created_before must be epoch seconds" in bad.text


async def test_a_bulk_action_from_the_page_is_confirmed_with_its_count(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    ids = [await submit(client, queue="page") for _ in range(3)]
    token = await csrf_token(client)
    form = {"csrf_token": token, "action": "cancel", "scope": "filter", "filter_queue": "page"}
    confirm = await client.post("/tasks/actions", data=form)
    assert confirm.status_code == 200, confirm.text
    assert "Cancel 3 tasks?" in confirm.text
    assert {(await queue.get_task(i)).state for i in ids} == {TaskState.PENDING}
    done = await client.post("/tasks/actions", data={**form, "confirm": "yes"})
    assert done.status_code == 303
    assert "done=cancel" in done.headers["location"]
    assert {(await queue.get_task(i)).state for i in ids} == {TaskState.CANCELLED}
    shown = await client.get(done.headers["location"])
    assert "Cancel: 3 changed, 0 skipped" in shown.text

    picked = [await submit(client, queue="page") for _ in range(2)]
    selection = {"csrf_token": token, "action": "hold", "scope": "ids", "ids": picked}
    assert "Hold 2 tasks?" in (await client.post("/tasks/actions", data=selection)).text
    held = await client.post("/tasks/actions", data={**selection, "confirm": "yes"})
    assert held.status_code == 303
    assert all([(await queue.get_task(i)).held for i in picked])


async def test_a_form_post_needs_the_csrf_token(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    task_id = await submit(client)
    form = {"action": "cancel", "scope": "ids", "ids": [task_id], "confirm": "yes"}
    refused = await client.post("/tasks/actions", data=form)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "CSRF token" in refused.json()["detail"]
    as_text = await client.post(
        "/api/tasks", content=b'{"kind": "call"}', headers={"content-type": "text/plain"}
    )
    assert as_text.status_code == 403
    token = await csrf_token(client)
    altered = token[:-1] + ("1" if token[-1] == "0" else "0")  # never the token itself
    wrong = await client.post("/tasks/actions", data={**form, "csrf_token": altered})
    assert wrong.status_code == 403
    forged = "0" * 32 + "." + "0" * 64  # cookie and field agree, but no signature of ours
    client.cookies.set("wq_csrf", forged)
    planted = await client.post("/tasks/actions", data={**form, "csrf_token": forged})
    assert planted.status_code == 403
    client.cookies.set("wq_csrf", token)
    assert (await queue.get_task(task_id)).state is TaskState.PENDING
    cross = await client.post(
        "/tasks/actions", data={**form, "csrf_token": token},
        headers={"origin": "http://evil.example"},
    )  # fmt: skip
    assert cross.status_code == 403
    assert "cross-origin" in cross.json()["detail"]
    header = await client.post(
        "/tasks/actions", data=form, headers={"x-csrf-token": token, "origin": "http://queue.test"}
    )
    assert header.status_code == 303
    assert (await queue.get_task(task_id)).state is TaskState.CANCELLED


async def test_json_and_bearer_clients_need_no_csrf_token_but_basic_auth_does(
    queue: WorkerQueue,
) -> None:
    async with api_client(queue, token="t0ken", user="ops", password="pw") as client:
        bearer = {"authorization": "Bearer t0ken"}
        basic = httpx.BasicAuth("ops", "pw")
        assert (await client.get("/api/status")).status_code == 401
        assert (
            await client.get("/api/status", auth=httpx.BasicAuth("ops", "no"))
        ).status_code == 401
        assert (await client.get("/api/status", auth=basic)).status_code == 200
        created = await client.post("/api/tasks", json=call(), auth=basic)  # JSON: no token
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        form = {"action": "hold", "scope": "ids", "ids": [task_id], "confirm": "yes"}
        by_bearer = await client.post("/tasks/actions", data=form, headers=bearer)
        assert by_bearer.status_code == 303
        by_basic = await client.post("/tasks/actions", data=form, auth=basic)
        assert by_basic.status_code == 403  # a browser resends basic credentials by itself


async def test_read_only_pages_show_no_action(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task("read only")])
    async with api_client(queue, read_only=True) as client:
        page = await client.get("/tasks")
        assert page.status_code == 200
        assert 'type="checkbox"' not in page.text
        assert "<button" not in page.text.split("</form>", 1)[-1]
        assert "/tasks/actions" not in page.text
        assert 'href="/submit"' not in page.text
        submit_page = await client.get("/submit")
        assert "<form" not in submit_page.text
        token = TOKEN.search(page.text)
        assert token
        form = {"csrf_token": token.group(1), "action": "cancel", "scope": "filter"}
        assert (await client.post("/tasks/actions", data=form)).status_code == 403
        assert (await client.post("/api/tasks", json=call())).status_code == 403


async def test_the_submit_page_has_a_form_per_kind_and_shows_errors_by_field(
    client: httpx.AsyncClient, queue: WorkerQueue
) -> None:
    page = await client.get("/submit")
    assert page.status_code == 200
    for kind in ("call", "command", "tts", "audio"):
        assert f'data-kind="{kind}"' in page.text
    assert 'name="request.text"' in page.text  # tts: a string
    assert 'name="request.speed" type="number" step="any"' in page.text
    assert re.search(r'<select id="tts-request.output_format"[^>]*>', page.text)
    assert re.search(r'<textarea id="command-request.argv"', page.text)  # strings, a line each
    assert re.search(r'<textarea id="call-request.kwargs"', page.text)  # an object: JSON
    assert 'name="idempotency_key"' in page.text
    token = TOKEN.search(page.text)
    assert token
    csrf = token.group(1)

    bad = await client.post(
        "/submit",
        data={"csrf_token": csrf, "kind": "tts", "request.text": "", "request.speed": "9",
              "request.voice_id": "kokoro.af_heart", "priority": "high"},
    )  # fmt: skip
    assert bad.status_code == 422
    errors = dict(re.findall(r'id="tts-([\w.]+)-error">([^<]+)<', bad.text))
    assert errors["request.text"] == "Field required"
    assert errors["request.speed"] == "Input should be less than or equal to 4"
    assert "valid integer" in errors["priority"]
    assert await queue.count_tasks() == 0
    not_json = await client.post(
        "/submit",
        data={"csrf_token": csrf, "kind": "call", "request.target": "os:getcwd",
              "request.kwargs": "{nope"},
    )  # fmt: skip
    assert (
        "not JSON"
        in dict(re.findall(r'id="call-([\w.]+)-error">([^<]+)<', not_json.text))["request.kwargs"]
    )

    good = await client.post(
        "/submit",
        data={"csrf_token": csrf, "kind": "command", "request.argv": "echo\nhello world\n",
              "request.timeout_s": "5", "queue": "forms", "name": "from the page",
              "priority": "3"},
    )  # fmt: skip
    assert good.status_code == 303, good.text
    task_id = good.headers["location"].rsplit("/", 1)[-1]
    assert good.headers["location"] == f"/tasks/{task_id}"
    task = await queue.get_task(task_id)
    assert (task.queue, task.name, task.priority) == ("forms", "from the page", 3)
    assert task.items[0].request.model_dump()["argv"] == ["echo", "hello world"]
    refused = await client.post("/submit", data={"kind": "call", "request.target": "os:getcwd"})
    assert refused.status_code == 403
