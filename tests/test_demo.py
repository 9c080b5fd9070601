"""``python -m tts.demo`` on a fresh directory, as ``make demo`` runs it: a real process, real
synthesis, the default SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

pytestmark = pytest.mark.timeout(120)


def test_the_demo_completes_every_task_and_leaves_the_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "TTS_"))}
    env.pop("COLUMNS", None)
    done = subprocess.run(
        [sys.executable, "-m", "tts.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = tmp_path / "data"
    assert (data / "queue.db").is_file()
    outputs = sorted((data / "outputs").glob("*/*"))
    assert sorted(p.suffix for p in outputs) == [".flac", ".ogg", ".wav", ".wav", ".wav"]
    for path in outputs:
        assert sf.info(str(path)).duration > 1.0
        assert os.path.relpath(path, tmp_path) in done.stdout  # it says where they are
    # Not a terminal: plain lines, no cursor movement, and the statistics at the end.
    assert "\x1b[" not in done.stdout
    assert "completed 5" in done.stdout
    assert "completed        5 in the last 300 s (" in done.stdout  # not a rate alone
    assert "success rate     100%" in done.stdout
