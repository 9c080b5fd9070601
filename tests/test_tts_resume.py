"""A long text resumes at the sentence where the last attempt stopped: a real piper worker
process is killed (SIGKILL) mid-text, and the retry speaks only the sentences left, into a file
identical to an uninterrupted run's. Also the parts' files on their own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.runtime_worker import runtime_config, task_state_is, wait_until
from tests.test_cli import ROOT, cli_env
from tts import TextToSpeechRequest
from tts.engines import EngineRegistry, EngineSettings, SpeechEngine
from tts.processor import register
from tts.resume import SpokenParts, speech_key
from tts.settings import TTSSettings
from tts.text import split_text
from tts.waveform import Audio
from worker import ProcessorRegistry, Task, TaskEvent, TaskItem, TaskState, Worker, WorkerQueue

pytestmark = pytest.mark.timeout(120)

PIPER = "piper.en_US-joe-medium"
SENTENCES = 16
# Sentences of 0.2 to 0.4 s of piper each: the first checkpoint (after 1 s of speaking) comes
# after 3 to 6 of them, and the test kills the worker then.
TEXT = " ".join(f"Here is sentence number {n}." for n in range(1, SENTENCES + 1))


class Counted(EngineRegistry):
    """The real engines, with a record of every text they are asked to speak."""

    def __init__(self, inner: EngineRegistry) -> None:
        super().__init__()
        self.inner = inner
        self.spoken: list[str] = []

    def resolve(self, voice_id: str) -> tuple[SpeechEngine, str]:
        engine, voice = self.inner.resolve(voice_id)
        return _Recording(engine, self.spoken), voice


class _Recording:
    def __init__(self, engine: SpeechEngine, spoken: list[str]) -> None:
        self._engine = engine
        self._spoken = spoken

    @property
    def name(self) -> str:
        return self._engine.name

    def load(self) -> None:
        self._engine.load()

    def voices(self) -> list[str]:
        return self._engine.voices()

    def synthesize(self, text: str, voice: str, speed: float) -> Audio:
        self._spoken.append(text)
        return self._engine.synthesize(text, voice, speed)


def speech_task(queue: str) -> Task:
    return Task(
        queue=queue, items=[TaskItem(request=TextToSpeechRequest(text=TEXT, voice_id=PIPER))]
    )


async def run_queue(
    queue: WorkerQueue, engines: EngineRegistry, name: str, events: list[TaskEvent]
) -> None:
    registry = ProcessorRegistry()
    register(registry, TTSSettings(), engines)
    worker = Worker(queue, registry, queues=[name], burst=True, handle_signals=False)
    worker.register_callback("task_progress", events.append)
    async with asyncio.timeout(60):
        await worker.run()


#: Piper as the worker process runs it: no noise, one thread.
DETERMINISTIC = EngineSettings(piper_noise_scale=0.0, piper_noise_w_scale=0.0, piper_threads=1)


def output_of(task: Task) -> Path:
    result: Any = task.items[0].result
    return Path(result["path"])


def start_worker(db: Path, data: Path) -> subprocess.Popen[bytes]:
    """``wq worker`` serving the ``speech`` queue: deterministic piper, two-second leases.

    One ONNX Runtime thread, as in :data:`DETERMINISTIC`: its sums depend on how many
    threads share them (``wq worker`` would give each task its share of the cores), and the
    outputs are compared byte for byte."""
    env = cli_env(
        {"QUEUE_DATA_DIR": str(data), "QUEUE_VISIBILITY_TIMEOUT": "2",
         "TTS_PIPER_NOISE_SCALE": "0", "TTS_PIPER_NOISE_W_SCALE": "0", "TTS_PIPER_THREADS": "1"}
    )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "--db", str(db), "worker", "-q", "speech",
         "--processors", "tts.processor", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def kill_at_first_checkpoint(queue: WorkerQueue, task_id: str, db: Path, data: Path) -> None:
    """Run the task in a worker process and SIGKILL it once the task has a checkpoint."""
    doomed = start_worker(db, data)
    try:

        async def checkpointed() -> bool:
            stored = await queue.get_task(task_id)
            assert stored.state is not TaskState.COMPLETED, "finished before the kill"
            return isinstance(stored.checkpoint, dict) and "data" in stored.checkpoint

        await wait_until(checkpointed, 60, "checkpointed", step=0.01)
        os.kill(doomed.pid, signal.SIGKILL)
        await asyncio.to_thread(doomed.wait, 10)
    finally:
        doomed.kill()


async def test_a_killed_long_text_resumes_at_its_checkpointed_sentence(tmp_path: Path) -> None:
    db, data = tmp_path / "queue.db", tmp_path / "data"
    sentences = split_text(TEXT)
    assert len(sentences) == SENTENCES
    config = runtime_config(db, data_dir=data, default_visibility_timeout=2.0)
    async with WorkerQueue(config) as queue:
        task = speech_task("speech")
        await queue.enqueue([task])
        await kill_at_first_checkpoint(queue, task.id, db, data)
        killed = await queue.get_task(task.id)
        assert isinstance(killed.checkpoint, dict)
        saved = killed.checkpoint["data"]
        assert isinstance(saved, dict)
        kept = saved["sentences"]
        assert isinstance(kept, int)
        assert 0 < kept < len(sentences)
        parts = data.absolute() / "outputs" / task.id / "0.parts"
        assert {f"{i}.npy" for i in range(kept)} <= {p.name for p in parts.iterdir()}

        # While the dead worker's lease runs out, an uninterrupted run of the same text.
        engines = EngineRegistry(DETERMINISTIC)
        reference = speech_task("reference")
        await queue.enqueue([reference])
        await run_queue(queue, engines, "reference", [])

        async def due_again() -> bool:  # the sweep returns the task
            await queue.retry()
            return await task_state_is(queue, task.id, TaskState.PENDING)

        await wait_until(due_again, 30, "due again")
        counted = Counted(engines)
        events: list[TaskEvent] = []
        await run_queue(queue, counted, "speech", events)
        done = await queue.get_task(task.id)
        uninterrupted = await queue.get_task(reference.id)

    assert done.state is TaskState.COMPLETED, done.last_error
    assert done.attempt_count == 2
    assert counted.spoken == sentences[kept:]  # nothing said twice
    first = events[0].progress
    assert first is not None
    assert (first.current, first.total) == (kept, len(sentences))
    assert first.message == f"{kept}/{len(sentences)} sentences, resumed at sentence {kept + 1}"
    assert uninterrupted.state is TaskState.COMPLETED, uninterrupted.last_error
    assert output_of(done).read_bytes() == output_of(uninterrupted).read_bytes()
    assert not parts.exists()  # cleaned up once the output is written


def _audio(seed: int, frames: int = 800) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio(rng.uniform(-1, 1, frames).astype(np.float32), 22_050)


def test_saved_parts_come_back_exactly_and_a_damaged_one_is_spoken_again(
    tmp_path: Path,
) -> None:
    key = speech_key(PIPER, 1.0, ["One.", "Two.", "Three.", "Four."])
    parts = [_audio(i) for i in range(4)]
    kept = SpokenParts(tmp_path / "0.parts", key)
    kept.save(parts[:2])
    kept.save(parts[:3])  # writes the third only
    data = kept.checkpoint(22_050)
    assert data == {"sentences": 3, "sample_rate": 22_050, "key": key}
    assert sorted(p.name for p in kept.folder.iterdir()) == ["0.npy", "1.npy", "2.npy"]

    again = SpokenParts(tmp_path / "0.parts", key)
    loaded = again.load(data)
    assert again.saved == 3
    for got, want in zip(loaded, parts[:3], strict=True):
        assert got.sample_rate == want.sample_rate
        assert np.array_equal(got.samples, want.samples)

    # Another text (or another split of it), a malformed checkpoint: nothing is reused.
    other = speech_key(PIPER, 1.0, ["One.", "Two.", "Three.", "Four!"])
    assert SpokenParts(tmp_path / "0.parts", other).load(data) == []
    assert SpokenParts(tmp_path / "0.parts", key).load({"sentences": "3", "key": key}) == []
    # A part that is cut short: the parts before it are reused, speaking goes on from it.
    (kept.folder / "1.npy").write_bytes((kept.folder / "1.npy").read_bytes()[:100])
    damaged = SpokenParts(tmp_path / "0.parts", key)
    assert len(damaged.load(data)) == 1
    assert damaged.saved == 1
    damaged.remove()
    assert not kept.folder.exists()
    damaged.remove()  # gone already: fine
