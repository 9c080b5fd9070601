"""Webhooks: when a task ends, POST each item's outcome to its ``response_url``.

Delivery state lives in the database (``webhook_deliveries``), so retries survive restarts;
:func:`deliveries_for` (or ``WorkerQueue.webhook_deliveries``) reads it. :class:`Worker`
runs :func:`webhook_loop` next to its retry sweeper, and in burst mode :func:`drain_webhooks`
before it exits. See :mod:`worker.webhooks.signing` for the body and the signature,
:mod:`worker.webhooks.guard` for the address rules.
"""

from __future__ import annotations

from worker.webhooks.dispatcher import (
    WebhookDispatcher,
    deliveries_for,
    drain_webhooks,
    webhook_loop,
)
from worker.webhooks.errors import AddressRefusedError, TransportError, WebhookError
from worker.webhooks.models import DeliveryState, WebhookDelivery
from worker.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from worker.webhooks.transport import HttpxTransport, Outgoing, Transport

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AddressRefusedError",
    "DeliveryState",
    "HttpxTransport",
    "Outgoing",
    "Transport",
    "TransportError",
    "WebhookDelivery",
    "WebhookDispatcher",
    "WebhookError",
    "deliveries_for",
    "drain_webhooks",
    "signature",
    "webhook_loop",
]
