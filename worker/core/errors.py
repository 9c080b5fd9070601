"""Every error the queue raises.

The tree::

    QueueError                       root: ``except QueueError`` catches everything below
    ├── TaskNotFoundError            no task has that id
    ├── ScheduleNotFoundError        no schedule has that name
    ├── InvalidStateTransitionError  the task is not in a state the operation accepts
    │   └── LeaseLostError           the caller's lease is stale: another claim owns the task now
    ├── DuplicateTaskError           an enqueued id already exists
    ├── QueueFullError               an enqueue would take a queue past QUEUE_MAX_PENDING;
    │                                nothing was written
    ├── InvalidInputError            an argument was refused (ValueError too)
    │   └── InvalidTaskError         enqueue refused a task; nothing was written
    ├── UnknownRequestKindError      a request kind (or model) is not registered
    ├── QueueClosedError             the queue was used before ``initialize()`` or after ``close()``
    ├── ConfigurationError           a setting was refused (ValueError too); one line per setting
    └── StorageError                 the database failed (locked, unwritable, not a database, full)
        ├── SchemaMismatchError      the file's tables lack columns its schema revision declares
        ├── DatabaseNotFoundError    no database at that path, and the caller would not create one
        ├── SchemaOutdatedError      the database is at an older schema revision than this code
        └── DatabaseLostError        the database cannot keep what this process writes (its
                                     write-ahead log was deleted, a checkpoint failed): stop

Driver errors are converted once, in :mod:`worker.storage.database`, with ``raise ... from exc``.
"""

from __future__ import annotations

import re


class QueueError(Exception):
    """Root of every error this library raises."""


class TaskNotFoundError(QueueError, KeyError):
    """No task has the given id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0])


class ScheduleNotFoundError(QueueError, KeyError):
    """No schedule has the given name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidStateTransitionError(QueueError):
    """The task's state does not allow the requested operation."""

    def __init__(self, task_id: str, operation: str, state: str, expected: tuple[str, ...]) -> None:
        allowed = " or ".join(
            [", ".join(expected[:-1]), expected[-1]] if expected[1:] else expected
        )
        super().__init__(
            f"cannot {operation} task {task_id!r}: it is {state}, {operation} needs {allowed}"
        )
        self.task_id = task_id
        self.operation = operation
        self.state = state
        self.expected = expected


class LeaseLostError(InvalidStateTransitionError):
    """The caller's lease is no longer the task's lease; its write changed nothing."""

    def __init__(self, task_id: str, operation: str, state: str, lease_id: str) -> None:
        QueueError.__init__(
            self,
            f"cannot {operation} task {task_id!r}: lease {lease_id!r} was lost "
            f"(the task is {state} under another lease)",
        )
        self.task_id = task_id
        self.operation = operation
        self.state = state
        self.expected = ("processing",)
        self.lease_id = lease_id


class DuplicateTaskError(QueueError):
    """A task with this id already exists."""

    def __init__(self, task_ids: list[str]) -> None:
        super().__init__(f"task id already exists: {', '.join(task_ids)}")
        self.task_ids = task_ids


class QueueFullError(QueueError):
    """An enqueue would take a queue past its bound on pending tasks (``QUEUE_MAX_PENDING``);
    the whole batch was refused, nothing was written. Try again once workers have caught up."""

    def __init__(self, queue: str, pending: int, adding: int, limit: int) -> None:
        super().__init__(
            f"queue {queue!r} is full: it holds {pending:,} pending task"
            f"{'' if pending == 1 else 's'} and this enqueue would add {adding:,}, past "
            f"QUEUE_MAX_PENDING ({limit:,}); nothing was enqueued"
        )
        self.queue = queue
        self.pending = pending
        self.adding = adding
        self.limit = limit


class InvalidInputError(QueueError, ValueError):
    """An argument was refused; the message names it."""


class InvalidTaskError(InvalidInputError):
    """Enqueue refused a task; the message names the task's index and the field."""


class UnknownRequestKindError(QueueError, LookupError):
    """A request kind or request model is not registered."""


class QueueClosedError(QueueError):
    """The queue is not open: call ``initialize()`` first, and not after ``close()``."""


class ConfigurationError(QueueError, ValueError):
    """Settings were refused. ``problems`` maps each bad setting (the ``QUEUE_*`` variable
    from :meth:`~worker.QueueConfig.from_env`, the field name from ``QueueConfig(...)``) to
    what is wrong with it; the message is one line per setting, ``NAME: problem``."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("\n".join(f"{name}: {problem}" for name, problem in problems.items()))
        self.problems = problems


class StorageError(QueueError):
    """The database failed; the message names the database URL and the driver's cause."""

    def __init__(self, database_url: str, action: str, cause: BaseException) -> None:
        super().__init__(f"{action} failed on {shown_url(database_url)}: {cause}")
        self.database_url = database_url
        self.cause = cause


def shown_url(database_url: str) -> str:
    """The URL as it may be shown: a password in it becomes ``***``."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", database_url)


class SchemaMismatchError(StorageError):
    """The database says it is at a schema revision its tables do not match (a file made by
    an unreleased or hand-edited schema): refusing it beats failing on the first query."""

    def __init__(self, database_url: str, missing: dict[str, list[str]]) -> None:
        detail = "; ".join(f"{table}: {', '.join(cols)}" for table, cols in sorted(missing.items()))
        cause = ValueError(
            f"the tables lack columns their schema revision declares ({detail}); "
            "use a new database file, or rebuild this one"
        )
        super().__init__(database_url, "opening the queue", cause)
        self.missing = missing


class DatabaseLostError(StorageError):
    """This process can no longer write to the database safely: its SQLite write-ahead log
    was deleted or replaced under it, or a checkpoint failed. Every later write raises this;
    a worker stops. What this process had committed was copied into the database file where
    that was still possible."""

    def __init__(self, database_url: str, reason: str, *, how_to_check: str = "") -> None:
        check = f"check it ({how_to_check})" if how_to_check else "check it"
        cause = OSError(
            f"{reason}; this process writes nothing more to it. Stop every process using the "
            f"database, {check} or restore it from a backup, then start the workers again"
        )
        super().__init__(database_url, "writing", cause)
        self.reason = reason


class DatabaseNotFoundError(StorageError):
    """``initialize(create=False)`` (and read-only opening) found no database file."""

    def __init__(self, database_url: str, path: str) -> None:
        cause = FileNotFoundError(f"no database at {path}")
        super().__init__(database_url, "opening the queue", cause)
        self.path = path


class SchemaOutdatedError(StorageError):
    """``initialize(create=False)`` found a database at another schema revision than this
    code's: an older one needs migrating first (``initialize()``, ``wq db upgrade``); a newer
    one was made by a newer version of this library."""

    def __init__(
        self, database_url: str, revision: str | None, expected: str, *, newer: bool
    ) -> None:
        self.revision = revision
        self.expected = expected
        self.newer = newer  # a revision this code does not know: a later version made it
        found = f"the database is at schema revision {revision or '(none)'}"
        if newer:
            advice = f"newer than this version's ({expected}): upgrade worker-queue"
        else:
            advice = f"this version needs {expected}: run `wq db upgrade` (or initialize())"
        super().__init__(database_url, "opening the queue", ValueError(f"{found}, {advice}"))
