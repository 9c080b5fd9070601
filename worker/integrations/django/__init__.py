"""A backend for Django's task framework (``django.tasks``, Django 6.0; on Python 3.11 the
``django-tasks`` backport, the same API): a Django project enqueues with Django's own API and
``wq worker`` runs the tasks. See docs/integrations.md.

::

    TASKS = {
        "default": {
            "BACKEND": "worker.integrations.django.WorkerQueueBackend",
            "QUEUES": ["default", "mail"],
            "OPTIONS": {"database_url": "postgresql://queue@db/queue"},
        }
    }

    DJANGO_SETTINGS_MODULE=mysite.settings wq worker

Importing this package imports no Django: the backend loads on first use, and the request
kind (:mod:`worker.integrations.django.requests`) never needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from worker.integrations.django.backend import (
        TaskCancelled,
        TaskInterrupted,
        WorkerQueueBackend,
        close_queues,
    )

__all__ = ["TaskCancelled", "TaskInterrupted", "WorkerQueueBackend", "close_queues"]

_BACKEND = "worker.integrations.django.backend"
__getattr__ = lazy_getattr(__name__, dict.fromkeys(__all__, _BACKEND))
