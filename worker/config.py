"""Queue settings: one typed object, built once at the edge.

``QueueConfig(...)`` never reads the environment; ``QueueConfig.from_env()`` does, from the
``QUEUE_*`` variables listed in the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/queue.db"


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _env(field: str, variable: str) -> Any:
    return AliasChoices(field, variable)


class QueueConfig(BaseSettings):
    """Settings of a :class:`~worker.WorkerQueue`. Durations are seconds (float)."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, case_sensitive=False
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        validation_alias=_env("database_url", "QUEUE_DATABASE_URL"),
        description=(
            "The database: an SQLAlchemy URL (SQLite through aiosqlite; PostgreSQL is planned)."
        ),
    )
    # Where runtime files go (processors' outputs under outputs/<task id>/).
    data_dir: Path = Field(
        Path("data"),
        validation_alias=_env("data_dir", "QUEUE_DATA_DIR"),
        description=(
            "Where runtime files go: processors write their outputs under outputs/<task id>/ "
            "(relative to the working directory)."
        ),
    )
    default_max_attempts: int = Field(
        3,
        ge=1,
        validation_alias=_env("default_max_attempts", "QUEUE_MAX_ATTEMPTS"),
        description="Attempts a task gets unless it sets max_attempts.",
    )
    default_visibility_timeout: float = Field(
        3600.0,
        gt=0,
        validation_alias=_env("default_visibility_timeout", "QUEUE_VISIBILITY_TIMEOUT"),
        description=(
            "Seconds a claim's lease lasts unless the task sets visibility_timeout; a running "
            "task's lease is renewed at a third of it."
        ),
    )
    retry_backoff_multiplier: float = Field(
        2.0,
        ge=1.0,
        validation_alias=_env("retry_backoff_multiplier", "QUEUE_RETRY_BACKOFF_MULTIPLIER"),
        description="Each retry waits this many times longer than the one before.",
    )
    retry_base_delay: float = Field(
        60.0,
        ge=0,
        validation_alias=_env("retry_base_delay", "QUEUE_RETRY_BASE_DELAY"),
        description="Seconds before the first retry.",
    )
    max_retry_delay: float = Field(
        3600.0,
        ge=0,
        validation_alias=_env("max_retry_delay", "QUEUE_MAX_RETRY_DELAY"),
        description="The longest wait between attempts, in seconds.",
    )
    batch_size: int = Field(
        100,
        ge=1,
        validation_alias=_env("batch_size", "QUEUE_BATCH_SIZE"),
        description="Default size of dequeue() and of the retry sweep.",
    )
    sqlite_synchronous: Annotated[Literal["NORMAL", "FULL"], BeforeValidator(_upper)] = Field(
        "NORMAL",
        validation_alias=_env("sqlite_synchronous", "QUEUE_SQLITE_SYNCHRONOUS"),
        description=(
            "SQLite's synchronous pragma: NORMAL (a power cut can lose the last commits) or FULL "
            "(every commit synced)."
        ),
    )
    busy_timeout: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("busy_timeout", "QUEUE_BUSY_TIMEOUT"),
        description="Seconds a writer waits for SQLite's write lock before failing.",
    )
    # The page cache of the connection the hot path writes on: a bulk enqueue's pages stay in
    # memory instead of spilling into the WAL and being read back.
    sqlite_writer_cache_mb: int = Field(
        64,
        ge=1,
        validation_alias=_env("sqlite_writer_cache_mb", "QUEUE_SQLITE_WRITER_CACHE_MB"),
        description=(
            "Page cache (MiB, allocated as used) of the connection enqueues, claims and "
            "acknowledgements write on."
        ),
    )
    # Hot-path transactions of at most this many rows run on the event loop's own thread
    # when the write lock is free (no hop to the driver's thread, ~0.2 ms each); bigger ones,
    # any that would wait for the lock, and all of them when a commit may sync the disk
    # (synchronous=FULL, or checkpoints left to SQLite's commits) run in the driver's
    # thread. 0: always the driver's thread.
    sqlite_inline_rows: int = Field(
        256,
        ge=0,
        validation_alias=_env("sqlite_inline_rows", "QUEUE_SQLITE_INLINE_ROWS"),
        description=(
            "Hot-path transactions of at most this many rows run on the event loop's thread when "
            "the write lock is free; 0: always in the driver's thread."
        ),
    )
    # WAL checkpoints run in the background this long after a write (worker.checkpoint);
    # 0 leaves them to SQLite, inside the commit that takes the log past 1,000 pages.
    sqlite_checkpoint_interval: float = Field(
        1.0,
        ge=0,
        validation_alias=_env("sqlite_checkpoint_interval", "QUEUE_SQLITE_CHECKPOINT_INTERVAL"),
        description=(
            "Seconds after a write that a background thread checkpoints the WAL; 0 leaves "
            "checkpoints to SQLite, inside the commit that passes 1,000 pages."
        ),
    )
    # The runtime (worker loops).
    concurrency: int = Field(
        4,
        ge=1,
        validation_alias=_env("concurrency", "QUEUE_CONCURRENCY"),
        description="Tasks a worker runs at once.",
    )
    worker_timeout: float = Field(
        300.0,
        gt=0,
        validation_alias=_env("worker_timeout", "QUEUE_WORKER_TIMEOUT"),
        description="Seconds an attempt may run unless the task sets timeout_s.",
    )
    # Liveness: each worker process records that it is alive this often (the same write
    # brings back cancel requests and lost leases of its running tasks); the sweep expires
    # the leases of a worker not heard from for worker_dead_after, so its tasks run again.
    heartbeat_interval: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("heartbeat_interval", "QUEUE_HEARTBEAT_INTERVAL"),
        description="Seconds between a worker process's liveness heartbeats.",
    )
    worker_dead_after: float = Field(
        15.0,
        gt=0,
        validation_alias=_env("worker_dead_after", "QUEUE_WORKER_DEAD_AFTER"),
        description=(
            "Seconds without a heartbeat after which a worker counts as dead and its leases "
            "expire; must be longer than the heartbeat interval."
        ),
    )
    poll_interval: float = Field(
        1.0,
        gt=0,
        validation_alias=_env("poll_interval", "QUEUE_POLL_INTERVAL"),
        description="Seconds between an idle worker's fallback polls for due tasks.",
    )
    sweep_interval: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("sweep_interval", "QUEUE_SWEEP_INTERVAL"),
        description="Seconds between runs of the retry sweeper.",
    )
    shutdown_grace: float = Field(
        30.0,
        ge=0,
        validation_alias=_env("shutdown_grace", "QUEUE_SHUTDOWN_GRACE"),
        description="Seconds running tasks may take to finish after SIGINT or SIGTERM.",
    )
    memory_threshold: float = Field(
        0.85,
        gt=0,
        le=1,
        validation_alias=_env("memory_threshold", "QUEUE_MEMORY_THRESHOLD"),
        description=(
            "Fraction of the machine's memory in use above which workers halve their concurrency."
        ),
    )
    allow_commands: bool = Field(
        False,
        validation_alias=_env("allow_commands", "QUEUE_ALLOW_COMMANDS"),
        description="Let command tasks start processes.",
    )
    call_allowed_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("call_allowed_modules", "QUEUE_CALL_ALLOWED_MODULES"),
        description="Comma-separated modules whose functions call tasks may run.",
    )
    # Webhooks (worker.webhooks): a POST per task item with a response_url, once it ends.
    webhook_max_attempts: int = Field(
        5,
        ge=1,
        validation_alias=_env("webhook_max_attempts", "QUEUE_WEBHOOK_MAX_ATTEMPTS"),
        description="Deliveries tried per task item before giving up.",
    )
    webhook_timeout: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("webhook_timeout", "QUEUE_WEBHOOK_TIMEOUT"),
        description="Seconds one webhook POST may take.",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        validation_alias=_env("webhook_secret", "QUEUE_WEBHOOK_SECRET"),
        description="Signs webhook bodies (X-Webhook-Signature: sha256=...); unset: unsigned.",
    )
    webhook_allow_private: bool = Field(
        False,
        validation_alias=_env("webhook_allow_private", "QUEUE_WEBHOOK_ALLOW_PRIVATE"),
        description="Allow webhooks to private, loopback and link-local addresses.",
    )
    webhook_base_delay: float = Field(
        5.0,
        ge=0,
        validation_alias=_env("webhook_base_delay", "QUEUE_WEBHOOK_BASE_DELAY"),
        description=(
            "Seconds before a failed delivery's first retry, growing by the backoff multiplier."
        ),
    )
    webhook_interval: float = Field(
        1.0,
        gt=0,
        validation_alias=_env("webhook_interval", "QUEUE_WEBHOOK_INTERVAL"),
        description="Seconds between a worker's looks for webhook deliveries to make.",
    )

    @model_validator(mode="after")
    def _liveness(self) -> QueueConfig:
        if self.worker_dead_after <= self.heartbeat_interval:
            raise ValueError(
                "worker_dead_after (QUEUE_WORKER_DEAD_AFTER) must be longer than "
                f"heartbeat_interval (QUEUE_HEARTBEAT_INTERVAL): {self.worker_dead_after} <= "
                f"{self.heartbeat_interval}"
            )
        return self

    @field_validator("call_allowed_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Plain construction is pure: only the keyword arguments count.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueueConfig:
        """Read the ``QUEUE_*`` variables (from ``environ``, else the process environment)."""
        if environ is None:
            return cls.model_validate(_FromEnvironment().model_dump())
        wanted = {k: v for k, v in environ.items() if k.upper().startswith("QUEUE_")}
        return cls.model_validate({k.upper(): v for k, v in wanted.items()})

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class _FromEnvironment(QueueConfig):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)
