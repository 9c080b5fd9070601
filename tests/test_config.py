"""QUEUE_* variables, defaults, and refusal of bad settings (the CLI's side: test_cli_config)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from worker import ConfigurationError, QueueConfig, QueueError, WorkerQueue
from worker.core.config import FIELDS, MAX_BUSY_TIMEOUT_S, VARIABLES
from worker.core.limits import MAX_DURATION_S

#: The variables the README documented before descriptions were added: names are a contract.
DOCUMENTED = {
    "database_url": "QUEUE_DATABASE_URL",
    "data_dir": "QUEUE_DATA_DIR",
    "default_max_attempts": "QUEUE_MAX_ATTEMPTS",
    "default_visibility_timeout": "QUEUE_VISIBILITY_TIMEOUT",
    "retry_backoff_multiplier": "QUEUE_RETRY_BACKOFF_MULTIPLIER",
    "retry_base_delay": "QUEUE_RETRY_BASE_DELAY",
    "max_retry_delay": "QUEUE_MAX_RETRY_DELAY",
    "batch_size": "QUEUE_BATCH_SIZE",
    "sqlite_synchronous": "QUEUE_SQLITE_SYNCHRONOUS",
    "busy_timeout": "QUEUE_BUSY_TIMEOUT",
    "concurrency": "QUEUE_CONCURRENCY",
    "worker_timeout": "QUEUE_WORKER_TIMEOUT",
    "webhook_secret": "QUEUE_WEBHOOK_SECRET",
}
DURATIONS = [
    name
    for name, field in QueueConfig.model_fields.items()
    if field.annotation is float and name not in {"retry_backoff_multiplier", "memory_threshold"}
]


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
    assert config.data_dir == Path("data")


def test_from_env_reads_queue_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "QUEUE_DATABASE_URL": "sqlite+aiosqlite:///x.db",
        "QUEUE_DATA_DIR": "/srv/queue",
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
        "QUEUE_CALL_ALLOWED_MODULES": "a.b, c",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = QueueConfig.from_env()
    assert config == QueueConfig.from_env(env)
    assert type(config) is QueueConfig
    assert config.database_url == "sqlite+aiosqlite:///x.db"
    assert config.data_dir == Path("/srv/queue")
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
    assert config.call_allowed_modules == ["a.b", "c"]


def test_plain_construction_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_MAX_ATTEMPTS", "9")
    assert QueueConfig().default_max_attempts == 3


def test_every_field_has_a_variable_and_a_one_line_description() -> None:
    assert set(VARIABLES) == set(QueueConfig.model_fields)
    assert {name: VARIABLES[name] for name in DOCUMENTED} == DOCUMENTED
    assert all(variable.startswith("QUEUE_") for variable in FIELDS)
    for name, field in QueueConfig.model_fields.items():
        assert field.description, name
        assert "\n" not in field.description
    # A field is also accepted under its variable's name.
    assert QueueConfig(QUEUE_MAX_ATTEMPTS=5).default_max_attempts == 5  # type: ignore[call-arg]


def test_a_bad_value_names_the_variable_in_one_line() -> None:
    with pytest.raises(ConfigurationError) as caught:
        QueueConfig.from_env({"QUEUE_MAX_ATTEMPTS": "zero"})
    error = caught.value
    assert isinstance(error, QueueError)
    assert isinstance(error, ValueError)
    assert str(error).startswith("QUEUE_MAX_ATTEMPTS: ")
    assert "'zero'" in str(error)
    assert "\n" not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__  # no pydantic traceback printed with it
    assert "pydantic" not in str(error)
    assert list(error.problems) == ["QUEUE_MAX_ATTEMPTS"]

    with pytest.raises(ConfigurationError, match=r"^QUEUE_SQLITE_CHECKPOINT_INTERVAL: "):
        QueueConfig.from_env({"QUEUE_SQLITE_CHECKPOINT_INTERVAL": "-0.5"})
    with pytest.raises(ConfigurationError, match=r"^QUEUE_SQLITE_INLINE_ROWS: "):
        QueueConfig.from_env({"queue_sqlite_inline_rows": "-1"})  # names match in any case


def test_several_bad_values_give_one_line_each() -> None:
    env = {"QUEUE_MAX_ATTEMPTS": "0", "QUEUE_BATCH_SIZE": "many", "QUEUE_CONCURRENCY": "2"}
    with pytest.raises(ConfigurationError) as caught:
        QueueConfig.from_env(env)
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["QUEUE_MAX_ATTEMPTS", "QUEUE_BATCH_SIZE"]


def test_a_check_across_settings_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^QUEUE_WORKER_DEAD_AFTER: must be longer"):
        QueueConfig.from_env({"QUEUE_HEARTBEAT_INTERVAL": "20"})
    with pytest.raises(ConfigurationError, match=r"^worker_dead_after: must be longer"):
        QueueConfig(heartbeat_interval=20)


def test_construction_names_the_field() -> None:
    with pytest.raises(ConfigurationError, match=r"^default_max_attempts: .*\(got 0\)$"):
        QueueConfig(default_max_attempts=0)
    with pytest.raises(ConfigurationError, match=r"^unknown_setting: Extra inputs"):
        QueueConfig(unknown_setting=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match=r"^busy_timeout: "):
        QueueConfig.model_validate({"busy_timeout": float("inf")})


@pytest.mark.parametrize("name", DURATIONS)
def test_every_duration_is_finite_and_bounded(name: str) -> None:
    variable = VARIABLES[name]
    bound = MAX_BUSY_TIMEOUT_S if name == "busy_timeout" else MAX_DURATION_S
    for value in ("inf", "-inf", "nan", "1e300", str(bound * 2)):
        with pytest.raises(ConfigurationError, match=f"^{variable}: "):
            QueueConfig.from_env({variable: value})
        with pytest.raises(ConfigurationError, match=f"^{name}: "):
            QueueConfig(**{name: float(value)})
    if name != "heartbeat_interval":  # the longest heartbeat needs a longer dead-after
        assert getattr(QueueConfig.from_env({variable: str(bound)}), name) == bound


@pytest.mark.parametrize(
    "variable",
    [
        "QUEUE_MAX_ATTEMPTS",
        "QUEUE_BATCH_SIZE",
        "QUEUE_CONCURRENCY",
        "QUEUE_SQLITE_WRITER_CACHE_MB",
        "QUEUE_SQLITE_INLINE_ROWS",
        "QUEUE_WEBHOOK_MAX_ATTEMPTS",
        "QUEUE_RETRY_BACKOFF_MULTIPLIER",
    ],
)
def test_numbers_that_could_overflow_are_bounded(variable: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{variable}: "):
        QueueConfig.from_env({variable: str(2**63)})


async def test_the_longest_busy_timeout_fits_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    config = QueueConfig.from_env({"QUEUE_DATABASE_URL": url, "QUEUE_BUSY_TIMEOUT": "2147483"})
    async with WorkerQueue(config) as queue:
        assert (await queue.get_queue_stats())["total"] == 0


def test_an_unknown_variable_warns_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.core.config")
    config = QueueConfig.from_env({"QUEUE_CONCURENCY": "8", "QUEUE_ZZZ_OTHER_TOOL": "1"})
    assert config.concurrency == QueueConfig().concurrency  # ignored, not applied
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "ignoring unknown variable QUEUE_CONCURENCY (did you mean QUEUE_CONCURRENCY?)",
        "ignoring unknown variable QUEUE_ZZZ_OTHER_TOOL (not a setting of the queue)",
    ]
    caplog.clear()
    monkeypatch.setenv("QUEUE_CONCURENCY", "8")
    assert QueueConfig.from_env() == QueueConfig()  # the process environment: the same
    assert [record.getMessage() for record in caplog.records] == messages[:1]


def test_database_urls() -> None:
    with pytest.raises(ConfigurationError, match=r"^QUEUE_DATABASE_URL: not a database URL"):
        QueueConfig.from_env({"QUEUE_DATABASE_URL": "postgresql:/u@db/q"})  # a slash short
    with pytest.raises(ConfigurationError, match=r"^database_url: not a database URL"):
        QueueConfig(database_url="sqlite:")
    # A plain file path is a SQLite database, in the variable as with wq --db.
    assert QueueConfig(database_url="jobs.db").database_url == "sqlite+aiosqlite:///jobs.db"
    home = QueueConfig.from_env({"QUEUE_DATABASE_URL": "~/q/jobs.db"}).database_url
    assert home == f"sqlite+aiosqlite:///{Path.home() / 'q' / 'jobs.db'}"
    # The sync driver, named or implied, gets the async one.
    for given in ("sqlite:////x/q.db", "sqlite+pysqlite:////x/q.db"):
        assert QueueConfig(database_url=given).database_url == "sqlite+aiosqlite:////x/q.db"
    assert QueueConfig(database_url="sqlite://").database_url == "sqlite+aiosqlite://"
    url = "sqlite+aiosqlite:///file:rel/q.db?mode=ro&uri=true"
    assert QueueConfig(database_url=url).database_url == url
    # PostgreSQL: asyncpg, whichever driver the URL names.
    for given in ("postgresql://u@db/q", "postgresql+psycopg2://u@db/q"):
        assert QueueConfig(database_url=given).database_url == "postgresql+asyncpg://u@db/q"
    with pytest.raises(ConfigurationError) as caught:
        QueueConfig.from_env({"QUEUE_DATABASE_URL": "mysql+aiomysql://u:hunter2@db/q"})
    message = str(caught.value)
    assert message.startswith("QUEUE_DATABASE_URL: 'mysql' is not supported")
    assert "use SQLite" in message
    assert "or PostgreSQL (e.g. postgresql://" in message
    assert "hunter2" not in message
    with pytest.raises(ConfigurationError, match="driver 'pypostgresql' is not supported"):
        QueueConfig(database_url="postgresql+pypostgresql://db/q")
    with pytest.raises(ConfigurationError, match="driver 'pysqlcipher' is not supported"):
        QueueConfig(database_url="sqlite+pysqlcipher:///q.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@db:99999/q", "the port 99999 is not valid, it takes 1 to 65535"),
        (f"postgresql://u@{'h' * 300}/q", "is not a valid host name (labels of 1 to 63"),
        ("postgresql://u@db/q?sslmode=require", "'sslmode' is not a PostgreSQL URL option; use"),
        ("postgresql://u@db/q?nosuch=1", "'nosuch' is not a PostgreSQL URL option (the options: "),
        ("postgresql://u@db/q?ssl=bogus", "ssl='bogus' is not valid: it takes one of disable,"),
        ("postgresql://u@db/q?timeout=abc", "timeout='abc' is not valid: it takes seconds"),
        ("postgresql://u@db/q?timeout=nan", "timeout='nan' is not valid"),
        ("postgresql://u@db/q?statement_cache_size=-1", "statement_cache_size='-1' is not valid"),
        ("postgresql://u@db/q?direct_tls=maybe", "direct_tls='maybe' is not valid: it takes true"),
        ("postgresql://u@db/q?port=0", "port='0' is not valid: it takes a port, 1 to 65535"),
        ("postgresql://u@db/q?timeout=1&timeout=2", "the URL option timeout is given 2 times"),
    ],
)  # fmt: skip
def test_a_postgresql_url_is_checked_before_anything_connects(url: str, message: str) -> None:
    """What asyncpg would fail on at the first connection with an OverflowError, a TypeError
    or a UnicodeError (or send to the server as a setting) is refused with the setting named."""
    with pytest.raises(ConfigurationError) as caught:
        QueueConfig.from_env({"QUEUE_DATABASE_URL": url})
    assert str(caught.value).startswith("QUEUE_DATABASE_URL: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_postgresql_url_options_that_asyncpg_takes() -> None:
    from worker.core.database_url import postgres_options
    from worker.storage.postgres.listener import asyncpg_connect_args

    url = (
        "postgresql://u:pw@[::1]:5433/q?ssl=disable&timeout=5&command_timeout=30"
        "&statement_cache_size=0&direct_tls=false&target_session_attrs=any"
        "&prepared_statement_cache_size=10"
    )
    config = QueueConfig(database_url=url)
    assert config.database_url.startswith("postgresql+asyncpg://u:pw@[::1]:5433/q?")
    assert postgres_options({"timeout": "5", "ssl": "require", "direct_tls": "OFF"}) == {
        "timeout": 5.0,
        "direct_tls": False,
    }
    # The LISTEN connection: what asyncpg's DSN parser reads stays in the DSN, the rest are
    # arguments (in the DSN, asyncpg would send ssl=disable to the server as a setting).
    dsn, arguments = asyncpg_connect_args(config.database_url)
    assert dsn == "postgresql://u:pw@[::1]:5433/q?target_session_attrs=any"
    assert arguments == {
        "ssl": "disable",
        "timeout": 5.0,
        "command_timeout": 30.0,
        "statement_cache_size": 0,
        "direct_tls": False,
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///q.db?mode=ro", "the URL option mode is SQLite's, read only in a file: URI"),
        ("sqlite:///q.db?timeout=5", "timeout cannot be set: QUEUE_BUSY_TIMEOUT sets how long"),
        ("sqlite:///q.db?isolation_level=x", "isolation_level cannot be set: the queue opens"),
        ("sqlite:///q.db?nosuch=1", "'nosuch' is not a SQLite URL option (the options: uri,"),
        ("sqlite:///file:q.db?mode=rx&uri=true", "mode='rx' is not valid: it takes ro, rw, rwc"),
        ("sqlite:///file:q.db?uri=maybe", "uri='maybe' is not valid: it takes 1, yes, true"),
        ("sqlite:///q.db?cache=shared&uri=true", "the URL option cache is SQLite's, read only"),
        ("sqlite:///file://host/q.db?uri=true", "a SQLite URI names no host, got 'host'"),
        ("sqlite:///file:q.db?mode=ro&mode=rw&uri=true", "the URL option mode is given 2 times"),
    ],
)  # fmt: skip
def test_a_sqlite_url_option_the_driver_would_ignore_is_refused(url: str, message: str) -> None:
    """pysqlite ignores an option it does not know, and one of SQLite's own outside a file:
    URI, with a warning that reached wq's user raw; the queue's busy timeout would win
    over the URL's without a word."""
    with pytest.raises(ConfigurationError) as caught:
        QueueConfig.from_env({"QUEUE_DATABASE_URL": url})
    assert str(caught.value).startswith("QUEUE_DATABASE_URL: ")
    assert message in str(caught.value)


def test_a_file_uri_names_its_file_and_memory() -> None:
    from worker.core.database_url import in_memory
    from worker.storage.sqlite.connection import sqlite_path

    def path(url: str) -> Path | None:
        return sqlite_path(QueueConfig(database_url=url).database_url)

    assert path("sqlite:///file:data/q.db?uri=true") == Path("data/q.db")
    assert path("sqlite:///file:data/q.db?mode=ro&uri=1") == Path("data/q.db")
    assert path("sqlite:///file:q.db?immutable=true&uri=True") == Path("q.db")
    # Without uri=true pysqlite opens a file named so: the checkpointer must watch that one.
    assert path("sqlite:///file:data.db") == Path("file:data.db")
    assert path("sqlite:///file::memory:") == Path("file::memory:")
    assert path("sqlite:///file:/abs/a%20b.db?mode=ro&uri=true") == Path("/abs/a b.db")
    assert path("sqlite:///file:///abs/q.db?uri=true") == Path("/abs/q.db")
    assert path("sqlite:///file://localhost/abs/q.db?uri=true") == Path("/abs/q.db")
    uris = ("file:q.db?mode=memory&uri=true", "file::memory:?uri=true", "file:/x?vfs=memdb&uri=1")
    for memory in (f"sqlite:///{uri}" for uri in uris):
        assert path(memory) is None
        assert in_memory(memory)
    assert not in_memory("sqlite:///file:q.db?mode=ro&uri=true")
    assert not in_memory("sqlite:///file::memory:")  # a file of that name


def test_the_listen_connection_keeps_every_host() -> None:
    """asyncpg's DSN parser keeps a repeated query key's last value: several hosts go in
    one, comma-separated, as it reads them."""
    from sqlalchemy.engine import make_url

    from worker.storage.postgres.listener import asyncpg_connect_args

    url = QueueConfig(database_url="postgresql://u@/q?host=h1:5432&host=h2:5433").database_url
    dsn, arguments = asyncpg_connect_args(url)
    assert make_url(dsn).query == {"host": "h1:5432,h2:5433"}
    assert arguments == {}


def test_a_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiosqlite", None)  # as if it were not installed
    with pytest.raises(ConfigurationError) as caught:
        QueueConfig.from_env({"QUEUE_DATABASE_URL": "sqlite:///q.db"})
    assert str(caught.value).startswith(
        "QUEUE_DATABASE_URL: sqlite needs the aiosqlite driver, which is not installed"
    )
    assert "pip install aiosqlite" in str(caught.value)


async def test_a_sync_sqlite_url_opens_a_queue(tmp_path: Path) -> None:
    config = QueueConfig.from_env({"QUEUE_DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}"})
    async with WorkerQueue(config) as queue:
        assert (await queue.get_queue_stats())["total"] == 0
    assert (tmp_path / "q.db").is_file()
