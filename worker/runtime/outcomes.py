"""What a handler's ending means: a result, a retry, a failure, or a permanent error.

``Retry`` and ``PermanentError`` are control-flow exceptions that handlers raise; like
``asyncio.CancelledError`` they are not errors of the queue, so they sit outside the
:class:`~worker.core.errors.QueueError` root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError


class Retry(Exception):
    """Raised by a handler: try this task again after ``delay`` seconds (None: the backoff)."""

    def __init__(self, delay: float | None = None, reason: str | None = None) -> None:
        if delay is not None and delay < 0:
            raise ValueError(f"Retry delay must be >= 0, got {delay}")
        self.delay = delay
        self.reason = reason
        super().__init__(reason or ("retry requested" + (f" in {delay} s" if delay else "")))


class PermanentError(Exception):
    """Raised by a handler: this task cannot succeed; discard it without more attempts."""


#: Exceptions that end a task at once: retrying cannot help.
PERMANENT = (PermanentError, FileNotFoundError, ValidationError)

Verdict = Literal["retry", "discard"]


@dataclass(frozen=True, slots=True)
class Judgement:
    """How a failed attempt ends: ``retry`` (with an optional delay) or ``discard``."""

    verdict: Verdict
    error: str
    delay_s: float | None = None


def describe(exc: BaseException) -> str:
    """``TypeName: message`` (just the type name when the message is empty)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def judge(exc: Exception | SystemExit | KeyboardInterrupt) -> Judgement:
    """Classify an exception a handler raised (pure)."""
    if isinstance(exc, Retry):
        return Judgement("retry", describe(exc), exc.delay)
    if isinstance(exc, PERMANENT):
        return Judgement("discard", describe(exc))
    return Judgement("retry", describe(exc))
