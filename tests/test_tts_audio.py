"""Audio operations on generated tones (a sine with silence around it), in memory and on disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydantic
import pytest
import soundfile as sf

from tts import waveform
from tts.audio import read_audio, writable_formats, write_audio
from tts.audio_ops import analyze, apply_operations, process_audio_file
from tts.errors import AudioError, UnsupportedFormat
from tts.requests import AnalyzeOperation, AudioRequest
from tts.waveform import Audio

RATE = 22_050


def tone(
    freq: float = 440.0,
    seconds: float = 1.0,
    rate: int = RATE,
    amplitude: float = 0.5,
    silence_s: float = 0.5,
) -> Audio:
    """``silence_s`` of silence, a sine of ``seconds``, ``silence_s`` of silence."""
    t = np.arange(round(seconds * rate)) / rate
    quiet = np.zeros(round(silence_s * rate))
    samples = np.concatenate([quiet, amplitude * np.sin(2 * np.pi * freq * t), quiet])
    return Audio(samples.astype(np.float32), rate)


def dominant_hz(audio: Audio) -> float:
    spectrum = np.abs(np.fft.rfft(audio.samples))
    return float(np.argmax(spectrum) * audio.sample_rate / audio.frames)


def test_analyze_measures_levels_and_silence() -> None:
    report = analyze(tone(amplitude=0.5, seconds=1.0, silence_s=0.5))
    assert report["duration_s"] == pytest.approx(2.0)
    assert report["sample_rate"] == RATE
    assert report["channels"] == 1
    assert report["peak_dbfs"] == pytest.approx(20 * np.log10(0.5), abs=0.01)
    # RMS of a sine is peak / sqrt(2), over half of the time
    assert report["rms_dbfs"] == pytest.approx(
        20 * np.log10(0.5 / np.sqrt(2) * np.sqrt(0.5)), abs=0.05
    )
    assert report["silence_ratio"] == pytest.approx(0.5, abs=0.03)
    silent = analyze(Audio(np.zeros(1000, dtype=np.float32), RATE))
    assert silent["peak_dbfs"] is None
    assert silent["rms_dbfs"] is None
    assert silent["silence_ratio"] == 1.0


@pytest.mark.parametrize("new_rate", [8_000, 16_000, 44_100, 48_000])
def test_resample_keeps_pitch_level_and_length(new_rate: int) -> None:
    source = tone(freq=440.0, seconds=1.0, silence_s=0.0)
    out = waveform.resample(source, new_rate)
    assert out.sample_rate == new_rate
    assert out.frames == round(source.frames * new_rate / RATE)
    assert dominant_hz(out) == pytest.approx(440.0, abs=2.0)
    assert waveform.rms(out) == pytest.approx(waveform.rms(source), rel=0.01)
    # away from the ends, it is the same sine sampled at the new rate
    t = np.arange(out.frames) / new_rate
    expected = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    middle = slice(out.frames // 10, -out.frames // 10)
    assert np.max(np.abs(out.samples[middle] - expected[middle])) < 0.01


def test_downsampling_removes_what_the_new_rate_cannot_hold() -> None:
    high = tone(freq=10_000.0, seconds=1.0, rate=44_100, silence_s=0.0)
    assert waveform.rms(waveform.resample(high, 16_000)) < 1e-3


def test_normalize_peak_and_rms() -> None:
    quiet = tone(amplitude=0.1)
    loud, gain_db = waveform.normalize(quiet, "peak", -1.0)
    assert 20 * np.log10(waveform.peak(loud)) == pytest.approx(-1.0, abs=0.01)
    assert gain_db == pytest.approx(-1.0 - 20 * np.log10(0.1), abs=0.01)
    target, _ = waveform.normalize(quiet, "rms", -20.0)
    assert 20 * np.log10(waveform.rms(target)) == pytest.approx(-20.0, abs=0.01)
    # an RMS target that would clip stops at full scale instead
    capped, _ = waveform.normalize(quiet, "rms", -1.0)
    assert waveform.peak(capped) == pytest.approx(1.0, abs=1e-4)
    silence = Audio(np.zeros(100, dtype=np.float32), RATE)
    assert waveform.normalize(silence, "peak", -1.0)[1] == 0.0


def test_trim_silence_keeps_the_padding() -> None:
    trimmed = waveform.trim_silence(tone(seconds=1.0, silence_s=0.5), -50.0, padding_ms=10.0)
    assert trimmed.duration_s == pytest.approx(1.0 + 0.02, abs=0.002)
    assert waveform.trim_silence(Audio(np.zeros(500, dtype=np.float32), RATE)).frames == 0


def test_channels_mix_down_and_up() -> None:
    mono = tone(silence_s=0.0)
    stereo = waveform.set_channels(mono, 2)
    assert stereo.channels == 2
    assert np.array_equal(stereo.samples[:, 0], stereo.samples[:, 1])
    assert np.allclose(waveform.set_channels(stereo, 1).samples, mono.samples)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_write_each_format_atomically_and_read_it_back(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    record = write_audio(tone(), target, fmt, sample_rate=16_000)  # type: ignore[arg-type]
    assert record["path"] == str(target)
    assert record["format"] == fmt
    assert record["sample_rate"] == 16_000
    assert record["channels"] == 1
    assert record["size_bytes"] == target.stat().st_size > 0
    assert record["duration_s"] == pytest.approx(2.0, abs=0.001)
    assert os.listdir(tmp_path) == [target.name]  # no temporary file left behind
    back = read_audio(target)
    assert back.sample_rate == 16_000
    assert back.duration_s == pytest.approx(2.0, abs=0.1)  # mp3/ogg add encoder padding
    assert dominant_hz(back) == pytest.approx(440.0, abs=2.0)
    if fmt in ("wav", "flac"):
        assert sf.info(str(target)).subtype == "PCM_16"


def test_write_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    assert set(writable_formats()) == {"wav", "flac", "ogg", "mp3"}
    with pytest.raises(UnsupportedFormat, match="unknown audio format 'aiff'"):
        write_audio(tone(), tmp_path / "x.aiff", "aiff")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedFormat, match="mp3 cannot be written at 96000 Hz"):
        write_audio(tone(), tmp_path / "x.mp3", "mp3", sample_rate=96_000)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    write_audio(tone(), target)
    before = target.read_bytes()
    bad = Audio(np.zeros((10, 3000), dtype=np.float32), RATE)  # 3000 channels: refused
    with pytest.raises(sf.LibsndfileError):
        write_audio(bad, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.wav"]


def test_reading_a_missing_or_broken_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"audio file not found: .*missing\.wav"):
        read_audio(tmp_path / "missing.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really audio")
    with pytest.raises(AudioError, match=r"cannot read audio file .*broken\.wav"):
        read_audio(broken)


def test_process_audio_file_runs_the_request(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    stereo = waveform.set_channels(tone(amplitude=0.1, seconds=1.0, silence_s=0.5), 2)
    write_audio(stereo, source)
    request = AudioRequest.model_validate(
        {
            "path": str(source),
            "operations": [
                {"op": "analyze"},
                {"op": "trim_silence", "threshold_dbfs": -40, "padding_ms": 5},
                {"op": "normalize", "mode": "peak", "target_dbfs": -3},
                {"op": "convert", "format": "flac", "sample_rate": 16000, "channels": 1},
                {"op": "analyze"},
            ],
        }
    )
    result = process_audio_file(request.path, request.operations, tmp_path / "out.flac")
    first, trim, norm, conv, last = result["operations"]
    assert first["channels"] == 2
    assert first["duration_s"] == pytest.approx(2.0)
    assert trim["removed_s"] == pytest.approx(1.0 - 0.01, abs=0.002)
    assert norm["gain_db"] == pytest.approx(17.0, abs=0.05)
    assert conv == {"op": "convert", "format": "flac", "sample_rate": 16000, "channels": 1}
    assert last["peak_dbfs"] == pytest.approx(-3.0, abs=0.1)
    assert last["duration_s"] == pytest.approx(1.01, abs=0.002)
    assert result["output"] is not None
    info = sf.info(str(tmp_path / "out.flac"))
    assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)


def test_analysis_alone_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    write_audio(tone(), source)
    _, output_format, reports = apply_operations(read_audio(source), [AnalyzeOperation()])
    assert output_format is None
    assert reports[0]["op"] == "analyze"
    result = process_audio_file(source, [], tmp_path / "out.wav")
    assert result["output"] is None
    assert not (tmp_path / "out.wav").exists()


def test_audio_request_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="operations"):
        AudioRequest.model_validate({"path": "a.wav", "operations": []})
    with pytest.raises(pydantic.ValidationError, match="does not match any of the expected tags"):
        AudioRequest.model_validate({"path": "a.wav", "operations": [{"op": "reverse"}]})
    with pytest.raises(pydantic.ValidationError, match="format"):
        AudioRequest.model_validate({"path": "a.wav", "operations": [{"op": "convert"}]})
    with pytest.raises(pydantic.ValidationError, match="mode"):
        AudioRequest.model_validate(
            {"path": "a.wav", "operations": [{"op": "normalize", "mode": "lufs"}]}
        )


def test_audio_kind_is_registered() -> None:
    from worker.core import kinds

    assert kinds.model_for("audio") is AudioRequest
    assert kinds.kind_of(AudioRequest) == "audio"
