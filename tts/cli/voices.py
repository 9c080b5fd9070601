"""``wq voices``: the voices each speech engine offers on this machine, and how to get the
engines that are not installed or not configured."""

from __future__ import annotations

import shutil
import textwrap
from typing import Annotated

import typer

from worker.cli.inspect import JsonFlag
from worker.cli.session import print_json, usage_error


def voices(
    engine: Annotated[
        str | None, typer.Argument(metavar="[ENGINE]", help="Only this engine's voices.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the voices of each speech engine (piper, espeak, kokoro) installed here.

    What a worker with the same extras and TTS_* settings (TTS_PIPER_VOICES_DIR,
    TTS_KOKORO_MODEL, TTS_KOKORO_VOICES) can speak; an engine without voices says what is
    missing and how to get it.
    """
    from tts.engines.registry import ENGINES
    from tts.errors import TTSError
    from tts.settings import TTSSettings
    from tts.voices import catalog, engine_voices

    try:
        settings = TTSSettings.from_env()
    except TTSError as exc:
        usage_error(str(exc))
    if engine is not None and engine not in ENGINES:
        usage_error(f"unknown speech engine {engine!r}; engines: {', '.join(sorted(ENGINES))}")
    entries = [engine_voices(engine, settings)] if engine else catalog(settings)
    if as_json:
        print_json({"engines": [entry.document() for entry in entries]})
        return
    width = max(40, shutil.get_terminal_size().columns)
    for entry in entries:
        count = len(entry.voices)
        if entry.status == "available":
            typer.echo(f"{entry.engine}: {count} voice{'' if count == 1 else 's'}")
            typer.echo(
                textwrap.fill(
                    "  ".join(entry.voices),
                    width=width,
                    initial_indent="  ",
                    subsequent_indent="  ",
                    break_on_hyphens=False,
                )
            )
        else:
            typer.echo(f"{entry.engine}: {entry.status}")
        if entry.note:
            typer.echo(textwrap.fill(entry.note, width=width, initial_indent="  ",
                                     subsequent_indent="    "))  # fmt: skip
