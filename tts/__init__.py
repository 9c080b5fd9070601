"""Speech and audio jobs on the worker queue."""

from tts.requests import OutputFormat, TextToSpeechRequest

__all__ = ["OutputFormat", "TextToSpeechRequest"]
