"""``wq submit tts``: speak a text, with the voice checked against this machine's engines."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.inspect import JsonFlag
from worker.cli.session import usage_error
from worker.cli.submit import (
    DelayOpt,
    DependsOpt,
    KeyOpt,
    MaxAttemptsOpt,
    NameOpt,
    PriorityOpt,
    QueueOpt,
    TimeoutOpt,
    WaitOpt,
    build_request,
    shared_options,
    submit,
)

SKIP_CHECK_HINT = (
    "(--no-voice-check submits it anyway, for workers whose engines or voices differ from "
    "this machine's)"
)


def submit_tts(
    ctx: typer.Context,
    *,
    text: Annotated[str, typer.Argument(help="The text to speak.")],
    voice: Annotated[
        str, typer.Option("--voice", "-v", metavar="VOICE_ID", help="engine.voice (wq voices).")
    ],
    output_format: Annotated[
        str, typer.Option("--format", "-f", metavar="wav|flac|ogg|mp3", help="Audio format.")
    ] = "wav",
    speed: Annotated[float | None, typer.Option("--speed", help="0.25 < speed <= 4.")] = None,
    sample_rate: Annotated[int | None, typer.Option("--sample-rate", metavar="HZ")] = None,
    no_voice_check: Annotated[
        bool,
        typer.Option(
            "--no-voice-check",
            help="Do not check the voice against the engines installed here.",
        ),
    ] = False,
    queue: QueueOpt = "default",
    priority: PriorityOpt = None,
    delay: DelayOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    name: NameOpt = None,
    depends_on: DependsOpt = None,
    idempotency_key: KeyOpt = None,
    wait: WaitOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Speak text: wq submit tts "Hello" --voice piper.en_US-joe-medium --format mp3

    The voice must be one that `wq voices` lists (the engines and TTS_* settings of this
    machine); --no-voice-check skips that, for workers set up differently.
    """
    fields = {
        "text": text,
        "voice_id": voice,
        "output_format": output_format,
        "speed": speed,
        "sample_rate": sample_rate,
    }
    names = {"voice_id": "--voice", "output_format": "--format", "sample_rate": "--sample-rate"}
    request = build_request("tts", fields, names | {"speed": "--speed"})  # a bad voice id too
    if not no_voice_check:
        check_voice(voice)
    options = shared_options(locals())
    submit(ctx, options, request)


def check_voice(voice_id: str) -> None:
    """Exit 2 (a usage error listing voices) unless an engine here can speak ``voice_id``."""
    from tts.engines.registry import ENGINES
    from tts.errors import TTSError
    from tts.settings import TTSSettings
    from tts.voices import catalog, engine_voices, voice_problem

    try:
        settings = TTSSettings.from_env()
    except TTSError as exc:
        usage_error(str(exc))
    engine = voice_id.partition(".")[0]
    entries = [engine_voices(engine, settings)] if engine in ENGINES else catalog(settings)
    problem = voice_problem(voice_id, entries)
    if problem is not None:
        first, *listed = problem.splitlines()
        usage_error(first, [*listed, SKIP_CHECK_HINT])
