"""Process-wide observers of what this process does to tasks: what a worker's Prometheus
metrics (``wq worker --metrics-port``) count. Nothing is observed until one is added, and
then each notification is a plain call; an observer that raises is logged, never breaks
the caller."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from worker.core.models import Task

log = logging.getLogger(__name__)


class Observer(Protocol):
    def enqueued(self, tasks: Sequence[Task], inserted: int) -> None:
        """``tasks`` were submitted in one batch, of which ``inserted`` were new."""

    def refused(self, task: Task) -> None:
        """An acknowledgement of ``task`` was refused: its lease had gone (fenced)."""

    def lease_expired(self, task: Task) -> None:
        """The sweep ended ``task``'s attempt because its lease expired."""

    def webhook(self, outcome: str) -> None:
        """A webhook delivery attempt ended: ``delivered``, ``failed`` (to be retried) or
        ``given_up``."""

    def unloadable(self, task_id: str, worker_id: str | None) -> None:
        """A claim by ``worker_id`` discarded ``task_id`` at once: its row could not be
        loaded (a request kind this process does not know, a row that no longer reads)."""


_observers: list[Observer] = []


def add(observer: Observer) -> None:
    _observers.append(observer)


def remove(observer: Observer) -> None:
    _observers.remove(observer)


def active() -> bool:
    return bool(_observers)


def enqueued(tasks: Sequence[Task], inserted: int) -> None:
    for observer in _observers:
        try:
            observer.enqueued(tasks, inserted)
        except Exception:
            log.exception("observer %r failed on enqueued", observer)


def refused(task: Task) -> None:
    for observer in _observers:
        try:
            observer.refused(task)
        except Exception:
            log.exception("observer %r failed on refused", observer)


def lease_expired(task: Task) -> None:
    for observer in _observers:
        try:
            observer.lease_expired(task)
        except Exception:
            log.exception("observer %r failed on lease_expired", observer)


def webhook(outcome: str) -> None:
    for observer in _observers:
        try:
            observer.webhook(outcome)
        except Exception:
            log.exception("observer %r failed on webhook", observer)


def unloadable(task_id: str, worker_id: str | None) -> None:
    for observer in _observers:
        try:
            observer.unloadable(task_id, worker_id)
        except Exception:
            log.exception("observer %r failed on unloadable", observer)
