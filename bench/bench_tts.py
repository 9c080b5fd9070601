"""Speech and audio through the queue, against the same work done directly.

    .venv/bin/python bench/bench_tts.py [--runs N] [--quick] [--only speech|audio] [--json PATH]

1. Real-time factor (processing seconds per second of audio) of Piper synthesis, sentence by
   sentence into WAV files: called directly, and through the queue (enqueue, a Worker with
   concurrency 1 running the ``tts`` processor, acknowledgements). Both use one engine, loaded
   before timing. The queue's overhead per task is the difference. Synthesis itself varies
   from run to run by more than that difference on a busy machine, so the time spent inside
   the engine's ``synthesize`` is also clocked in both, and the overhead outside it (queued
   time less synthesis, less the same for the direct run) is printed beside: the queue's own
   milliseconds, whatever the synthesis did meanwhile.
2. ``analyze`` over a few hundred short generated WAV files: directly, and as ``audio`` tasks
   through a Worker (concurrency 4).

Each figure is the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tts.audio import write_audio
from tts.audio_ops import process_audio_file
from tts.engines.registry import EngineRegistry
from tts.processor import SENTENCE_GAP_S, register
from tts.requests import AnalyzeOperation, AudioRequest, TextToSpeechRequest
from tts.settings import TTSSettings
from tts.text import split_text
from tts.waveform import Audio, concatenate
from worker import ProcessorRegistry, QueueConfig, Task, TaskItem, Worker, WorkerQueue

VOICE = "piper.en_US-joe-medium"
TEXTS = [
    "The queue keeps every task in a database row. Nothing is lost when a worker dies.",
    "Speech synthesis runs off the event loop, one sentence at a time, with progress.",
    "A retried task does not redo the items it already finished. Leases are renewed.",
    "Results are written under the data directory, then posted to a webhook if asked.",
]


class SynthesisClock:
    """Seconds spent inside one engine's ``synthesize``, in whatever thread calls it."""

    def __init__(self, engines: EngineRegistry) -> None:
        engine, _ = engines.resolve(VOICE)
        synthesize = engine.synthesize
        self.seconds = 0.0

        def timed(text: str, voice: str, speed: float) -> Audio:
            started = time.perf_counter()
            try:
                return synthesize(text, voice, speed)
            finally:
                self.seconds += time.perf_counter() - started

        engine.synthesize = timed  # type: ignore[method-assign]

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def direct_speech(engines: EngineRegistry, texts: list[str], out: Path) -> tuple[float, float]:
    """Seconds spent, seconds of audio made."""
    engine, voice = engines.resolve(VOICE)
    started = time.perf_counter()
    audio_s = 0.0
    for index, text in enumerate(texts):
        parts = [engine.synthesize(piece, voice, 1.0) for piece in split_text(text)]
        record = write_audio(concatenate(parts, SENTENCE_GAP_S), out / f"{index}.wav", "wav")
        audio_s += record["duration_s"]
    return time.perf_counter() - started, audio_s


async def queued(
    db: Path, processors: ProcessorRegistry, tasks: list[Task], concurrency: int
) -> tuple[float, list[Any]]:
    """Seconds from enqueue to the last acknowledgement; the results."""
    config = QueueConfig(
        database_url=f"sqlite+aiosqlite:///{db}",
        data_dir=db.parent / "data",
        concurrency=concurrency,
    )
    async with WorkerQueue(config) as queue:
        started = time.perf_counter()
        await queue.enqueue(tasks)
        worker = Worker(queue, processors, burst=True, handle_signals=False)
        counts = await worker.run()
        elapsed = time.perf_counter() - started
        if counts.get("completed") != len(tasks):
            raise RuntimeError(f"not every task completed: {counts}")
        results = [(await queue.get_task(t.id)).items[0].result for t in tasks]
    return elapsed, results


def speech_tasks(texts: list[str]) -> list[Task]:
    return [
        Task(items=[TaskItem(request=TextToSpeechRequest(text=t, voice_id=VOICE))]) for t in texts
    ]


def tones(directory: Path, count: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rate = 16_000
    t = np.arange(int(0.5 * rate)) / rate
    paths = []
    for index in range(count):
        samples = (0.3 * np.sin(2 * np.pi * (220 + index) * t)).astype(np.float32)
        path = directory / f"tone-{index}.wav"
        write_audio(Audio(samples, rate), path, "wav")
        paths.append(path)
    return paths


def speech_figures(
    root: Path, engines: EngineRegistry, processors: ProcessorRegistry, texts: list[str], runs: int
) -> dict[str, float]:
    clock = SynthesisClock(engines)
    rtf_direct, rtf_queued, overheads, outside, slower = [], [], [], [], []
    for run in range(runs):
        out = root / f"direct-{run}"
        out.mkdir()
        clock.take()
        spent, audio_s = direct_speech(engines, texts, out)
        synth_direct = clock.take()
        elapsed, results = asyncio.run(
            queued(root / f"speech-{run}.db", processors, speech_tasks(texts), 1)
        )
        synth_queued = clock.take()
        queued_audio_s = sum(float(r["duration_s"]) for r in results)
        rtf_direct.append(spent / audio_s)
        rtf_queued.append(elapsed / queued_audio_s)
        overheads.append((elapsed - spent) / len(texts) * 1000)
        beside = (elapsed - synth_queued) - (spent - synth_direct)
        outside.append(beside / len(texts) * 1000)
        slower.append(synth_queued / synth_direct - 1)
    figures = {
        "rtf_direct": statistics.median(rtf_direct),
        "rtf_queued": statistics.median(rtf_queued),
        "overhead_ms_per_task": statistics.median(overheads),
        "outside_synthesis_ms_per_task": statistics.median(outside),
    }
    share = figures["rtf_queued"] / figures["rtf_direct"] - 1
    figures["overhead_share"] = share
    per_task_s = statistics.median(rtf_direct) * queued_audio_s / len(texts)
    outside_share = figures["outside_synthesis_ms_per_task"] / 1000 / per_task_s
    figures["outside_synthesis_share"] = outside_share
    print(f"  real-time factor, direct:  {' / '.join(f'{r:.3f}' for r in rtf_direct)}"
          f" -> median {figures['rtf_direct']:.3f}")  # fmt: skip
    print(f"  real-time factor, queued:  {' / '.join(f'{r:.3f}' for r in rtf_queued)}"
          f" -> median {figures['rtf_queued']:.3f}")  # fmt: skip
    print(f"  queue overhead: {figures['overhead_ms_per_task']:.1f} ms per task, "
          f"{share:+.1%} of the synthesis time (aim: a few percent at most)")  # fmt: skip
    print(f"  outside synthesis, queued less direct: {' / '.join(f'{o:.1f}' for o in outside)}"
          f" -> median {figures['outside_synthesis_ms_per_task']:.1f} ms per task "
          f"({outside_share:+.1%}); synthesis itself, queued vs direct: "
          f"{' / '.join(f'{x:+.0%}' for x in slower)}")  # fmt: skip
    return figures


def analyze_figures(
    root: Path, processors: ProcessorRegistry, files: int, runs: int
) -> dict[str, float]:
    paths = tones(root / "tones", files)
    analyze = [AnalyzeOperation()]
    direct_rates, queued_rates = [], []
    for run in range(runs):
        started = time.perf_counter()
        for path in paths:
            process_audio_file(path, analyze, root / "unused.wav")
        direct_rates.append(files / (time.perf_counter() - started))
        tasks = [
            Task(items=[TaskItem(request=AudioRequest(path=str(p), operations=analyze))])
            for p in paths
        ]
        elapsed, _ = asyncio.run(queued(root / f"audio-{run}.db", processors, tasks, 4))
        queued_rates.append(files / elapsed)
    figures = {
        "analyze_direct_per_s": statistics.median(direct_rates),
        "analyze_queued_per_s": statistics.median(queued_rates),
    }
    print(f"  analyze, direct: {' / '.join(f'{r:,.0f}' for r in direct_rates)}"
          f" -> median {figures['analyze_direct_per_s']:,.0f} files/s")  # fmt: skip
    print(f"  analyze, queued: {' / '.join(f'{r:,.0f}' for r in queued_rates)}"
          f" -> median {figures['analyze_queued_per_s']:,.0f} files/s")  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["speech", "audio"], help="run one of the two")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    texts = TEXTS * (1 if args.quick else 3)
    files = 50 if args.quick else 300
    root = Path(tempfile.mkdtemp(prefix="bench-tts-"))
    settings = TTSSettings(piper_noise_scale=0.0, piper_noise_w_scale=0.0)
    engines = EngineRegistry(settings.engine_settings())
    engines.resolve(VOICE)  # load the model before any timing
    processors = ProcessorRegistry(builtins=False, entry_points=False)
    register(processors, settings, engines)
    print(f"== {len(texts)} texts with {VOICE}; analyze over {files} files of 0.5 s; "
          f"cpus {os.cpu_count()}, load {os.getloadavg()} ==")  # fmt: skip
    try:
        figures: dict[str, float] = {}
        if args.only in (None, "speech"):
            figures |= speech_figures(root, engines, processors, texts, args.runs)
        if args.only in (None, "audio"):
            figures |= analyze_figures(root, processors, files, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
