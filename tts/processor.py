"""The ``tts`` and ``audio`` processors: speech synthesis and audio jobs on the worker runtime.

A worker runs them once this module is loaded::

    await run_workers(QueueConfig.from_env(), modules=["tts.processor"])
    # or: wq worker --processors tts.processor

Importing the module registers :func:`synthesize` and :func:`process_audio` on the default
processor registry; they build their :class:`~tts.settings.TTSSettings` from the environment on
first use, once per process. :func:`register` instead puts handlers with explicit settings on
any registry.

Both run the slow work off the event loop (:func:`worker.in_thread`), so the worker keeps
renewing leases and claiming while a job runs, and a stopped job's synthesis ends before
its task is retried or released. A ``tts`` item is spoken sentence by sentence,
with progress reported after each, and a long one checkpoints the sentences spoken so far
(:mod:`tts.resume`): a retried attempt goes on from there. Engines and models load once per
:class:`SpeechProcessors` and are reused by every task. Outputs are written to a temporary
name and renamed, at ``<data_dir>/outputs/<task id>/<item index>.<ext>`` (:mod:`tts.outputs`;
``data_dir`` is the queue's, ``QUEUE_DATA_DIR``).

Errors: a :class:`~tts.errors.TTSError` (unknown engine or voice, engine not installed or not
configured, unsupported setting or format) cannot succeed on a retry, so it becomes a
:class:`~worker.PermanentError` and the task is discarded at once, with a message saying what
is missing and how to get it. A missing input file is a :class:`FileNotFoundError`, which the
runtime also discards at once.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tts.audio import AudioFileRecord, AudioFormat, write_audio
from tts.audio_ops import AudioResult, process_audio_file
from tts.engines.registry import EngineRegistry
from tts.errors import EngineUnavailable, TTSError, UnknownVoice
from tts.outputs import task_dir
from tts.requests import (
    AnalyzeOperation,
    AudioRequest,
    ConvertOperation,
    Operation,
    TextToSpeechRequest,
)
from tts.resume import CHECKPOINT_INTERVAL_S, SpokenParts, speech_key
from tts.settings import VARIABLES, TTSSettings
from tts.text import split_text
from tts.waveform import Audio, concatenate
from worker import PermanentError, ProcessorRegistry, TaskContext, TaskItem, in_thread, processor

R = TypeVar("R")

#: Silence between two sentences of one text.
SENTENCE_GAP_S = 0.15

# What to do about an engine that is missing or short of a voice, in a worker's terms.
_HINTS = {
    "kokoro": (
        f"a worker reads the two paths from {VARIABLES['kokoro_model']} and "
        f"{VARIABLES['kokoro_voices']}"
    ),
    "piper": (
        f"more piper voices: put NAME.onnx and NAME.onnx.json (from "
        f"https://huggingface.co/rhasspy/piper-voices) in {VARIABLES['piper_voices_dir']}"
    ),
}


class SpeechProcessors:
    """The two handlers, sharing one set of settings and one set of loaded engines."""

    def __init__(self, settings: TTSSettings, engines: EngineRegistry | None = None) -> None:
        self.settings = settings
        self.engines = engines or EngineRegistry(settings.engine_settings())

    def output_path(self, ctx: TaskContext, extension: str) -> Path:
        """``<data_dir>/outputs/<task id>/<item index>.<extension>`` (absolute)."""
        return task_dir(ctx.config, ctx.task.id) / f"{ctx.index}.{extension}"

    async def tts(self, item: TaskItem, ctx: TaskContext) -> dict[str, Any]:
        """Speak one :class:`TextToSpeechRequest` into a file; return the file's record."""
        request = _expect(item, TextToSpeechRequest)
        pieces = split_text(request.text)
        if not pieces:
            raise PermanentError("the text has nothing to say")
        total = len(pieces)
        kept = SpokenParts(
            task_dir(ctx.config, ctx.task.id) / f"{ctx.index}.parts",
            speech_key(request.voice_id, request.speed, pieces),
        )
        with _permanent(request.voice_id):
            engine, voice = await in_thread(self.engines.resolve, request.voice_id)
            parts = await in_thread(kept.load, ctx.checkpoint_data)
            resumed = f", resumed at sentence {len(parts) + 1}" if parts else ""
            await ctx.progress(len(parts), total, f"{len(parts)}/{total} sentences{resumed}")
            last_saved = time.monotonic()
            for done, piece in enumerate(pieces[len(parts) :], start=len(parts) + 1):
                await ctx.check_cancelled()
                audio = await in_thread(engine.synthesize, piece, voice, request.speed)
                parts.append(audio)
                await ctx.progress(done, total, f"{done}/{total} sentences")
                if done < total and time.monotonic() - last_saved >= CHECKPOINT_INTERVAL_S:
                    await in_thread(kept.save, parts)
                    await ctx.checkpoint(kept.checkpoint(audio.sample_rate))
                    last_saved = time.monotonic()
            target = self.output_path(ctx, request.output_format)
            record = await in_thread(
                _write_speech, parts, target, request.output_format, request.sample_rate
            )
            await in_thread(kept.remove)
        return {
            **record,
            "voice_id": request.voice_id,
            "engine": engine.name,
            "sentences": total,
        }

    async def audio(self, item: TaskItem, ctx: TaskContext) -> dict[str, Any]:
        """Run one :class:`AudioRequest`; return the analysis reports and the output record."""
        request = _expect(item, AudioRequest)
        target = self.output_path(ctx, _output_format(request.operations))
        await ctx.progress(0, 1, f"processing {request.path}")
        try:
            result = await in_thread(_process_audio, request, target)
        except TTSError as exc:
            raise PermanentError(str(exc)) from exc
        await ctx.progress(1, 1, "done")
        return dict(result)


def register(
    registry: ProcessorRegistry,
    settings: TTSSettings | None = None,
    engines: EngineRegistry | None = None,
) -> SpeechProcessors:
    """Register ``tts`` and ``audio`` handlers on ``registry``, replacing any there.

    ``settings`` defaults to :meth:`TTSSettings.from_env` (read now, once).
    """
    processors = SpeechProcessors(settings or TTSSettings.from_env(), engines)
    registry.add("tts", processors.tts, replace=True)
    registry.add("audio", processors.audio, replace=True)
    return processors


@functools.cache
def default_processors() -> SpeechProcessors:
    """The processors behind the default registry's handlers: settings from the environment."""
    return SpeechProcessors(TTSSettings.from_env())


@processor("tts")
async def synthesize(item: TaskItem, ctx: TaskContext) -> dict[str, Any]:
    """The default registry's ``tts`` handler."""
    return await default_processors().tts(item, ctx)


@processor("audio")
async def process_audio(item: TaskItem, ctx: TaskContext) -> dict[str, Any]:
    """The default registry's ``audio`` handler."""
    return await default_processors().audio(item, ctx)


# -- helpers (the ones named _write/_process run in a worker thread) ---------------------


def _expect(item: TaskItem, kind: type[R]) -> R:
    request = item.request
    if not isinstance(request, kind):
        raise PermanentError(f"expected a {kind.__name__}, got {type(request).__name__}")
    return request


@contextlib.contextmanager
def _permanent(voice_id: str) -> Iterator[None]:
    """Turn a :class:`TTSError` into a :class:`PermanentError`, with a hint for a worker."""
    try:
        yield
    except TTSError as exc:
        message = str(exc)
        hint = _HINTS.get(voice_id.partition(".")[0])
        if hint and isinstance(exc, EngineUnavailable | UnknownVoice):
            message = f"{message}; {hint}"
        raise PermanentError(message) from exc


def _write_speech(
    parts: list[Audio], target: Path, format: AudioFormat, sample_rate: int | None
) -> AudioFileRecord:
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_audio(concatenate(parts, SENTENCE_GAP_S), target, format, sample_rate)


def _process_audio(request: AudioRequest, target: Path) -> AudioResult:
    if any(not isinstance(op, AnalyzeOperation) for op in request.operations):
        target.parent.mkdir(parents=True, exist_ok=True)
    return process_audio_file(request.path, request.operations, target)


def _output_format(operations: Sequence[Operation]) -> AudioFormat:
    """The format of the last ``convert``, else WAV (as :func:`apply_operations` decides)."""
    converts = [op.format for op in operations if isinstance(op, ConvertOperation)]
    return converts[-1] if converts else "wav"
