"""What a speech engine is: a small protocol, so callers need no engine in particular."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tts.errors import UnsupportedSetting

if TYPE_CHECKING:
    from tts.waveform import Audio


@runtime_checkable
class SpeechEngine(Protocol):
    """One synthesis backend (piper, espeak, kokoro, ...), used once per process.

    The constructor only stores settings; :meth:`load` does the slow work (models, libraries)
    once and is idempotent. Voice names are the part of a voice id after the engine's name:
    ``piper.en_US-joe-medium`` is voice ``en_US-joe-medium`` of engine ``piper``.
    """

    @property
    def name(self) -> str: ...

    def load(self) -> None:
        """Load models and libraries; a second call does nothing.

        :raises tts.errors.EngineUnavailable: the engine is not installed or not configured.
        """

    def voices(self) -> list[str]:
        """The voice names this engine can speak with (after :meth:`load`), sorted."""

    def synthesize(self, text: str, voice: str, speed: float) -> Audio:
        """Speak ``text`` with ``voice``; ``speed`` 1.0 is the voice's natural pace.

        Returns mono float32 audio at the voice's own sample rate.
        """


def check_speed(engine: str, speed: float, low: float = 0.25, high: float = 4.0) -> None:
    """:raises UnsupportedSetting: ``speed`` is outside what ``engine`` can do."""
    if not low <= speed <= high:
        raise UnsupportedSetting(f"{engine} speaks at speeds {low} to {high}, not {speed}")
