from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.spawning import Spawner
from tests.support import FakeClock, sqlite_url
from worker import QueueConfig, WorkerQueue


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def config(db_path: Path) -> QueueConfig:
    return QueueConfig(
        database_url=sqlite_url(db_path),
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
