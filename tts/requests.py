"""The ``tts`` request kind: text to speak, and how."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker import register_request_kind

_SPEAKABLE = re.compile(r"[^\W_]")  # a letter or digit, in any script

OutputFormat = Literal["wav", "flac", "ogg", "mp3"]


@register_request_kind("tts")
class TextToSpeechRequest(BaseModel):
    """Speak ``text`` with ``voice_id`` (``engine.voice``, e.g. ``piper.en_US-joe-medium``).

    Whether the engine and voice exist is checked when the task runs, not here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=100_000)
    voice_id: str = Field(pattern=r"^[a-z][a-z0-9_\-]*\.[A-Za-z0-9][A-Za-z0-9_\-.]*$")
    speed: float = Field(1.0, gt=0.25, le=4.0)
    output_format: OutputFormat = "wav"
    sample_rate: int | None = Field(None, ge=8000, le=192_000)

    @field_validator("text")
    @classmethod
    def _speakable(cls, value: str) -> str:
        if _SPEAKABLE.search(value) is None:
            raise ValueError("text must contain at least one letter or digit")
        return value
