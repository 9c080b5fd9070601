"""The ``tts`` request kind: text to speak, and how."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker import register_request_kind

_SPEAKABLE = re.compile(r"[^\W_]")  # a letter or digit, in any script

OutputFormat = Literal["wav", "flac", "ogg", "mp3"]


#: A voice id: the engine's name, a dot, the voice's name.
_VOICE_ID = re.compile(r"[a-z][a-z0-9_\-]*\.[A-Za-z0-9][A-Za-z0-9_\-.]*")


@register_request_kind("tts")
class TextToSpeechRequest(BaseModel):
    """Speak ``text`` with ``voice_id`` (``engine.voice``, e.g. ``piper.en_US-joe-medium``).

    Whether the engine and voice exist is checked when the task runs, not here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=100_000)
    voice_id: str = Field(json_schema_extra={"pattern": f"^{_VOICE_ID.pattern}$"})
    speed: float = Field(1.0, gt=0.25, le=4.0, allow_inf_nan=False)
    output_format: OutputFormat = "wav"
    sample_rate: int | None = Field(None, ge=8000, le=192_000)

    @field_validator("voice_id")
    @classmethod
    def _voice(cls, value: str) -> str:
        if _VOICE_ID.fullmatch(value) is None:
            raise ValueError(
                f"a voice is engine.voice, e.g. piper.en_US-joe-medium (wq voices lists "
                f"them), got {value!r}"
            )
        return value

    @field_validator("text")
    @classmethod
    def _speakable(cls, value: str) -> str:
        if _SPEAKABLE.search(value) is None:
            raise ValueError("text must contain at least one letter or digit")
        return value


class AnalyzeOperation(BaseModel):
    """Measure the audio: duration, rate, channels, peak and RMS level, share of silence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["analyze"] = "analyze"
    silence_threshold_dbfs: float = Field(-50.0, ge=-120.0, le=0.0)


class ConvertOperation(BaseModel):
    """Change the output format, and optionally the sample rate and the number of channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["convert"] = "convert"
    format: OutputFormat
    sample_rate: int | None = Field(None, ge=8000, le=192_000)
    channels: int | None = Field(None, ge=1, le=8)


class NormalizeOperation(BaseModel):
    """Scale to a peak level, or to an RMS level (a simple loudness target) without clipping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["normalize"] = "normalize"
    mode: Literal["peak", "rms"] = "peak"
    target_dbfs: float = Field(-1.0, ge=-60.0, le=0.0)


class TrimSilenceOperation(BaseModel):
    """Cut leading and trailing silence quieter than ``threshold_dbfs``, keeping ``padding_ms``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["trim_silence"] = "trim_silence"
    threshold_dbfs: float = Field(-50.0, ge=-120.0, le=0.0)
    padding_ms: float = Field(10.0, ge=0.0, le=10_000.0)


Operation = Annotated[
    AnalyzeOperation | ConvertOperation | NormalizeOperation | TrimSilenceOperation,
    Field(discriminator="op"),
]


@register_request_kind("audio")
class AudioRequest(BaseModel):
    """Run ``operations`` in order on the audio file at ``path``.

    The output is written in the format of the last ``convert`` (WAV if there is none), and only
    if some operation changes the audio. Whether ``path`` exists is checked when the task runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=4096)
    operations: list[Operation] = Field(min_length=1, max_length=100)
