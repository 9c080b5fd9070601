"""An idle worker's wake-up on Linux: another process's commit, seen by inotify at once."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from worker.runtime import file_events, wakeup
from worker.runtime.wakeup import DatabaseWatcher, Waker

pytestmark = pytest.mark.skipif(file_events._LIBC is None, reason="inotify is Linux's")

_WRITE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("INSERT INTO t VALUES (1)")
"""


async def _write(path: Path) -> None:
    """A commit to ``path`` from another process."""
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITE, str(path))
    assert await asyncio.wait_for(child.wait(), 60) == 0


def _database(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (a)")
    conn.close()
    return path


async def test_another_process_commit_wakes_an_idle_waker_without_a_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _database(tmp_path)
    # Stats an hour apart and no fallback poll for an hour: only the file events can wake it.
    monkeypatch.setattr(wakeup, "STAT_INTERVAL_S", 3600.0)
    monkeypatch.setattr(wakeup, "IDLE_STAT_INTERVAL_S", 3600.0)
    waker = Waker(DatabaseWatcher(path), 3600.0)
    try:
        waiting = asyncio.create_task(waker.wait())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        started = time.monotonic()
        await _write(path)
        assert await asyncio.wait_for(waiting, 30) == "changed"
        assert time.monotonic() - started < 30
        # A commit between two waits (made just after the caller looked for work, so the
        # look missed it) ends the next wait at once: it is not taken for one it saw. The
        # commits below are a connection of this process, done before the loop reads any
        # event, so that no write of theirs trails a wait's end.
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("INSERT INTO t VALUES (2)")
            assert await asyncio.wait_for(waker.wait(), 30) == "changed"
            # What a wait reported is not reported again.
            again = asyncio.create_task(waker.wait())
            await asyncio.sleep(0.5)
            assert not again.done(), "the write the last wait reported woke it again"
            again.cancel()
            await asyncio.wait([again])
            other.execute("INSERT INTO t VALUES (3)")
            assert await asyncio.wait_for(waker.wait(), 30) == "changed"
        finally:
            other.close()
    finally:
        waker.close()


async def test_without_inotify_the_stats_still_wake_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _database(tmp_path)
    monkeypatch.setattr(file_events, "_LIBC", None)
    waker = Waker(DatabaseWatcher(path), 3600.0)
    waiting = asyncio.create_task(waker.wait())
    await asyncio.sleep(0.2)
    await _write(path)
    assert await asyncio.wait_for(waiting, 30) == "changed"
    await _write(path)  # between two waits: the next one ends at its first stat
    assert await asyncio.wait_for(waker.wait(), 30) == "changed"
    waker.close()
