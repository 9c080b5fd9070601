"""Audio in memory, and the pure operations on it (numpy only, no I/O).

Samples are float32 in [-1, 1]: shape ``(frames,)`` for mono, ``(frames, channels)`` otherwise.
Levels are in dBFS, where 0 dBFS is a full-scale sample; digital silence has no level (``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Audio:
    """Samples and their rate. Speech engines return mono audio."""

    samples: Samples
    sample_rate: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.samples.ndim not in (1, 2):
            raise ValueError(f"samples must be 1-D or 2-D, got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", self.samples.astype(np.float32))

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def to_dbfs(amplitude: float) -> float | None:
    """An amplitude as dBFS; ``None`` for zero (silence has no level)."""
    return 20.0 * math.log10(amplitude) if amplitude > 0 else None


def from_dbfs(level_dbfs: float) -> float:
    return float(10.0 ** (level_dbfs / 20.0))


def peak(audio: Audio) -> float:
    return float(np.max(np.abs(audio.samples))) if audio.frames else 0.0


def rms(audio: Audio) -> float:
    if not audio.frames:
        return 0.0
    return float(np.sqrt(np.mean(np.square(audio.samples, dtype=np.float64))))


def silence_ratio(audio: Audio, threshold_dbfs: float = -50.0, frame_ms: float = 20.0) -> float:
    """The share of ``frame_ms`` frames whose RMS is below ``threshold_dbfs`` (0.0 to 1.0)."""
    if not audio.frames:
        return 1.0
    size = max(1, round(audio.sample_rate * frame_ms / 1000))
    power = np.square(_mono(audio.samples), dtype=np.float64)
    starts = np.arange(0, len(power), size)
    frame_power = np.add.reduceat(power, starts) / np.diff(np.append(starts, len(power)))
    return float(np.mean(frame_power < from_dbfs(threshold_dbfs) ** 2))


def gain(audio: Audio, gain_db: float) -> Audio:
    scaled = audio.samples * np.float32(from_dbfs(gain_db))
    return Audio(np.clip(scaled, -1.0, 1.0).astype(np.float32), audio.sample_rate)


def normalize(
    audio: Audio, mode: Literal["peak", "rms"], target_dbfs: float
) -> tuple[Audio, float]:
    """Scale to a peak or RMS level; returns the audio and the gain applied in dB.

    An RMS target is never allowed to clip: the gain stops where the peak reaches 0 dBFS.
    Silence is returned unchanged (gain 0).
    """
    current = to_dbfs(peak(audio) if mode == "peak" else rms(audio))
    if current is None:
        return audio, 0.0
    gain_db = target_dbfs - current
    headroom_db = -(to_dbfs(peak(audio)) or 0.0)
    gain_db = min(gain_db, headroom_db)
    return gain(audio, gain_db), gain_db


def trim_silence(audio: Audio, threshold_dbfs: float = -50.0, padding_ms: float = 10.0) -> Audio:
    """Cut leading and trailing samples quieter than ``threshold_dbfs``, keeping ``padding_ms``.

    Audio that is silent throughout comes back empty.
    """
    loud = np.abs(_mono_peak(audio.samples)) >= from_dbfs(threshold_dbfs)
    where = np.flatnonzero(loud)
    if len(where) == 0:
        return Audio(audio.samples[:0], audio.sample_rate)
    pad = round(audio.sample_rate * padding_ms / 1000)
    start = max(0, int(where[0]) - pad)
    end = min(audio.frames, int(where[-1]) + 1 + pad)
    return Audio(audio.samples[start:end], audio.sample_rate)


def set_channels(audio: Audio, channels: int) -> Audio:
    """Mix down to mono (the mean of the channels), or copy mono to ``channels`` channels."""
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if channels == audio.channels:
        return audio
    mono = _mono(audio.samples)
    if channels == 1:
        return Audio(mono, audio.sample_rate)
    return Audio(np.repeat(mono[:, None], channels, axis=1), audio.sample_rate)


def resample(audio: Audio, sample_rate: int) -> Audio:
    """Band-limited resampling in the frequency domain (the method of ``scipy.signal.resample``).

    The spectrum is cut (downsampling: an ideal low-pass at the new Nyquist frequency, so no
    aliasing) or zero-padded (upsampling), and the length becomes ``round(frames * new / old)``.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if sample_rate == audio.sample_rate:
        return audio
    if not audio.frames:
        return Audio(audio.samples, sample_rate)
    n_in = audio.frames
    n_out = max(1, round(n_in * sample_rate / audio.sample_rate))
    spectrum = np.fft.rfft(audio.samples.astype(np.float64), axis=0)
    out = np.zeros((n_out // 2 + 1, *spectrum.shape[1:]), dtype=np.complex128)
    keep = min(len(spectrum), len(out))
    out[:keep] = spectrum[:keep]
    if n_out > n_in and n_in % 2 == 0:
        out[n_in // 2] /= 2  # the old Nyquist bin stood for +f and -f at once
    elif n_out < n_in and n_out % 2 == 0:
        out[n_out // 2] = 2 * out[n_out // 2].real  # the new Nyquist bin is counted once
    samples = np.fft.irfft(out, n=n_out, axis=0) * (n_out / n_in)
    return Audio(np.clip(samples, -1.0, 1.0).astype(np.float32), sample_rate)


def concatenate(parts: list[Audio], gap_s: float = 0.0) -> Audio:
    """Join mono or same-shaped parts of one sample rate, with ``gap_s`` of silence between."""
    if not parts:
        raise ValueError("nothing to concatenate")
    rate = parts[0].sample_rate
    if any(p.sample_rate != rate for p in parts):
        raise ValueError("parts have different sample rates")
    gap = np.zeros((round(gap_s * rate), *parts[0].samples.shape[1:]), dtype=np.float32)
    pieces: list[Samples] = []
    for i, part in enumerate(parts):
        if i:
            pieces.append(gap)
        pieces.append(part.samples)
    return Audio(np.concatenate(pieces), rate)


def _mono(samples: Samples) -> Samples:
    return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def _mono_peak(samples: Samples) -> Samples:
    return samples if samples.ndim == 1 else np.max(np.abs(samples), axis=1)
