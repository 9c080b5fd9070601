"""Pure helpers for ``wq submit audio``: ``--op`` values and the audio files behind paths.

Each raises ``ValueError`` with a message fit to show the user (a usage error, exit code 2).
The operation fields are not checked here: the ``audio`` request model validates them. Only
the standard library is imported (this module loads at every ``wq`` start).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"})
DEFAULT_OPERATION = "analyze"


def parse_operation(text: str) -> dict[str, str]:
    """``"NAME[:key=value,...]"`` -> ``{"op": NAME, key: value, ...}`` (values stay strings).

    ``"convert:format=flac,sample_rate=16000"`` -> ``{"op": "convert", "format": "flac",
    "sample_rate": "16000"}``; the request model converts the values to numbers.
    """
    name, _, params = text.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"invalid --op {text!r}: use NAME[:key=value,...]")
    operation = {"op": name}
    for pair in params.split(",") if params.strip() else []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"invalid --op {text!r}: expected key=value, got {pair.strip()!r}")
        if key in operation:
            what = "the operation name is given before ':'" if key == "op" else "given twice"
            raise ValueError(f"invalid --op {text!r}: {key!r} {what}")
        operation[key] = value.strip()
    return operation


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()


def audio_files(paths: Iterable[str]) -> list[str]:
    """Absolute paths of the files given, and of the audio files under the directories given.

    A directory contributes every file with an audio extension below it (recursively, sorted);
    a file given by name is taken whatever its extension. Duplicates are dropped, first wins.
    Raises ``ValueError`` for a path that does not exist or a directory without audio files.
    """
    found: dict[str, None] = {}
    for given in paths:
        if not given.strip():  # "" would be the working directory, swept whole
            raise ValueError("an empty path: name a file or a directory")
        path = Path(os.path.abspath(os.path.expanduser(given)))
        if path.is_dir():
            inside = sorted(str(p) for p in path.rglob("*") if is_audio_file(p))
            if not inside:
                extensions = ", ".join(sorted(ext[1:] for ext in AUDIO_EXTENSIONS))
                raise ValueError(f"no audio files ({extensions}) under {given}")
            found.update(dict.fromkeys(inside))
        elif path.is_file():
            found[str(path)] = None
        elif path.exists():
            raise ValueError(f"not a regular file or a directory: {given}")
        else:
            raise ValueError(f"no such file or directory: {given}")
    return list(found)


__all__ = ["AUDIO_EXTENSIONS", "DEFAULT_OPERATION", "audio_files", "parse_operation"]
