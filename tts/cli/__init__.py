"""The ``wq`` commands of the speech package: ``wq submit tts``, ``wq submit audio`` and
``wq voices``.

``wq`` loads them through this package's ``worker.cli`` entry point, :func:`register`, at every
start, so these modules import only typer and ``worker.cli``; what a command needs (the voice
catalog, the engines' libraries) is imported when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    """Add the commands to ``app`` (the ``wq`` app) and to its ``submit`` group; a second call
    adds nothing."""
    from tts.cli.audio import submit_audio
    from tts.cli.speech import submit_tts
    from tts.cli.voices import voices
    from worker.cli.submit import submit_app

    _add(submit_app, "tts", submit_tts)
    _add(submit_app, "audio", submit_audio)
    _add(app, "voices", voices)


def _add(target: typer.Typer, name: str, command: Callable[..., Any]) -> None:
    if all(info.name != name for info in target.registered_commands):
        target.command(name)(command)


__all__ = ["register"]
