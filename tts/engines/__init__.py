"""Speech engines behind one protocol, found by the engine part of a voice id."""

from tts.engines.base import SpeechEngine
from tts.engines.registry import EngineRegistry, EngineSettings, default_registry, resolve

__all__ = ["EngineRegistry", "EngineSettings", "SpeechEngine", "default_registry", "resolve"]
