"""The request a delivery sends: its JSON body and headers, and the HMAC signature.

With a secret configured, ``X-Webhook-Signature: sha256=<hex>`` is the HMAC-SHA256, keyed
with the secret, of ``"<X-Webhook-Timestamp>." + <raw body bytes>``. A receiver recomputes it
over the raw body it received (before parsing JSON), compares in constant time, and rejects
timestamps too far from its own clock (replays)::

    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(f"sha256={expected}", signature_header)

``X-Webhook-Id`` (``<task id>:<item index>``) stays the same over retries: a receiver that
got a delivery twice (at-least-once) can tell. A task that was resumed and ended again has a
new outcome to deliver, under a new id: ``<task id>:<item index>:<n>``, n = 2, 3, ... counting
the endings the item has had deliveries for (see :func:`delivery_id`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from worker.core.models import Task

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
ID_HEADER = "X-Webhook-Id"
ATTEMPT_HEADER = "X-Webhook-Attempt"
USER_AGENT = "worker-queue-webhooks/1"


def delivery_id(task_id: str, item_index: int, ending: int) -> str:
    """``X-Webhook-Id``: ``<task id>:<item index>``, and ``:<ending>`` from a task's second
    ending on (so that the ids of first deliveries are what they always were)."""
    base = f"{task_id}:{item_index}"
    return base if ending == 1 else f"{base}:{ending}"


def payload(task: Task, item_index: int) -> dict[str, Any]:
    """The JSON body for one item of an ended task."""
    item = task.items[item_index]
    return {
        "task_id": task.id,
        "item_index": item_index,
        "queue": task.queue,
        "name": task.name,
        "state": task.state.value,
        "result": item.result,
        "error": item.error,
        "last_error": task.last_error,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "attempts": task.attempt_count,
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def headers(
    body: bytes, *, delivery_id: str, attempt: int, now: float, secret: str | None
) -> dict[str, str]:
    timestamp = str(int(now))
    out = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: delivery_id,
        ATTEMPT_HEADER: str(attempt),
        TIMESTAMP_HEADER: timestamp,
    }
    if secret is not None:
        out[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return out
