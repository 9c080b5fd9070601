"""Speech and audio jobs on the worker queue.

The names below load on first use, so that ``wq`` (which imports :mod:`tts.cli` at every
start) does not build the request models before a command needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tts.requests import OutputFormat, TextToSpeechRequest

__all__ = ["OutputFormat", "TextToSpeechRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tts import requests

        return getattr(requests, name)
    raise AttributeError(f"module 'tts' has no attribute {name!r}")
