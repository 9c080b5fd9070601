"""Every error the ``tts`` package raises.

The tree::

    TTSError                   root: ``except TTSError`` catches everything below
    ├── InvalidSettings        a ``TTS_*`` variable has a bad value (one line per variable)
    ├── EngineUnavailable      the engine is unknown, its extra is not installed, or it is not
    │                          configured (the message says how to install or configure it)
    ├── UnknownVoice           the engine is there but has no such voice (the message lists some)
    ├── UnsupportedSetting     the engine cannot honour a setting (a speed outside its range)
    └── AudioError             an audio file cannot be read, or a format cannot be written
        └── UnsupportedFormat  this libsndfile build cannot write the requested format

None of these can succeed on a retry: the runtime discards such tasks without more attempts.
A missing input file raises the built-in :class:`FileNotFoundError`, naming the path.
"""

from __future__ import annotations

import difflib


class TTSError(Exception):
    """Root of every error this package raises."""


class InvalidSettings(TTSError, ValueError):
    """A ``TTS_*`` environment variable has a value that cannot be used."""


class EngineUnavailable(TTSError):
    """The engine cannot be used in this process: unknown, not installed, or not configured."""


class UnknownVoice(TTSError, LookupError):
    """The engine has no voice of that name."""

    def __init__(self, voice_id: str, available: list[str], detail: str | None = None) -> None:
        # Compared without the engine's name, which every id of one engine shares.
        prefix = voice_id.partition(".")[0] + "."
        by_name = {v.removeprefix(prefix): v for v in available}
        close = difflib.get_close_matches(voice_id.removeprefix(prefix), by_name, n=8, cutoff=0.5)
        ordered = [*close, *(v for v in by_name if v not in close)][:8]
        shown = ", ".join(by_name[name] for name in ordered)
        more = f" and {len(available) - 8} more" if len(available) > 8 else ""
        listed = f"available voices: {shown or 'none'}{more}"
        super().__init__(f"unknown voice {voice_id!r}; {detail or listed}")
        self.voice_id = voice_id
        self.available = available


class UnsupportedSetting(TTSError, ValueError):
    """The engine cannot honour a synthesis setting, such as a speed outside its range."""


class AudioError(TTSError):
    """An audio file could not be read or written."""


class UnsupportedFormat(AudioError, ValueError):
    """The requested output format cannot be written by this build of libsndfile."""
