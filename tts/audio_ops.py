"""The ``audio`` request kind's operations: pure functions on :class:`Audio`, and a file wrapper.

:func:`apply_operations` runs a list of operations in memory and reports each one;
:func:`process_audio_file` reads the input, runs them, and writes the output atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypedDict

from tts import waveform
from tts.audio import AudioFileRecord, AudioFormat, read_audio, write_audio
from tts.requests import (
    AnalyzeOperation,
    ConvertOperation,
    NormalizeOperation,
    Operation,
    TrimSilenceOperation,
)
from tts.waveform import Audio


class Analysis(TypedDict):
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    peak_dbfs: float | None  # None: digital silence
    rms_dbfs: float | None
    silence_ratio: float


class AudioResult(TypedDict):
    input: str
    operations: list[dict[str, Any]]
    output: AudioFileRecord | None


def analyze(audio: Audio, silence_threshold_dbfs: float = -50.0) -> Analysis:
    """Duration, rate, channels, peak and RMS level (dBFS), share of silent 20 ms frames."""
    return Analysis(
        duration_s=round(audio.duration_s, 6),
        sample_rate=audio.sample_rate,
        channels=audio.channels,
        frames=audio.frames,
        peak_dbfs=_round(waveform.to_dbfs(waveform.peak(audio))),
        rms_dbfs=_round(waveform.to_dbfs(waveform.rms(audio))),
        silence_ratio=round(waveform.silence_ratio(audio, silence_threshold_dbfs), 4),
    )


def convert(audio: Audio, sample_rate: int | None = None, channels: int | None = None) -> Audio:
    """Change the number of channels and the sample rate (the format is chosen at write time)."""
    if channels is not None:
        audio = waveform.set_channels(audio, channels)
    if sample_rate is not None:
        audio = waveform.resample(audio, sample_rate)
    return audio


def apply_operations(
    audio: Audio, operations: Sequence[Operation]
) -> tuple[Audio, AudioFormat | None, list[dict[str, Any]]]:
    """Run ``operations`` in order.

    Returns the resulting audio, the output format asked for by the last ``convert`` (``None``
    when no operation changed the audio, so there is nothing to write) and one report per
    operation.
    """
    changed = False
    output_format: AudioFormat = "wav"
    reports: list[dict[str, Any]] = []
    for op in operations:
        if isinstance(op, AnalyzeOperation):
            reports.append({"op": op.op, **analyze(audio, op.silence_threshold_dbfs)})
            continue
        changed = True
        if isinstance(op, ConvertOperation):
            audio = convert(audio, op.sample_rate, op.channels)
            output_format = op.format
            reports.append(
                {"op": op.op, "format": op.format, "sample_rate": audio.sample_rate,
                 "channels": audio.channels}
            )  # fmt: skip
        elif isinstance(op, NormalizeOperation):
            audio, gain_db = waveform.normalize(audio, op.mode, op.target_dbfs)
            reports.append({"op": op.op, "mode": op.mode, "gain_db": round(gain_db, 3)})
        elif isinstance(op, TrimSilenceOperation):
            before = audio.duration_s
            audio = waveform.trim_silence(audio, op.threshold_dbfs, op.padding_ms)
            reports.append(
                {"op": op.op, "removed_s": round(before - audio.duration_s, 6),
                 "duration_s": round(audio.duration_s, 6)}
            )  # fmt: skip
    return audio, (output_format if changed else None), reports


def process_audio_file(
    path: str | os.PathLike[str],
    operations: Sequence[Operation],
    output_path: str | os.PathLike[str],
) -> AudioResult:
    """Read ``path``, run ``operations``, write the result to ``output_path`` if it changed.

    :raises FileNotFoundError: ``path`` does not exist.
    :raises tts.errors.AudioError: ``path`` is not readable audio, or the output format cannot
        be written.
    """
    audio, output_format, reports = apply_operations(read_audio(path), operations)
    output = None
    if output_format is not None:
        output = write_audio(audio, output_path, output_format)
    return AudioResult(input=str(path), operations=reports, output=output)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
