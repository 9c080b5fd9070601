"""Shared test helpers: a fake clock and task builders (no fake database: tests use real files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tts import TextToSpeechRequest
from worker import Task, TaskItem

START = 1_800_000_000.0


@dataclass
class FakeClock:
    """A clock the test moves by hand; ``WorkerQueue(clock=...)`` reads it."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_task(text: str = "Hello, world!", **fields: Any) -> Task:
    item = TaskItem(
        request=TextToSpeechRequest(text=text, voice_id="kokoro.af_heart"),
        response_url="https://example.com/callback",
    )
    return Task(items=[item], **fields)


def sqlite_url(path: object) -> str:
    return f"sqlite+aiosqlite:///{path}"
