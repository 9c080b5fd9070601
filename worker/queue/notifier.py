"""In-process wake-ups: what an enqueue (or a cancel request) pokes, and idle workers wait on."""

from __future__ import annotations

import asyncio
import weakref


class Notifier:
    """In-process wake-ups: ``notify()`` sets every subscribed event."""

    def __init__(self) -> None:
        self._events: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()

    def subscribe(self, event: asyncio.Event) -> None:
        self._events.add(event)

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    def notify(self) -> None:
        for event in list(self._events):
            event.set()
