"""The ``tts`` and ``audio`` processors through a real worker: real synthesis, real files, a
real SQLite queue; errors that cannot be retried discard at once; retries skip finished items."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.runtime_worker import runtime_config, wait_until
from tts import TextToSpeechRequest
from tts.audio import write_audio
from tts.engines import EngineRegistry, EngineSettings
from tts.errors import InvalidSettings
from tts.processor import default_processors, register
from tts.requests import (
    AnalyzeOperation,
    AudioRequest,
    ConvertOperation,
    NormalizeOperation,
)
from tts.settings import TTSSettings
from tts.waveform import Audio
from worker import (
    ProcessorRegistry,
    Task,
    TaskEvent,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
    run_workers,
)
from worker.runtime.processors import registry as default_registry

pytestmark = pytest.mark.timeout(60)

THREE_SENTENCES = "The first sentence is short. Here is the second one! Is this the third?"


@pytest.fixture(scope="module")
def engines() -> EngineRegistry:
    """One set of loaded engines for the module (as one worker process would keep them)."""
    return EngineRegistry(EngineSettings(piper_noise_scale=0.0, piper_noise_w_scale=0.0))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def run_burst(
    db_path: Path,
    data_dir: Path,
    engines: EngineRegistry,
    tasks: list[Task],
    events: list[TaskEvent] | None = None,
    **config: Any,
) -> list[Task]:
    """Enqueue ``tasks``, run a burst worker with the tts processors, return them as stored."""
    registry = ProcessorRegistry()
    register(registry, TTSSettings(), engines)
    async with WorkerQueue(runtime_config(db_path, data_dir=data_dir, **config)) as queue:
        await queue.enqueue(tasks)
        worker = Worker(queue, registry, burst=True, handle_signals=False)
        if events is not None:
            worker.register_callback("task_progress", events.append)
        async with asyncio.timeout(40):
            await worker.run()
        return [await queue.get_task(task.id) for task in tasks]


def tts_task(text: str = THREE_SENTENCES, voice_id: str = "espeak.en-us", **request: Any) -> Task:
    return Task(
        items=[TaskItem(request=TextToSpeechRequest(text=text, voice_id=voice_id, **request))],
        max_attempts=5,
    )


def result_of(task: Task, index: int = 0) -> dict[str, Any]:
    result: Any = task.items[index].result
    assert isinstance(result, dict), result
    return result


def tone(path: Path, amplitude: float = 0.5, seconds: float = 1.0, rate: int = 16_000) -> Path:
    """A 440 Hz sine written as 16-bit WAV."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    samples = (amplitude * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    write_audio(Audio(samples, rate), path)
    return path


# -- tts -----------------------------------------------------------------------------------


async def test_speech_is_written_under_the_task_outputs_with_its_record(
    db_path: Path, data_dir: Path, engines: EngineRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "worker.runtime.context.PROGRESS_INTERVAL_S", 0.0
    )  # every report is written
    events: list[TaskEvent] = []
    [done] = await run_burst(db_path, data_dir, engines, [tts_task()], events)
    assert done.state is TaskState.COMPLETED, done.last_error
    assert done.attempt_count == 1
    result = result_of(done)
    path = data_dir / "outputs" / done.id / "0.wav"
    assert result["path"] == str(path)
    assert result["format"] == "wav"
    assert result["sample_rate"] == 22_050
    assert result["voice_id"] == "espeak.en-us"
    assert result["engine"] == "espeak"
    assert result["sentences"] == 3
    assert result["size_bytes"] == path.stat().st_size
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_16", 22_050)
    assert result["duration_s"] == pytest.approx(info.frames / info.samplerate, abs=1e-5)
    assert 1.5 < info.duration < 12.0
    assert not [p for p in path.parent.iterdir() if p.name != "0.wav"]  # no temporary left
    # One progress report before the first sentence and one after each.
    reports = [(e.progress.current, e.progress.total) for e in events if e.progress is not None]
    assert reports == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert done.progress is not None
    assert (done.progress.current, done.progress.message) == (3, "3/3 sentences")


async def test_piper_speech_as_flac_at_the_requested_rate(
    db_path: Path, data_dir: Path, engines: EngineRegistry
) -> None:
    task = tts_task(
        "Hello from the queue.", "piper.en_US-joe-medium", output_format="flac", sample_rate=16_000
    )
    [done] = await run_burst(db_path, data_dir, engines, [task])
    assert done.state is TaskState.COMPLETED, done.last_error
    result = result_of(done)
    assert result["path"].endswith(f"/outputs/{done.id}/0.flac")
    assert (result["format"], result["sample_rate"], result["engine"]) == ("flac", 16_000, "piper")
    info = sf.info(result["path"])
    assert (info.format, info.samplerate) == ("FLAC", 16_000)
    samples, _ = sf.read(result["path"], dtype="float32")
    assert float(np.sqrt(np.mean(np.square(samples)))) > 0.02  # speech, not silence


@pytest.mark.parametrize(
    ("voice_id", "expected"),
    [
        ("nope.voice", ["unknown speech engine 'nope'", "known engines: espeak, kokoro, piper"]),
        ("espeak.xx-nope", ["unknown voice 'espeak.xx-nope'", "available voices: espeak."]),
        ("piper.en_GB-nobody-low", ["unknown voice", "TTS_PIPER_VOICES_DIR"]),
        (
            "kokoro.af_heart",
            [
                "kokoro engine is not configured",
                "kokoro-v1.0.onnx",
                "TTS_KOKORO_MODEL",
                "TTS_KOKORO_VOICES",
                "pip install 'worker-queue[kokoro]'",
            ],
        ),
    ],
)
async def test_what_cannot_be_spoken_is_discarded_at_once_saying_why(
    db_path: Path, data_dir: Path, engines: EngineRegistry, voice_id: str, expected: list[str]
) -> None:
    [done] = await run_burst(db_path, data_dir, engines, [tts_task(voice_id=voice_id)])
    assert done.state is TaskState.DISCARDED
    assert done.attempt_count == 1
    error = done.last_error or ""
    assert error.startswith("PermanentError: ")
    for part in expected:
        assert part in error
    assert not (data_dir / "outputs" / done.id).exists()  # never another voice


async def test_a_retry_does_not_redo_the_items_already_finished(
    db_path: Path, data_dir: Path, engines: EngineRegistry, tmp_path: Path
) -> None:
    source = tone(tmp_path / "tone.wav")
    task = Task(
        items=[
            TaskItem(request=TextToSpeechRequest(text="Said once.", voice_id="espeak.en-us")),
            TaskItem(request=AudioRequest(path=str(source), operations=[NormalizeOperation()])),
        ],
        max_attempts=3,
    )
    config = runtime_config(db_path, data_dir=data_dir, retry_base_delay=0.5)
    registry = ProcessorRegistry()
    register(registry, TTSSettings(), engines)
    outputs = data_dir / "outputs"
    async with WorkerQueue(config) as queue:
        await queue.enqueue([task])
        # The second item's output place is taken by a directory: its write fails (retryable).
        blocker = outputs / task.id / "1.wav"
        (blocker / "x").mkdir(parents=True)
        async with asyncio.timeout(30):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        first = await queue.get_task(task.id)
        assert first.state in (TaskState.PENDING, TaskState.RETRYABLE)
        assert "IsADirectoryError" in (first.last_error or "")
        speech = outputs / task.id / "0.wav"
        before = speech.stat()
        (blocker / "x").rmdir()
        blocker.rmdir()

        async def due() -> bool:  # after the backoff (0.5 s, jitter up to 10 %)
            await queue.retry()
            return await queue.any_due()

        await wait_until(due, 10, "the retry due")
        async with asyncio.timeout(30):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        done = await queue.get_task(task.id)
    assert done.state is TaskState.COMPLETED, done.last_error
    assert done.attempt_count == 2
    after = speech.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert result_of(done, 0)["path"] == str(speech)
    assert result_of(done, 1)["output"]["path"] == str(blocker)
    assert sf.info(str(blocker)).samplerate == 16_000


async def test_the_module_registers_on_the_default_registry_for_run_workers(
    db_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_processors.cache_clear()
    try:
        config = runtime_config(db_path, data_dir=data_dir)
        async with WorkerQueue(config) as queue:
            task = tts_task("One sentence.")
            await queue.enqueue([task])
        async with asyncio.timeout(30):
            counts = await run_workers(config, modules=["tts.processor"], burst=True)
        assert counts["completed"] == 1
        assert {"tts", "audio"} <= set(default_registry.kinds())
        assert (data_dir / "outputs" / task.id / "0.wav").is_file()
    finally:
        default_processors.cache_clear()


def test_settings_come_from_the_environment_only_through_from_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environ = {
        "QUEUE_DATA_DIR": "/elsewhere",  # the queue's setting: not one of these
        "TTS_PIPER_VOICES_DIR": "/voices",
        "TTS_PIPER_NOISE_SCALE": "0",
        "TTS_KOKORO_MODEL": "",  # empty: unset
        "TTS_KOKORO_LANGUAGE": "en-us",
        "TTS_PIPER_THREADS": "1",
    }
    settings = TTSSettings.from_env(environ)
    engine = settings.engine_settings()
    assert engine.piper_voices_dir == Path("/voices")
    assert engine.piper_noise_scale == 0.0
    assert engine.piper_threads == 1
    assert engine.kokoro_model_path is None
    assert engine.kokoro_language == "en-us"
    assert "data_dir" not in TTSSettings.model_fields
    monkeypatch.setenv("TTS_PIPER_NOISE_SCALE", "1")
    assert TTSSettings().piper_noise_scale is None  # construction reads nothing
    with pytest.raises(InvalidSettings) as refused:
        TTSSettings.from_env({"TTS_PIPER_NOISE_SCALE": "loud", "TTS_KOKORO_LANGUAGE": "EN US"})
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("invalid TTS settings: TTS_PIPER_NOISE_SCALE='loud': ")
    assert lines[1].startswith("TTS_KOKORO_LANGUAGE='EN US': ")
    with pytest.raises(InvalidSettings, match="TTS_PIPER_THREADS='0'"):
        TTSSettings.from_env({"TTS_PIPER_THREADS": "0"})


# -- audio ---------------------------------------------------------------------------------


async def test_audio_analysis_and_processed_output(
    db_path: Path, data_dir: Path, engines: EngineRegistry, tmp_path: Path
) -> None:
    source = tone(tmp_path / "tone.wav", amplitude=0.5)
    task = Task(
        items=[
            TaskItem(request=AudioRequest(path=str(source), operations=[AnalyzeOperation()])),
            TaskItem(
                request=AudioRequest(
                    path=str(source),
                    operations=[
                        NormalizeOperation(target_dbfs=-1.0),
                        ConvertOperation(format="flac", sample_rate=8000),
                        AnalyzeOperation(),
                    ],
                )
            ),
        ]
    )
    [done] = await run_burst(db_path, data_dir, engines, [task])
    assert done.state is TaskState.COMPLETED, done.last_error
    analysis, processed = result_of(done, 0), result_of(done, 1)
    assert analysis["output"] is None  # nothing changed, nothing written
    assert analysis["input"] == str(source)
    [report] = analysis["operations"]
    assert report["duration_s"] == pytest.approx(1.0)
    assert (report["sample_rate"], report["channels"], report["frames"]) == (16_000, 1, 16_000)
    assert report["peak_dbfs"] == pytest.approx(-6.02, abs=0.01)
    assert report["rms_dbfs"] == pytest.approx(-9.03, abs=0.01)
    assert report["silence_ratio"] == 0.0
    assert not (data_dir / "outputs" / done.id / "0.wav").exists()
    output = processed["output"]
    assert output["path"] == str(data_dir / "outputs" / done.id / "1.flac")
    assert (output["format"], output["sample_rate"]) == ("flac", 8000)
    assert processed["operations"][-1]["peak_dbfs"] == pytest.approx(-1.0, abs=0.1)
    assert sf.info(output["path"]).format == "FLAC"


async def test_a_missing_input_file_is_discarded_at_once_naming_it(
    db_path: Path, data_dir: Path, engines: EngineRegistry, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "input.wav"
    task = Task(
        items=[TaskItem(request=AudioRequest(path=str(missing), operations=[AnalyzeOperation()]))],
        max_attempts=5,
    )
    started = time.monotonic()
    [done] = await run_burst(db_path, data_dir, engines, [task])
    assert done.state is TaskState.DISCARDED
    assert done.attempt_count == 1
    assert str(missing) in (done.last_error or "")
    assert (done.last_error or "").startswith("FileNotFoundError")
    assert time.monotonic() - started < 10


async def test_a_file_that_is_not_audio_is_discarded_at_once_naming_it(
    db_path: Path, data_dir: Path, engines: EngineRegistry, tmp_path: Path
) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio at all")
    os.chmod(bogus, 0o644)
    task = Task(
        items=[TaskItem(request=AudioRequest(path=str(bogus), operations=[AnalyzeOperation()]))],
        max_attempts=5,
    )
    [done] = await run_burst(db_path, data_dir, engines, [task])
    assert done.state is TaskState.DISCARDED
    assert done.attempt_count == 1
    assert f"cannot read audio file {bogus}" in (done.last_error or "")
