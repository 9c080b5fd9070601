"""Settings of the example: no models, no database of Django's own; the tasks go to the
queue at QUEUE_DATABASE_URL (default: queue.db in the working directory)."""

import importlib.util
import os

SECRET_KEY = "example only: set a real one"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "mysite.urls"
# Django 6 has django.tasks built in; on Python 3.11 the django-tasks backport is an app.
INSTALLED_APPS = [] if importlib.util.find_spec("django.tasks") else ["django_tasks"]

TASKS = {
    "default": {
        "BACKEND": "worker.integrations.django.WorkerQueueBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {
            "database_url": os.environ.get("QUEUE_DATABASE_URL", "sqlite:///queue.db"),
            "max_attempts": 3,
        },
    }
}
