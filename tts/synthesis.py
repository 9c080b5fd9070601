"""Speak a text of any length: split it into sentences, synthesize each, join the audio."""

from __future__ import annotations

from collections.abc import Callable

from tts.engines.registry import EngineRegistry, default_registry
from tts.text import MAX_CHARS, split_text
from tts.waveform import Audio, concatenate

Progress = Callable[[int, int], None]  # (pieces done, pieces in all)


def speak(
    voice_id: str,
    text: str,
    speed: float = 1.0,
    *,
    registry: EngineRegistry = default_registry,
    max_chars: int = MAX_CHARS,
    gap_s: float = 0.15,
    on_progress: Progress | None = None,
) -> Audio:
    """Speak ``text`` with ``voice_id`` (``engine.voice``), sentence by sentence.

    ``gap_s`` of silence separates the sentences; ``on_progress`` hears after each one.

    :raises tts.errors.EngineUnavailable: the engine cannot be used here.
    :raises tts.errors.UnknownVoice: the engine has no such voice.
    :raises ValueError: the text has nothing to say.
    """
    engine, voice = registry.resolve(voice_id)
    pieces = split_text(text, max_chars)
    if not pieces:
        raise ValueError("the text has nothing to say")
    parts = []
    for done, piece in enumerate(pieces, start=1):
        parts.append(engine.synthesize(piece, voice, speed))
        if on_progress is not None:
            on_progress(done, len(pieces))
    return concatenate(parts, gap_s)
