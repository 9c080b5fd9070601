"""QUEUE_* variables, defaults, and refusal of bad settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker import QueueConfig


def test_defaults() -> None:
    config = QueueConfig()
    assert config.database_url == "sqlite+aiosqlite:///data/queue.db"
    assert config.default_max_attempts == 3
    assert config.default_visibility_timeout == 3600
    assert config.retry_backoff_multiplier == 2.0
    assert config.retry_base_delay == 60
    assert config.max_retry_delay == 3600
    assert config.batch_size == 100
    assert config.sqlite_synchronous == "NORMAL"


def test_from_env_reads_queue_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "QUEUE_DATABASE_URL": "sqlite+aiosqlite:///x.db",
        "QUEUE_MAX_ATTEMPTS": "7",
        "QUEUE_VISIBILITY_TIMEOUT": "12.5",
        "QUEUE_RETRY_BACKOFF_MULTIPLIER": "3",
        "QUEUE_RETRY_BASE_DELAY": "1.5",
        "QUEUE_MAX_RETRY_DELAY": "90",
        "QUEUE_BATCH_SIZE": "25",
        "QUEUE_SQLITE_SYNCHRONOUS": "full",
        "QUEUE_SQLITE_CHECKPOINT_INTERVAL": "0",
        "QUEUE_SQLITE_WRITER_CACHE_MB": "8",
        "QUEUE_SQLITE_INLINE_ROWS": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = QueueConfig.from_env()
    assert config == QueueConfig.from_env(env)
    assert type(config) is QueueConfig
    assert config.database_url == "sqlite+aiosqlite:///x.db"
    assert config.default_max_attempts == 7
    assert config.default_visibility_timeout == 12.5
    assert config.retry_backoff_multiplier == 3
    assert config.retry_base_delay == 1.5
    assert config.max_retry_delay == 90
    assert config.batch_size == 25
    assert config.sqlite_synchronous == "FULL"
    assert config.sqlite_checkpoint_interval == 0
    assert config.sqlite_writer_cache_mb == 8
    assert config.sqlite_inline_rows == 0


def test_plain_construction_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_MAX_ATTEMPTS", "9")
    assert QueueConfig().default_max_attempts == 3


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValidationError, match="QUEUE_MAX_ATTEMPTS"):
        QueueConfig.from_env({"QUEUE_MAX_ATTEMPTS": "zero"})
    with pytest.raises(ValidationError, match="QUEUE_VISIBILITY_TIMEOUT"):
        QueueConfig.from_env({"QUEUE_VISIBILITY_TIMEOUT": "-1"})
    with pytest.raises(ValidationError, match="QUEUE_SQLITE_CHECKPOINT_INTERVAL"):
        QueueConfig.from_env({"QUEUE_SQLITE_CHECKPOINT_INTERVAL": "-0.5"})
    with pytest.raises(ValidationError, match="QUEUE_SQLITE_INLINE_ROWS"):
        QueueConfig.from_env({"QUEUE_SQLITE_INLINE_ROWS": "-1"})
    with pytest.raises(ValidationError, match="unknown_setting"):
        QueueConfig(unknown_setting=1)  # type: ignore[call-arg]
