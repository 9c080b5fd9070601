"""Resuming a long text: the sentences an attempt spoke, kept on disk and named in the
task's checkpoint, so that the next attempt starts at the first sentence not yet spoken.

An item's sentences go to ``<task dir>/<item index>.parts/<n>.npy`` (the engine's float32
samples, exactly), each written to a temporary name, synced and renamed, so a file that exists
is whole. After the files, the handler's checkpoint records how many there are::

    {"sentences": 12, "sample_rate": 22050, "key": "<digest of the voice, speed and sentences>"}

A later attempt of the same item reads that back, loads the files, and goes on from sentence
13; joined with the rest, the samples are the ones an uninterrupted run gives. A checkpoint
whose key does not match (another request, or a text split differently by a newer version)
or a part file that is missing or unreadable counts as "start there" (at worst, from the
beginning): a resume is never wrong, only sometimes shorter.

Writes are throttled: the parts and the checkpoint are written together once at least
:data:`CHECKPOINT_INTERVAL_S` of speaking has passed since the last write (a short text never
touches the disk before its output file). The folder is removed once the output is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import JsonValue

from tts.waveform import Audio

log = logging.getLogger(__name__)

#: Speak at least this long between two checkpoints (each is one database write, plus one
#: file per sentence spoken since the last).
CHECKPOINT_INTERVAL_S = 1.0


def speech_key(voice_id: str, speed: float, sentences: Sequence[str]) -> str:
    """A digest of what is spoken: parts saved for one key are reused only for the same key."""
    blob = json.dumps([voice_id, speed, list(sentences)], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class SpokenParts:
    """The sentences of one item kept on disk, in ``folder``."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.key = key
        self.saved = 0  # parts 0 .. saved-1 are on disk and in the checkpoint

    def checkpoint(self, sample_rate: int) -> JsonValue:
        """The handler's checkpoint data once :attr:`saved` parts are on disk."""
        return {"sentences": self.saved, "sample_rate": sample_rate, "key": self.key}

    def load(self, data: JsonValue) -> list[Audio]:
        """The parts an earlier attempt saved, per its checkpoint ``data`` (runs in a thread).

        Stops at the first part that is missing or unreadable; none for a foreign ``data``.
        """
        if not isinstance(data, dict) or data.get("key") != self.key:
            return []
        count, rate = data.get("sentences"), data.get("sample_rate")
        if not isinstance(count, int) or not isinstance(rate, int) or count < 0 or rate <= 0:
            return []
        parts: list[Audio] = []
        for index in range(count):
            path = self._path(index)
            try:
                samples = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                log.warning("sentence %d of %s cannot be reused (%s); speaking on from it",
                            index, self.folder, exc)  # fmt: skip
                break
            if samples.dtype != np.float32 or samples.ndim != 1:
                log.warning("sentence file %s holds %s %s samples; speaking on from it",
                            path, samples.ndim, samples.dtype)  # fmt: skip
                break
            parts.append(Audio(samples, rate))
        self.saved = len(parts)
        return parts

    def save(self, parts: Sequence[Audio]) -> None:
        """Write the parts after :attr:`saved` (runs in a thread); then they count as saved."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for index in range(self.saved, len(parts)):
            _write_atomically(self._path(index), parts[index].samples)
        _sync_directory(self.folder)
        self.saved = len(parts)

    def remove(self) -> None:
        """Delete the folder (runs in a thread); gone already is fine."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.folder)

    def _path(self, index: int) -> Path:
        return self.folder / f"{index}.npy"


def _write_atomically(path: Path, samples: np.ndarray) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, np.ascontiguousarray(samples, dtype=np.float32), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _sync_directory(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a machine crash keeps the files)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
