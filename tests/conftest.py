from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.postgres_server import TEST_SETTINGS, PostgresServer, ScratchDatabases
from tests.spawning import Spawner
from tests.support import FakeClock, sqlite_url
from worker import QueueConfig, WorkerQueue


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend a behaviour test runs on: every test that takes ``config`` (or
    ``queue``, ``database_url``) runs on both, unless marked ``sqlite_only(why)``."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, db_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return sqlite_url(db_path)
    return str(request.getfixturevalue("postgres_url"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``sqlite_only(why)`` test's PostgreSQL variant is skipped, saying why."""
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or callspec.params.get("backend") != "postgres":
            continue
        why = marker.args[0] if marker.args else marker.kwargs.get("why", "")
        if not why:
            raise pytest.UsageError(f"{item.nodeid}: sqlite_only needs a reason")
        item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))


@pytest.fixture
def config(database_url: str) -> QueueConfig:
    return QueueConfig(
        database_url=database_url,
        default_visibility_timeout=30.0,
        retry_base_delay=10.0,
        retry_backoff_multiplier=2.0,
        max_retry_delay=100.0,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(config: QueueConfig, clock: FakeClock) -> AsyncIterator[WorkerQueue]:
    async with WorkerQueue(config, worker_id="test-worker", clock=clock) as q:
        yield q


@pytest.fixture
def spawner(tmp_path: Path) -> Iterator[Spawner]:
    spawned = Spawner(tmp_path)
    try:
        yield spawned
    finally:
        spawned.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, started when a test first asks (~1 s).

    Its own cluster in a temporary directory, on a free port of 127.0.0.1, fsync off
    (tests/postgres_server.py); stopped and removed at the end of the session. Without the
    server programs every test asking for it errors, naming the package to install.
    """
    with PostgresServer.start(TEST_SETTINGS) as server:
        yield server


@pytest.fixture
def postgres_databases(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[ScratchDatabases]:
    """``create(template=None) -> url``: new databases for this test, all dropped after it."""
    databases = ScratchDatabases(postgres_server, label=request.node.name)
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture
def postgres_url(postgres_databases: ScratchDatabases, postgres_template: str) -> str:
    """A fresh database for this test, at the newest schema revision (a copy of the
    session's migrated template): ``postgresql+asyncpg://postgres@127.0.0.1:PORT/DB``."""
    return postgres_databases.create(template=postgres_template)


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """A database migrated once per session, which each test's database copies (about
    80 ms, against a few hundred for Alembic's revisions)."""
    name = "queue_template"
    url = postgres_server.create_database(name)

    async def migrate() -> None:
        async with WorkerQueue(QueueConfig(database_url=url)):
            pass

    asyncio.run(migrate())
    return name
