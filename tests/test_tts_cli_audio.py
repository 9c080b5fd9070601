"""``wq submit audio`` in subprocesses: one task per file, --op parsing, all-or-nothing checks."""

from __future__ import annotations

import os
import re
import wave
from pathlib import Path

import pytest

from tests.test_cli import ROOT, one_error_line, with_queue, wq, wq_all
from tts.cli.audio_args import audio_files, parse_operation
from worker import WorkerQueue

pytestmark = pytest.mark.timeout(60)


def _write_wav(path: Path, frames: int = 800) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * frames)
    return path


def _total(db: str | Path) -> int:
    async def count(queue: WorkerQueue) -> int:
        return int((await queue.get_queue_stats())["total"])

    return with_queue(db, count)


@pytest.fixture
def takes(tmp_path: Path) -> Path:
    """A directory with three audio files (one nested, one upper-case extension) and a text file."""
    root = tmp_path / "takes"
    _write_wav(root / "b.wav")
    _write_wav(root / "a.WAV")
    _write_wav(root / "nested" / "c.aiff")  # a WAV inside, but the extension is what counts
    (root / "notes.txt").write_text("not audio\n")
    return root


def test_a_directory_enqueues_one_task_per_audio_file_with_the_operations(
    database_url: str, takes: Path
) -> None:
    result = wq(
        database_url, "submit", "audio", str(takes),
        "--op", "convert:format=flac,sample_rate=16000,channels=1",
        "--op", "normalize:mode=rms,target_dbfs=-20",
        "--op", "trim_silence:threshold_dbfs=-50,padding_ms=10",
        "--queue", "audio", "--priority", "high", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    tasks = result.json()
    expected = [takes / "a.WAV", takes / "b.wav", takes / "nested" / "c.aiff"]
    assert [task["items"][0]["request"]["path"] for task in tasks] == [str(p) for p in expected]
    assert {task["items"][0]["kind"] for task in tasks} == {"audio"}
    assert {(task["queue"], task["priority"]) for task in tasks} == {("audio", 10)}
    assert tasks[0]["items"][0]["request"]["operations"] == [
        {"op": "convert", "format": "flac", "sample_rate": 16000, "channels": 1},
        {"op": "normalize", "mode": "rms", "target_dbfs": -20.0},
        {"op": "trim_silence", "threshold_dbfs": -50.0, "padding_ms": 10.0},
    ]
    assert len({task["id"] for task in tasks}) == 3
    assert _total(database_url) == 3

    # Without --op: analyze; a relative path becomes absolute; plain output is one id a line.
    relative = os.path.relpath(takes / "b.wav", ROOT)  # wq runs in ROOT
    plain, ids = wq_all(
        database_url,
        ("submit", "audio", relative, "--json"),
        ("submit", "audio", str(takes / "nested"), str(takes / "b.wav")),
    )
    assert plain.code == 0, plain.err
    (only,) = plain.json()
    assert only["items"][0]["request"] == {
        "path": str(takes / "b.wav"),
        "operations": [{"op": "analyze", "silence_threshold_dbfs": -50.0}],
    }
    assert ids.code == 0, ids.err
    assert [len(line) for line in ids.out.splitlines()] == [26, 26]
    assert _total(database_url) == 6


def test_a_missing_path_or_a_bad_op_exits_2_and_enqueues_nothing(
    database_url: str, takes: Path
) -> None:
    missing = takes / "missing.wav"
    gone, bad_format, unknown = wq_all(
        database_url,
        ("submit", "audio", str(takes), str(missing)),
        ("submit", "audio", str(takes), "--op", "analyze", "--op", "convert:format=aac"),
        ("submit", "audio", str(takes), "--op", "frobnicate"),
    )
    assert gone.code == 2
    assert str(missing) in one_error_line(gone)
    assert bad_format.code == 2
    assert "--op 'convert:format=aac': format:" in one_error_line(bad_format)
    assert unknown.code == 2
    assert "--op 'frobnicate'" in one_error_line(unknown)
    assert _total(database_url) == 0


def test_parse_operation() -> None:
    assert parse_operation("analyze") == {"op": "analyze"}
    assert parse_operation("convert: format=flac, sample_rate=16000") == {
        "op": "convert",
        "format": "flac",
        "sample_rate": "16000",
    }
    for text, message in [
        ("trim_silence:padding_ms", "expected key=value"),
        ("normalize:mode=rms,mode=peak", "given twice"),
        ("normalize:op=convert", "before ':'"),
        (":format=flac", "NAME[:key=value"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_operation(text)


def test_audio_files(takes: Path) -> None:
    assert audio_files([str(takes / "nested"), str(takes / "nested" / "c.aiff")]) == [
        str(takes / "nested" / "c.aiff")
    ]
    assert audio_files([str(takes / "notes.txt")]) == [str(takes / "notes.txt")]  # named: kept
    empty = takes / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        audio_files([str(empty)])
    with pytest.raises(ValueError, match="no such file"):
        audio_files([str(takes / "missing.wav")])
