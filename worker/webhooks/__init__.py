"""Webhooks: when a task ends, POST each item's outcome to its ``response_url``.

Delivery state lives in the database (``webhook_deliveries``), so retries survive restarts;
:func:`deliveries_for` (or ``WorkerQueue.webhook_deliveries``) reads it. :class:`Worker`
runs :func:`webhook_loop` next to its retry sweeper, and in burst mode :func:`drain_webhooks`
before it exits. See :mod:`worker.webhooks.signing` for the body and the signature,
:mod:`worker.webhooks.guard` for the address rules.

The names load on first use (PEP 562), as :mod:`worker`'s do: the storage reads the delivery
models (:mod:`worker.core.deliveries`) without loading httpx and the dispatcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from worker.core.deliveries import DeliveryState, WebhookDelivery
    from worker.webhooks.dispatcher import (
        WebhookDispatcher,
        deliveries_for,
        drain_webhooks,
        webhook_loop,
    )
    from worker.webhooks.errors import AddressRefusedError, TransportError, WebhookError
    from worker.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
    from worker.webhooks.transport import HttpxTransport, Outgoing, Transport

_MODULES = {
    "WebhookDispatcher": "worker.webhooks.dispatcher",
    "deliveries_for": "worker.webhooks.dispatcher",
    "drain_webhooks": "worker.webhooks.dispatcher",
    "webhook_loop": "worker.webhooks.dispatcher",
    "AddressRefusedError": "worker.webhooks.errors",
    "TransportError": "worker.webhooks.errors",
    "WebhookError": "worker.webhooks.errors",
    "DeliveryState": "worker.core.deliveries",
    "WebhookDelivery": "worker.core.deliveries",
    "SIGNATURE_HEADER": "worker.webhooks.signing",
    "TIMESTAMP_HEADER": "worker.webhooks.signing",
    "signature": "worker.webhooks.signing",
    "HttpxTransport": "worker.webhooks.transport",
    "Outgoing": "worker.webhooks.transport",
    "Transport": "worker.webhooks.transport",
}


__getattr__ = lazy_getattr(__name__, _MODULES)


def __dir__() -> list[str]:
    return sorted(__all__)


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
