"""Task states and the pure transition table.

Every write that changes a task's state names an operation from :data:`TRANSITIONS`; the store
turns the table row into a compare-and-set (``WHERE id = :id AND state IN (:sources)``).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final


class TaskState(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    RETRYABLE = "retryable"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"


class Priority(IntEnum):
    """Named priorities; any int works, higher runs first."""

    LOW = -10
    NORMAL = 0
    HIGH = 10
    CRITICAL = 20


TERMINAL_STATES: Final = frozenset({TaskState.COMPLETED, TaskState.DISCARDED, TaskState.CANCELLED})

# operation -> (states it accepts, state it produces)
TRANSITIONS: Final[dict[str, tuple[tuple[TaskState, ...], TaskState]]] = {
    "claim": ((TaskState.PENDING,), TaskState.PROCESSING),
    "complete": ((TaskState.PROCESSING,), TaskState.COMPLETED),
    "retry": ((TaskState.PROCESSING,), TaskState.RETRYABLE),
    "expire": ((TaskState.PROCESSING,), TaskState.RETRYABLE),
    "discard": ((TaskState.PROCESSING,), TaskState.DISCARDED),
    "cancel": ((TaskState.PENDING, TaskState.RETRYABLE), TaskState.CANCELLED),
    "resume": ((TaskState.DISCARDED,), TaskState.PENDING),
    "requeue": ((TaskState.RETRYABLE,), TaskState.PENDING),
    "exhaust": ((TaskState.RETRYABLE,), TaskState.DISCARDED),
    "extend_lease": ((TaskState.PROCESSING,), TaskState.PROCESSING),
    # The runtime's moves.
    "request_cancel": ((TaskState.PROCESSING,), TaskState.PROCESSING),
    "cancel_running": ((TaskState.PROCESSING,), TaskState.CANCELLED),
    "release": ((TaskState.PROCESSING,), TaskState.PENDING),
    "hold": ((TaskState.PENDING,), TaskState.PENDING),
    "unhold": ((TaskState.PENDING,), TaskState.PENDING),
    "run_now": ((TaskState.PENDING,), TaskState.PENDING),
    "progress": ((TaskState.PROCESSING,), TaskState.PROCESSING),
}


def sources(operation: str) -> tuple[TaskState, ...]:
    """The states ``operation`` accepts."""
    return TRANSITIONS[operation][0]


def target(operation: str) -> TaskState:
    """The state ``operation`` produces."""
    return TRANSITIONS[operation][1]


def allowed(operation: str, state: TaskState) -> bool:
    return state in TRANSITIONS[operation][0]
