"""A WAV file's waveform for the task page: peaks per column read with the stdlib ``wave``
module (16-bit, 8-bit and 32-bit PCM; no numpy in the web extra), drawn as an SVG path."""

from __future__ import annotations

import array
import sys
import wave
from pathlib import Path

#: Columns of the drawn waveform.
COLUMNS = 240
#: Samples a column looks at, at most (a long file is sampled, not read whole).
MAX_FRAMES_PER_COLUMN = 4096

_TYPECODES = {2: "h", 4: "i"}


def _peak(chunk: bytes, width: int) -> float:
    """The largest absolute sample of ``chunk``, as a fraction of full scale."""
    if not chunk:
        return 0.0
    if width == 1:  # unsigned, centred on 128
        return max(abs(b - 128) for b in chunk) / 128.0
    samples = array.array(_TYPECODES[width])
    samples.frombytes(chunk[: len(chunk) - len(chunk) % width])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    full = float(1 << (8 * width - 1))
    return min(1.0, max(abs(max(samples)), abs(min(samples))) / full)


def peaks(path: Path, columns: int = COLUMNS) -> list[float]:
    """Per column, the peak level (0 to 1) of a PCM WAV file.

    :raises ValueError: not a PCM WAV file this reads (``wave.Error`` and unknown widths).
    :raises OSError: the file cannot be read.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            width, frames = wav.getsampwidth(), wav.getnframes()  # channels count alike
            if width not in (1, 2, 4):
                raise ValueError(f"{width * 8}-bit samples are not drawn")
            found = []
            per_column = max(1, frames // columns)
            for column in range(min(columns, frames)):
                wav.setpos(column * per_column)
                chunk = wav.readframes(min(per_column, MAX_FRAMES_PER_COLUMN))
                found.append(_peak(chunk, width))
            return found
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV file: {exc}") from exc


def svg_path(levels: list[float], width: int = COLUMNS, height: int = 60) -> str:
    """One SVG path of vertical bars, one per level, centred on the middle line."""
    middle = height / 2
    step = width / max(1, len(levels))
    parts = []
    for i, level in enumerate(levels):
        x = (i + 0.5) * step
        half = max(0.5, level * middle)
        parts.append(f"M{x:.1f} {middle - half:.1f}V{middle + half:.1f}")
    return "".join(parts)
