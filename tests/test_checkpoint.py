"""WAL checkpoints: in the background, never inside a commit; the log starts over under load.

The database file grows only when a checkpoint copies the log into it, so its size tells
whether one ran.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.support import database_of, sqlite_url
from tts import TextToSpeechRequest
from worker import QueueConfig, Task, TaskItem, WorkerQueue
from worker.storage.sqlite import checkpoints as checkpoint

TASKS = 2_000  # about 6 MB of rows: past SQLite's own 1,000-page (4 MB) auto-checkpoint


def tasks(n: int = TASKS) -> list[Task]:
    request = TextToSpeechRequest(text="word " * 600, voice_id="kokoro.af_heart")
    return [Task(items=[TaskItem(request=request)]) for _ in range(n)]


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def config(path: Path, interval: float) -> QueueConfig:
    return QueueConfig(database_url=sqlite_url(path), sqlite_checkpoint_interval=interval)


async def test_sqlite_checkpoints_inside_the_commit_when_the_interval_is_zero(
    tmp_path: Path,
) -> None:
    db = tmp_path / "queue.db"
    async with WorkerQueue(config(db, 0)) as queue:
        before = size(db)
        await queue.enqueue(tasks())
        assert size(db) > before + 1_000_000  # the enqueue's own commit copied the log


async def test_a_commit_leaves_the_checkpoint_to_the_background(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    queue = WorkerQueue(config(db, 3600))
    await queue.initialize()
    try:
        before = size(db)
        await queue.enqueue(tasks())
        assert size(db) < before + 100_000  # all of it still in the log
        assert size(Path(f"{db}-wal")) > 1_000_000
    finally:
        await queue.close()
    # close() checkpoints what the process wrote: the file holds it all.
    assert size(db) > before + 1_000_000
    async with WorkerQueue(config(db, 3600)) as reopened:
        assert (await reopened.get_queue_stats())["pending"] == TASKS


async def test_the_background_checkpoint_follows_a_write(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    async with WorkerQueue(config(db, 0.05)) as queue:
        before = size(db)
        await queue.enqueue(tasks())
        deadline = time.monotonic() + 10
        while size(db) < before + 1_000_000:
            assert time.monotonic() < deadline, "no checkpoint within 10 s of the write"
            await asyncio.sleep(0.02)


async def test_the_log_starts_over_while_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints that race steady writes never copy the last frames; past RESTART_FRAMES
    the checkpointer copies them under the writer turn, and the log is reused from the top
    instead of growing with everything written.

    The race is made, not hoped for: another connection holds a read snapshot from before
    each enqueue until the round's first (passive) copy is done, so that copy cannot reach
    the frames the enqueue wrote, whatever the machine's load (as a copy racing writes cannot).
    The rounds are run by the test between enqueues (the background loop's interval is an
    hour).
    """
    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 200)  # ~800 KB
    db = tmp_path / "queue.db"
    wal = Path(f"{db}-wal")
    async with WorkerQueue(config(db, 3600)) as queue:
        checkpointer = database_of(queue)._checkpointer
        assert checkpointer is not None
        racer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        copies: list[str] = []
        copy = checkpointer._checkpoint

        def racing(mode: str) -> int:
            frames = copy(mode)
            copies.append(mode)
            if len(copies) == 1:  # the round's first copy is over: let the snapshot go
                racer.execute("COMMIT")
            return frames

        monkeypatch.setattr(checkpointer, "_checkpoint", racing)
        batch, largest, rounds_under_the_turn = tasks(50), 0, 0
        try:
            for _ in range(100):  # ~15 MB of log in all
                racer.execute("BEGIN")
                racer.execute("SELECT count(*) FROM tasks").fetchall()  # the snapshot starts
                await queue.enqueue([Task(items=t.items) for t in batch])
                largest = max(largest, size(wal))
                copies.clear()
                await checkpointer.round()
                rounds_under_the_turn += len(copies) > 1
        finally:
            racer.close()
    assert rounds_under_the_turn > 0
    # Without the copy under the writer turn the log holds everything written (~15 MB).
    assert largest < 3_000_000, f"the log grew to {largest:,} bytes"


OTHER_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")  # as a queue process's connections
conn.execute("CREATE TABLE IF NOT EXISTS other (blob BLOB)")
print("writing", flush=True)
while True:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO other VALUES (zeroblob(4000))")
    conn.execute("COMMIT")
    time.sleep(0.0005)  # a queue process does some work between its transactions
"""


async def test_the_log_starts_over_while_another_process_writes_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's writes race the copies; the log still starts over."""
    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 100)  # RESTART past ~1.6 MB
    db = tmp_path / "queue.db"
    wal = Path(f"{db}-wal")
    async with WorkerQueue(config(db, 0.001)) as queue:
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", OTHER_WRITER, str(db), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert other.stdout is not None
            assert await other.stdout.readline() == b"writing\n"
            batch, largest, deadline = tasks(20), 0, time.monotonic() + 3
            while time.monotonic() < deadline:
                await queue.enqueue([Task(items=t.items) for t in batch])
                largest = max(largest, size(wal))
        finally:
            other.kill()
            await other.wait()
    assert largest < 20_000_000, f"the log grew to {largest:,} bytes"


async def test_how_a_round_ends_depends_on_the_length_of_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short: one passive copy. Past restart_frames: a second one under the writer turn.
    Past four times that: a RESTART under the turn."""
    turn = asyncio.Lock()
    checkpointer = checkpoint.Checkpointer(
        tmp_path / "queue.db", interval_s=1, writer_turn=lambda: turn, restart_frames=100
    )
    seen: list[tuple[str, bool]] = []
    length = [0]

    def copy(mode: str) -> int:
        seen.append((mode, turn.locked()))
        return length[0]

    monkeypatch.setattr(checkpointer, "_checkpoint", copy)
    for frames, expected in (
        (99, [("PASSIVE", False)]),
        (100, [("PASSIVE", False), ("PASSIVE", True)]),
        (399, [("PASSIVE", False), ("PASSIVE", True)]),
        (400, [("PASSIVE", False), ("RESTART", True)]),
    ):
        seen.clear()
        length[0] = frames
        await checkpointer.round()
        assert seen == expected, frames
