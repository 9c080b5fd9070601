"""The README's examples (and the docs' marked ones, and examples/) run as written, on their own
files.

Issue 10, item 9: a newcomer copies an example into a file and runs it from a fresh clone.
Each block runs here as ``python example.py`` in a fresh temporary directory, in a real
subprocess, with no ``QUEUE_*``/``TTS_*`` variables set. It must exit 0 and keep to its own
files:

- nothing in the repository changes (its ``data/`` above all, which ``make demo`` uses);
- it does not use the default database, ``data/queue.db`` under the working directory, which
  ``make demo`` and ``wq`` share;
- it leaves no task whose webhook a later worker on its database would still send (a
  placeholder ``response_url`` would really be posted to).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs_blocks import ROOT, Block, runnable_blocks

#: Left out of the repository's snapshot: tools' caches and what `make` builds.
_SKIPPED = {".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
            ".hypothesis", "site"}  # fmt: skip

#: The README's blocks, the docs' marked ones, and the scripts in examples/.
EXAMPLES = runnable_blocks() + [
    Block(path, 1, path.read_text(encoding="utf-8"), runnable=True)
    for path in sorted((ROOT / "examples").glob("*.py"))
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but the skipped folders: its size and modification time."""
    found: dict[str, tuple[int, int]] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [s for s in subfolders if s not in _SKIPPED]
        for name in files:
            path = Path(folder, name)
            stat = path.stat()
            found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def unsent_webhooks(database: Path) -> list[str]:
    """Task items with a ``response_url`` whose delivery has not been made (or given up)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "tasks" not in tables:
            return []
        settled = set()
        if "webhook_deliveries" in tables:
            settled = set(
                conn.execute(
                    "SELECT task_id, item_index FROM webhook_deliveries "
                    "WHERE state IN ('delivered', 'failed')"
                ).fetchall()
            )
        unsent = []
        for task_id, items_text in conn.execute("SELECT id, items FROM tasks"):
            for index, item in enumerate(json.loads(items_text)):
                url = item.get("response_url")
                if url and (task_id, index) not in settled:
                    unsent.append(f"task {task_id} item {index} -> {url}")
    return unsent


@pytest.mark.parametrize("block", EXAMPLES, ids=[block.where for block in EXAMPLES])
def test_the_example_runs_as_written_on_its_own_files(block: Block, tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    example = tmp_path / "example.py"
    example.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "TTS_"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(tmp_path / "tmp"))
    before = snapshot(ROOT)

    done = subprocess.run(
        [sys.executable, example.name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )

    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
    after = snapshot(ROOT)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{block.where} changed files of the repository: {changed}"
    assert not (tmp_path / "data" / "queue.db").exists(), (
        f"{block.where} uses the default database (data/queue.db), which make demo and wq "
        "share: give it a database file of its own"
    )
    for database in tmp_path.rglob("*.db"):
        assert not unsent_webhooks(database), (
            f"{block.where} leaves webhooks a later worker would send: {unsent_webhooks(database)}"
        )
