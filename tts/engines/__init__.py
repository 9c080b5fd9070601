"""Speech engines behind one protocol, found by the engine part of a voice id.

The names below load on first use: the voice catalog (:mod:`tts.voices`) reads voice files
through :mod:`tts.engines.files` without NumPy or any engine's library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tts.engines.base import SpeechEngine
    from tts.engines.registry import EngineRegistry, EngineSettings, default_registry, resolve

__all__ = ["EngineRegistry", "EngineSettings", "SpeechEngine", "default_registry", "resolve"]

_HOMES = {"SpeechEngine": "tts.engines.base"}


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(_HOMES.get(name, "tts.engines.registry")), name)
    raise AttributeError(f"module 'tts.engines' has no attribute {name!r}")
