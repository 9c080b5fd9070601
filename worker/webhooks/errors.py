"""Errors of a delivery attempt. They end an attempt, never a task, and never reach callers.

::

    QueueError
    └── WebhookError
        ├── AddressRefusedError   the URL resolves to a private address (permanent)
        └── TransportError        the POST did not get a response (retried)
"""

from __future__ import annotations

from worker.core.errors import QueueError


class WebhookError(QueueError):
    """A delivery attempt failed before an HTTP status came back."""


class AddressRefusedError(WebhookError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


class TransportError(WebhookError):
    """No response: connection refused, timeout, TLS or protocol error, name not resolved."""
