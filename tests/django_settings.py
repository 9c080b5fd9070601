"""The Django settings of tests/test_django_tasks.py (and of the ``wq worker`` it starts):
no models, no database of Django's own; the queue's URL comes from DJANGO_TEST_QUEUE_URL."""

from __future__ import annotations

import importlib.util
import os

SECRET_KEY = "tests only"
USE_TZ = True
TIME_ZONE = "UTC"
#: The django-tasks backport (Python 3.11) is an app; Django 6's django.tasks is not.
INSTALLED_APPS = [] if importlib.util.find_spec("django.tasks") else ["django_tasks"]
TASKS = {
    "default": {
        "BACKEND": "worker.integrations.django.WorkerQueueBackend",
        "QUEUES": ["default", "mail"],
        "OPTIONS": {"database_url": os.environ.get("DJANGO_TEST_QUEUE_URL", "sqlite:///unused.db")},
    }
}
LOGGING_CONFIG = None
