"""Queue settings: one typed object, built once at the edge.

``QueueConfig(...)`` never reads the environment; ``QueueConfig.from_env()`` does, from the
``QUEUE_*`` variables (:data:`VARIABLES`). Every field has a ``description`` (what it does,
its unit), so the settings table is generated from ``QueueConfig.model_fields``.

A refused setting raises :class:`~worker.core.errors.ConfigurationError`, one line per setting,
naming the variable for ``from_env()`` and the field for ``QueueConfig(...)``. A ``QUEUE_*``
variable that is no setting is logged as a warning naming the closest setting, and ignored:
other software may set variables of its own under that prefix, so refusing them would stop
the queue for no fault of its own, while silence would hide a typo.

Durations are seconds (float), finite and at most :data:`MAX_DURATION_S` (a year);
integers are bounded where a larger value would overflow or could only be a mistake.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from worker.core.database_url import async_database_url
from worker.core.errors import ConfigurationError
from worker.core.limits import MAX_ATTEMPTS, MAX_CONCURRENCY, MAX_DURATION_S

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/queue.db"
PREFIX = "QUEUE_"
#: SQLite keeps its busy timeout as a C int of milliseconds: 2**31 - 1 ms, about 24.8 days.
MAX_BUSY_TIMEOUT_S = 2_147_483.0
#: The shortest key that may sign CSRF tokens (the HMAC stays a guess of 2**128 at least).
MIN_CSRF_SECRET = 16


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _setting(default: Any, variable: str, description: str, **constraints: Any) -> Any:
    """A field read from ``variable``; ``QueueConfig(field=...)`` works as well."""
    return Field(
        default,
        validation_alias=AliasChoices(_field_of_variable(variable), variable),
        description=description,
        **constraints,
    )


def _duration(default: float, variable: str, description: str, *, zero: bool = False) -> Any:
    """A duration in seconds: finite, above 0 (or at least 0 with ``zero``), at most a year."""
    bound = {"ge": 0} if zero else {"gt": 0}
    return _setting(default, variable, description, le=MAX_DURATION_S, **bound)


# Field names that differ from their variable's name without the prefix.
_RENAMED = {
    "QUEUE_MAX_ATTEMPTS": "default_max_attempts",
    "QUEUE_VISIBILITY_TIMEOUT": "default_visibility_timeout",
}


def _field_of_variable(variable: str) -> str:
    return _RENAMED.get(variable, variable.removeprefix(PREFIX).lower())


class QueueConfig(BaseModel):
    """Settings of a :class:`~worker.WorkerQueue`. Durations are seconds (float)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    database_url: str = _setting(
        DEFAULT_DATABASE_URL,
        "QUEUE_DATABASE_URL",
        "The database, as a SQLAlchemy URL; sqlite:///PATH gets the async driver "
        "(sqlite+aiosqlite).",
    )
    data_dir: Path = _setting(
        Path("data"),
        "QUEUE_DATA_DIR",
        "Where runtime files go: processors write their outputs under outputs/<task id>/.",
    )
    default_max_attempts: int = _setting(
        3,
        "QUEUE_MAX_ATTEMPTS",
        "Attempts a task gets unless it sets its own max_attempts (1 to 1,000,000).",
        ge=1,
        le=MAX_ATTEMPTS,
    )
    default_visibility_timeout: float = _duration(
        3600.0,
        "QUEUE_VISIBILITY_TIMEOUT",
        "Lease of a claimed task, in seconds, unless it sets its own; a live worker renews "
        "it every third of this.",
    )
    retry_backoff_multiplier: float = _setting(
        2.0,
        "QUEUE_RETRY_BACKOFF_MULTIPLIER",
        "Each retry waits this many times longer than the one before (1 to 100).",
        ge=1.0,
        le=100.0,
    )
    retry_base_delay: float = _duration(
        60.0, "QUEUE_RETRY_BASE_DELAY", "Delay before the first retry, in seconds.", zero=True
    )
    max_retry_delay: float = _duration(
        3600.0, "QUEUE_MAX_RETRY_DELAY", "Longest delay between retries, in seconds.", zero=True
    )
    batch_size: int = _setting(
        100,
        "QUEUE_BATCH_SIZE",
        "Tasks a dequeue() claims when no size is given, and a sweep's batch (1 to 100,000).",
        ge=1,
        le=100_000,
    )
    max_pending: int = _setting(
        0,
        "QUEUE_MAX_PENDING",
        "The most pending tasks each queue may hold: an enqueue past it is refused whole "
        "(QueueFullError); 0: no bound (0 to 2**62).",
        ge=0,
        le=2**62,
    )
    sqlite_synchronous: Annotated[Literal["NORMAL", "FULL"], BeforeValidator(_upper)] = _setting(
        "NORMAL",
        "QUEUE_SQLITE_SYNCHRONOUS",
        "SQLite's synchronous pragma: NORMAL (durable against process crashes) or FULL "
        "(also against power loss, slower).",
    )
    busy_timeout: float = _setting(
        30.0,
        "QUEUE_BUSY_TIMEOUT",
        "How long a write waits for the database's lock before failing, in seconds (at most "
        "2,147,483: SQLite counts it in milliseconds in a 32-bit integer).",
        gt=0,
        le=MAX_BUSY_TIMEOUT_S,
    )
    # A bulk enqueue's pages stay in memory instead of spilling into the WAL and back.
    sqlite_writer_cache_mb: int = _setting(
        64,
        "QUEUE_SQLITE_WRITER_CACHE_MB",
        "Page cache of the connection the hot path writes on, in MiB (1 to 65,536).",
        ge=1,
        le=65_536,
    )
    # Inline: no hop to the driver's thread (~0.2 ms each). Bigger transactions, any that
    # would wait for the lock, and all of them when a commit may sync the disk
    # (synchronous=FULL, or checkpoints left to SQLite's commits) run in that thread.
    sqlite_inline_rows: int = _setting(
        256,
        "QUEUE_SQLITE_INLINE_ROWS",
        "Hot-path transactions of at most this many rows run on the event loop's thread when "
        "the write lock is free; 0: always in the driver's thread (0 to 1,000,000).",
        ge=0,
        le=1_000_000,
    )
    # worker.storage.sqlite.checkpoints; 0: SQLite's own, in the commit that takes the log
    # past 1,000 pages.
    sqlite_checkpoint_interval: float = _duration(
        1.0,
        "QUEUE_SQLITE_CHECKPOINT_INTERVAL",
        "WAL checkpoints run in the background this long after a write, in seconds; 0 "
        "leaves them to SQLite's commits.",
        zero=True,
    )
    # The runtime (worker loops).
    concurrency: int = _setting(
        4,
        "QUEUE_CONCURRENCY",
        f"Tasks a worker process runs at once (1 to {MAX_CONCURRENCY:,}).",
        ge=1,
        le=MAX_CONCURRENCY,
    )
    worker_timeout: float = _duration(
        300.0,
        "QUEUE_WORKER_TIMEOUT",
        "An attempt running longer is cancelled and fails, in seconds, unless the task sets "
        "its own timeout_s.",
    )
    # The same write brings back cancel requests and lost leases of the running tasks.
    heartbeat_interval: float = _duration(
        5.0,
        "QUEUE_HEARTBEAT_INTERVAL",
        "Each worker process records that it is alive this often, in seconds.",
    )
    worker_dead_after: float = _duration(
        15.0,
        "QUEUE_WORKER_DEAD_AFTER",
        "The sweep expires the leases of a worker not heard from for this long, in seconds "
        "(longer than QUEUE_HEARTBEAT_INTERVAL), so its tasks run again.",
    )
    poll_interval: float = _duration(
        1.0,
        "QUEUE_POLL_INTERVAL",
        "An idle worker looks for due tasks at least this often, in seconds.",
    )
    sweep_interval: float = _duration(
        5.0,
        "QUEUE_SWEEP_INTERVAL",
        "The sweep (expired leases, retries after backoff) runs this often, in seconds.",
    )
    shutdown_grace: float = _duration(
        30.0,
        "QUEUE_SHUTDOWN_GRACE",
        "On SIGINT/SIGTERM, running handlers get this long to finish before they are "
        "cancelled and their tasks released, in seconds.",
        zero=True,
    )
    memory_threshold: float = _setting(
        0.85,
        "QUEUE_MEMORY_THRESHOLD",
        "Above this fraction of the machine's memory in use, a worker halves its "
        "concurrency (above 0, at most 1).",
        gt=0,
        le=1,
    )
    # Pools (wq worker --processes N) and retirement (worker.runtime.retirement).
    worker_processes: int = _setting(
        1,
        "QUEUE_WORKER_PROCESSES",
        "Worker processes `wq worker` runs under one supervisor, which restarts any that dies "
        "(1 to 1,024); 1 without a task or memory limit: the worker runs in wq's own process.",
        ge=1,
        le=1024,
    )
    task_threads: int | None = _setting(
        None,
        "QUEUE_TASK_THREADS",
        "Threads one task may use for CPU work, a hint `wq worker` exports to its handlers "
        "(the speech engines size their thread pools by it; 1 to 1,024); none: the usable "
        "cores shared out over the worker processes and their concurrency, at least 1.",
        ge=1,
        le=1024,
    )
    worker_max_tasks: int = _setting(
        0,
        "QUEUE_WORKER_MAX_TASKS",
        "A worker retires once it has claimed this many tasks and they have ended; under "
        "`wq worker` a fresh process replaces it (0: never; at most 1,000,000,000).",
        ge=0,
        le=1_000_000_000,
    )
    worker_max_memory_mb: int = _setting(
        0,
        "QUEUE_WORKER_MAX_MEMORY_MB",
        "A worker retires once its process's resident memory passes this many MiB, after its "
        "running tasks end; under `wq worker` a fresh process replaces it (0: never; at most "
        "16,777,216).",
        ge=0,
        le=1 << 24,
    )
    worker_metrics_port: int = _setting(
        0,
        "QUEUE_WORKER_METRICS_PORT",
        "`wq worker` serves its own Prometheus metrics on 127.0.0.1 at this port (0: none; "
        "needs the `web` extra; not with a pool of worker processes).",
        ge=0,
        le=65535,
    )
    postgres_notify: bool = _setting(
        True,
        "QUEUE_POSTGRES_NOTIFY",
        "On PostgreSQL, wake idle workers on other machines at once with NOTIFY (one per "
        "enqueue transaction) and LISTEN; false behind PgBouncer in transaction mode, where "
        "LISTEN does not work (workers then poll every QUEUE_POLL_INTERVAL).",
    )
    database_clock: bool = _setting(
        True,
        "QUEUE_DATABASE_CLOCK",
        "On PostgreSQL, decide leases, schedules and the sweep with the database server's "
        "clock (this machine's, corrected by its measured offset), so machines whose clocks "
        "disagree agree; SQLite (one machine) always uses the machine's.",
    )
    allow_commands: bool = _setting(
        False,
        "QUEUE_ALLOW_COMMANDS",
        "Let workers run the built-in command kind (programs named by task data).",
    )
    call_allowed_modules: list[str] = _setting(
        [],
        "QUEUE_CALL_ALLOWED_MODULES",
        "Modules whose functions the built-in call kind may run, comma-separated; "
        "none: call is off.",
    )
    # Schedules (worker.runtime.scheduler): every worker fires the ticks that are due.
    schedule_interval: float = _duration(
        1.0,
        "QUEUE_SCHEDULE_INTERVAL",
        "Each worker enqueues the schedules' due ticks this often, in seconds (a tick is "
        "enqueued once, by whichever worker gets there first).",
    )
    # Callbacks by name (worker.runtime.callbacks): on_success / on_failure of a task.
    callback_allowed_modules: list[str] = _setting(
        [],
        "QUEUE_CALLBACK_ALLOWED_MODULES",
        "Modules whose functions tasks may name as on_success/on_failure callbacks, "
        "comma-separated; none: callbacks are refused (recorded failed on the task).",
    )
    callback_max_attempts: int = _setting(
        5,
        "QUEUE_CALLBACK_MAX_ATTEMPTS",
        "Attempts to run a task's callback before giving up (1 to 1,000,000).",
        ge=1,
        le=MAX_ATTEMPTS,
    )
    callback_timeout: float = _duration(
        60.0, "QUEUE_CALLBACK_TIMEOUT", "An attempt of a callback running longer fails, in seconds."
    )
    callback_base_delay: float = _duration(
        5.0,
        "QUEUE_CALLBACK_BASE_DELAY",
        "Delay before a failed callback's first retry (then times QUEUE_RETRY_BACKOFF_MULTIPLIER "
        "each time, at most QUEUE_MAX_RETRY_DELAY), in seconds.",
        zero=True,
    )
    callback_interval: float = _duration(
        1.0,
        "QUEUE_CALLBACK_INTERVAL",
        "Each worker looks for callbacks to run this often, in seconds.",
    )
    # Webhooks (worker.webhooks): a POST per task item with a response_url, once it ends.
    webhook_max_attempts: int = _setting(
        5,
        "QUEUE_WEBHOOK_MAX_ATTEMPTS",
        "Attempts to deliver a webhook before giving up (1 to 1,000,000).",
        ge=1,
        le=MAX_ATTEMPTS,
    )
    webhook_timeout: float = _duration(
        10.0, "QUEUE_WEBHOOK_TIMEOUT", "Timeout of one webhook POST, in seconds."
    )
    webhook_secret: SecretStr | None = _setting(
        None,
        "QUEUE_WEBHOOK_SECRET",
        "Key of the HMAC-SHA256 signature each webhook POST carries; none: unsigned.",
    )
    # The HTTP API and dashboard (wq web, worker.web).
    web_token: SecretStr | None = _setting(
        None,
        "QUEUE_WEB_TOKEN",
        "Bearer token `wq web` requires on every request (needed to listen beyond loopback).",
    )
    web_user: str | None = _setting(
        None,
        "QUEUE_WEB_USER",
        "User name of `wq web`'s basic authentication (with `QUEUE_WEB_PASSWORD`; "
        "`--user` overrides it).",
    )
    web_password: SecretStr | None = _setting(
        None,
        "QUEUE_WEB_PASSWORD",
        "Password of `wq web`'s basic authentication, for the user `QUEUE_WEB_USER` or "
        "`--user` names.",
    )
    web_csrf_secret: SecretStr | None = _setting(
        None,
        "QUEUE_WEB_CSRF_SECRET",
        "Random key (at least 16 bytes; `openssl rand -hex 32` makes one) that signs "
        "`wq web`'s CSRF tokens; give every web process behind one address the same. None: "
        "random per process, so a restart asks open pages to reload before their next action.",
    )
    webhook_allow_private: bool = _setting(
        False,
        "QUEUE_WEBHOOK_ALLOW_PRIVATE",
        "Allow webhooks to private, loopback and link-local addresses.",
    )
    webhook_base_delay: float = _duration(
        5.0,
        "QUEUE_WEBHOOK_BASE_DELAY",
        "Delay before a failed webhook's first retry (doubling after), in seconds.",
        zero=True,
    )
    webhook_interval: float = _duration(
        1.0,
        "QUEUE_WEBHOOK_INTERVAL",
        "The webhook dispatcher looks for work this often, in seconds.",
    )

    if not TYPE_CHECKING:  # mypy keeps the plugin's typed __init__

        def __init__(self, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise ConfigurationError(_problems(exc)) from None

        @classmethod
        def model_validate(cls, obj: Any, **kwargs: Any) -> QueueConfig:
            try:  # pydantic runs __init__ above, and wraps its error as a ValueError
                return super().model_validate(obj, **kwargs)
            except ValidationError as exc:
                raise _refused(exc) from None

    @model_validator(mode="after")
    def _liveness(self) -> QueueConfig:
        if self.worker_dead_after <= self.heartbeat_interval:
            raise PydanticCustomError(
                "liveness",
                "must be longer than heartbeat_interval (QUEUE_HEARTBEAT_INTERVAL): "
                "{dead} <= {interval}",
                {
                    "field": "worker_dead_after",
                    "dead": self.worker_dead_after,
                    "interval": self.heartbeat_interval,
                },
            )
        return self

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return async_database_url(value)

    @field_validator("web_csrf_secret", mode="after")
    @classmethod
    def _csrf_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_CSRF_SECRET:
            raise ValueError(f"must be at least {MIN_CSRF_SECRET} bytes long")
        return value

    @field_validator("call_allowed_modules", "callback_allowed_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueueConfig:
        """Read the ``QUEUE_*`` variables (from ``environ``, else the process environment).

        Names are matched ignoring case. A ``QUEUE_*`` variable that is no setting is
        logged as a warning (naming the closest setting) and ignored; a bad value raises
        :class:`~worker.core.errors.ConfigurationError` naming its variable.
        """
        source = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for key, value in source.items():
            name = key.upper()
            if not name.startswith(PREFIX):
                continue
            if name in FIELDS:
                values[name] = value
            else:
                log.warning("%s", unknown_variable(name))
        try:
            return cls(**values)
        except ConfigurationError as exc:  # a check across fields names a field: rename it
            problems = {VARIABLES.get(name, name): text for name, text in exc.problems.items()}
            raise ConfigurationError(problems) from None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


#: The variable of every field (``QUEUE_MAX_ATTEMPTS`` for ``default_max_attempts``).
VARIABLES: dict[str, str] = {
    name: str(field.validation_alias.choices[-1])  # type: ignore[union-attr]
    for name, field in QueueConfig.model_fields.items()
}
#: The field of every variable.
FIELDS: dict[str, str] = {variable: name for name, variable in VARIABLES.items()}


def unknown_variable(name: str) -> str:
    """The warning for a ``QUEUE_*`` variable that is no setting, with the closest one."""
    # Compared without the prefix, which every name shares.
    suffixes = [variable.removeprefix(PREFIX) for variable in FIELDS]
    closest = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1, cutoff=0.6)
    hint = f"did you mean {PREFIX}{closest[0]}?" if closest else "not a setting of the queue"
    return f"ignoring unknown variable {name} ({hint})"


def _refused(exc: ValidationError) -> ConfigurationError:
    """The :class:`ConfigurationError` inside ``exc``, or one made of its errors."""
    for error in exc.errors(include_url=False):
        inner = (error.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigurationError):
            return inner
    return ConfigurationError(_problems(exc))


def _secret_fields() -> set[str]:
    """The settings whose values are never echoed: the secrets, and the database URL."""
    fields = QueueConfig.model_fields.items()
    return {"database_url"} | {n for n, f in fields if "SecretStr" in str(f.annotation)}


def _problems(exc: ValidationError) -> dict[str, str]:
    """One line per setting: the name as given (variable or field) and what is wrong."""
    problems: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        context = error.get("ctx") or {}
        name = str(loc[0]) if loc else str(context.get("field", "configuration"))
        message = error["msg"].removeprefix("Value error, ")
        # A secret is not echoed; a database URL's message shows it without its password.
        quiet = FIELDS.get(name, name) in _secret_fields()
        if loc and not quiet and error["type"] != "missing":
            message = f"{message} (got {error['input']!r})"
        problems[name] = f"{problems[name]}; {message}" if name in problems else message
    return problems
