"""Audio files: read any format libsndfile knows, write WAV, FLAC, OGG (Vorbis) or MP3 atomically.

Everything runs in-process through :mod:`soundfile` (libsndfile ships inside its wheel); there is
no call to a system program. A write goes to a temporary name in the target's directory, is
flushed to disk, and is renamed over the target with :func:`os.replace`, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import soundfile as sf

from tts.errors import AudioError, UnsupportedFormat
from tts.waveform import Audio, resample

AudioFormat = Literal["wav", "flac", "ogg", "mp3"]

# format -> (libsndfile major format, subtype)
_CONTAINERS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# Sample rates the MP3 (LAME) encoder accepts: MPEG-1, -2 and -2.5 layer III.
_MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})


class AudioFileRecord(TypedDict):
    """What was written: the task's result for one output file."""

    path: str
    format: str
    sample_rate: int
    duration_s: float
    size_bytes: int
    channels: int


def writable_formats() -> list[str]:
    """The formats of :data:`AudioFormat` that this libsndfile build can write."""
    return [name for name in _CONTAINERS if _supported(name)]


def read_audio(path: str | os.PathLike[str]) -> Audio:
    """Read an audio file as float32 (mono as 1-D).

    :raises FileNotFoundError: no file at ``path``.
    :raises AudioError: the file exists but is not audio libsndfile can decode.
    """
    where = Path(path)
    if not where.is_file():
        raise FileNotFoundError(f"audio file not found: {where}")
    try:
        samples, rate = sf.read(str(where), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"cannot read audio file {where}: {exc}") from exc
    return Audio(np.ascontiguousarray(samples), int(rate))


def write_audio(
    audio: Audio,
    path: str | os.PathLike[str],
    format: AudioFormat = "wav",
    sample_rate: int | None = None,
) -> AudioFileRecord:
    """Write ``audio`` to ``path`` in ``format`` (resampled to ``sample_rate`` if given).

    WAV and FLAC are 16-bit PCM; OGG is Vorbis; MP3 is MPEG layer III (needs libsndfile >= 1.1).

    :raises UnsupportedFormat: the format is unknown or this libsndfile build cannot write it,
        or MP3 is asked for at a sample rate MPEG does not define.
    """
    if format not in _CONTAINERS:
        raise UnsupportedFormat(f"unknown audio format {format!r}; use one of {list(_CONTAINERS)}")
    if not _supported(format):
        raise UnsupportedFormat(
            f"this libsndfile build ({sf.__libsndfile_version__}) cannot write {format!r}; "
            f"it can write {writable_formats()}"
        )
    if sample_rate is not None:
        audio = resample(audio, sample_rate)
    if format == "mp3" and audio.sample_rate not in _MP3_RATES:
        raise UnsupportedFormat(
            f"mp3 cannot be written at {audio.sample_rate} Hz; "
            f"use one of {sorted(_MP3_RATES)} (set sample_rate)"
        )
    target = Path(path)
    major, subtype = _CONTAINERS[format]
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as handle:
            with sf.SoundFile(
                handle,
                mode="w",
                samplerate=audio.sample_rate,
                channels=audio.channels,
                format=major,
                subtype=subtype,
            ) as out:
                out.write(audio.samples)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the output is an ordinary file
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return AudioFileRecord(
        path=str(target),
        format=format,
        sample_rate=audio.sample_rate,
        duration_s=round(audio.duration_s, 6),
        size_bytes=target.stat().st_size,
        channels=audio.channels,
    )


def _supported(format: str) -> bool:
    major, subtype = _CONTAINERS[format]
    return major in sf.available_formats() and subtype in sf.available_subtypes(major)
