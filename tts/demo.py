"""``python -m tts.demo`` (``make demo``): speech and audio jobs end to end, on one SQLite file.

It enqueues a few speech tasks (a piper voice and an eSpeak NG voice, a long text spoken sentence
by sentence, one FLAC output) and one audio job (analyze, normalize and convert a WAV it first
writes under the data directory), runs a worker in burst mode until they are done while showing
each task's progress, then prints where the audio files are and the queue's statistics.

Exit status: 0 only if every task it enqueued completed. The tasks go to their own queue,
``demo``, so tasks left in the database by something else are not touched.

Settings are read once, here: ``QUEUE_*`` for the queue (``QUEUE_DATABASE_URL`` defaults to
``data/queue.db``, ``QUEUE_DATA_DIR`` for where the audio files go) and ``TTS_*`` for the
engines (see :mod:`tts.settings`). It needs the ``piper``, ``espeak`` and ``audio`` extras.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tts.audio import write_audio
from tts.demo_view import Board
from tts.processor import register
from tts.requests import (
    AnalyzeOperation,
    AudioRequest,
    ConvertOperation,
    NormalizeOperation,
    TextToSpeechRequest,
)
from tts.settings import TTSSettings
from tts.waveform import Audio
from worker import (
    ConfigurationError,
    ProcessorRegistry,
    QueueConfig,
    Task,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
)

QUEUE = "demo"
POLL_S = 0.2

LONG_TEXT = (
    "A durable task queue keeps every job in a database row. "
    "When a worker crashes, its lease runs out and another worker picks the job up. "
    "Long texts like this one are split at sentence boundaries. "
    "Each sentence is synthesized on its own, off the event loop. "
    "After every sentence the worker reports its progress. "
    "That is what moves the progress bar you are watching."
)


def write_tone(path: Path) -> Path:
    """Two seconds of a quiet chord (440 and 660 Hz, peak about -14 dBFS) as a 44.1 kHz WAV."""
    rate = 44_100
    t = np.arange(2 * rate, dtype=np.float64) / rate
    chord = 0.1 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 660.0 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(Audio(chord.astype(np.float32), rate), path)
    return path


def speech(name: str, text: str, voice_id: str, **options: Any) -> Task:
    request = TextToSpeechRequest(text=text, voice_id=voice_id, **options)
    return Task(name=name, queue=QUEUE, items=[TaskItem(request=request)])


def demo_tasks(tone: Path) -> list[Task]:
    audio = AudioRequest(
        path=str(tone),
        operations=[
            AnalyzeOperation(),
            NormalizeOperation(mode="peak", target_dbfs=-1.0),
            ConvertOperation(format="ogg", sample_rate=22_050),
            AnalyzeOperation(),
        ],
    )
    return [
        speech(
            "piper-hello",
            "Hello! This is Joe, a piper voice, speaking from a durable task queue.",
            "piper.en_US-joe-medium",
        ),
        speech(
            "espeak-hello",
            "And this is eSpeak N G, a small synthesizer that speaks a hundred languages.",
            "espeak.en-us",
        ),
        speech("long-text", LONG_TEXT, "piper.en_US-joe-medium"),
        speech(
            "flac-output",
            "This sentence is stored as a FLAC file at sixteen kilohertz.",
            "espeak.en-us",
            output_format="flac",
            sample_rate=16_000,
        ),
        Task(name="audio-job", queue=QUEUE, items=[TaskItem(request=audio)]),
    ]


async def run_demo(config: QueueConfig, settings: TTSSettings, console: Console) -> int:
    registry = ProcessorRegistry()
    register(registry, settings)
    tone = write_tone(config.data_dir / "demo" / "tone.wav")
    async with WorkerQueue(config) as queue:
        tasks = demo_tasks(tone)
        await queue.enqueue(tasks)
        console.print(
            f"enqueued {len(tasks)} tasks into {config.database_url} (queue {QUEUE!r})",
            highlight=False,
        )
        worker = Worker(queue, registry, queues=[QUEUE], burst=True)
        with Board(console) as board:
            running = asyncio.create_task(worker.run())
            while not running.done():
                board.update([await queue.get_task(t.id) for t in tasks])
                await asyncio.wait({running}, timeout=POLL_S)
            await running  # a crash of the worker itself is raised here
            final = [await queue.get_task(t.id) for t in tasks]
            board.update(final)
            board.finish(final)
        print_outputs(console, final)
        print_statistics(console, await queue.get_statistics())
    failed = [t for t in final if t.state is not TaskState.COMPLETED]
    for task in failed:
        console.print(f"{task.name}: {task.state.value}: {task.last_error}", markup=False)
    return 1 if failed else 0


def print_outputs(console: Console, tasks: list[Task]) -> None:
    console.print("\naudio files:")
    for task in tasks:
        for item in task.items:
            result: Any = item.result
            if not isinstance(result, dict):
                continue
            record = result.get("output", result)
            if not record:
                continue
            console.print(
                f"  {task.name:<13} {_shown(record['path'])}  ({record['format']}, "
                f"{record['sample_rate']} Hz, {record['duration_s']:.2f} s, "
                f"{record['size_bytes'] / 1000:.1f} kB)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def print_statistics(console: Console, stats: dict[str, Any]) -> None:
    states = ", ".join(f"{k} {v}" for k, v in stats["states"].items() if v)
    console.print(f"\nqueue statistics (whole database; figures over the last "
                  f"{stats['window_s']:g} s):", highlight=False)  # fmt: skip
    lines = {
        "tasks": states or "none",
        # The rate is over the whole window: a demo that ran for seconds reads low by it.
        "completed": f"{stats['completed']} in the last {stats['window_s']:g} s "
        f"({stats['throughput_per_s']:.3f} tasks/s over the window)",
        "processing time": f"avg {_seconds(stats['avg_processing_s'])}, "
        f"p95 {_seconds(stats['p95_processing_s'])}",
        "success rate": "n/a" if stats["success_rate"] is None else f"{stats['success_rate']:.0%}",
        "retries": str(stats["retries"]),
        "workers alive": str(stats["workers_alive"]),
    }
    for label, value in lines.items():
        console.print(f"  {label:<16} {value}", markup=False, highlight=False)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _shown(path: str) -> str:
    """``path`` relative to the current directory when it is below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = QueueConfig.from_env()
    except ConfigurationError as exc:  # one line per bad variable, no traceback
        for line in str(exc).splitlines():
            print(f"demo: error: invalid configuration: {line}", file=sys.stderr)
        return 2
    settings = TTSSettings.from_env()
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=120)  # a log file: no need to squeeze into 80 columns
    return asyncio.run(run_demo(config, settings, console))


if __name__ == "__main__":
    sys.exit(main())
