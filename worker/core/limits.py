"""The bounds every value the queue stores is held to, in one place: settings, tasks, calls."""

from __future__ import annotations

#: The longest duration a setting, a task, a retry policy or a call may name: a year, in
#: seconds.
MAX_DURATION_S = 365 * 86400.0
#: The latest instant a task may name (``schedule_at``, ``created_at``): the end of year 9999.
MAX_INSTANT = 253_402_300_799.0
#: The most attempts a task (or a webhook delivery) may have.
MAX_ATTEMPTS = 1_000_000
#: The range of a task's priority (higher runs first); a retry policy's ``priority_step``
#: stops at its ends.
MIN_PRIORITY = -1_000_000
MAX_PRIORITY = 1_000_000
#: The most tasks a worker process runs at once (``QUEUE_CONCURRENCY``, ``wq worker -c``).
MAX_CONCURRENCY = 10_000
