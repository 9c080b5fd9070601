"""Shared test helpers: a fake clock and task builders (no fake database: tests use real files)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tts import TextToSpeechRequest
from worker import Task, TaskItem, WorkerQueue
from worker.storage.database import Database
from worker.storage.sql_storage import SqlStorage

START = 1_800_000_000.0


@dataclass
class FakeClock:
    """A clock the test moves by hand; ``WorkerQueue(clock=...)`` reads it."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_task(text: str = "Hello, world!", **fields: Any) -> Task:
    item = TaskItem(
        request=TextToSpeechRequest(text=text, voice_id="kokoro.af_heart"),
        response_url="https://example.com/callback",
    )
    return Task(items=[item], **fields)


def sqlite_url(path: object) -> str:
    return f"sqlite+aiosqlite:///{path}"


def url_of(database: str | os.PathLike[str]) -> str:
    """A database URL as given, or a SQLite file's path as its URL: what the test helpers
    (and the worker programs they spawn) accept, so one test runs on either backend."""
    text = os.fspath(database)
    return text if "://" in text else sqlite_url(text)


async def raw_sql(
    url: str, sql: str, params: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run ``sql`` (SQLAlchemy ``text``, ``:name`` parameters) on the database at ``url``
    through a connection of its own, outside the queue, and commit: what another program
    (or an older version) would write or read. Returns the rows, if any."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(sql), params or {})
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


def database_of(queue: WorkerQueue) -> Database:
    """The connection machinery under a queue (its SQLAlchemy storage's), for tests of it."""
    storage = queue.storage
    assert isinstance(storage, SqlStorage)
    return storage.database
