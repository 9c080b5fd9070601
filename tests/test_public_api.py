"""The public surface is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint, EntryPoints

import pytest

import tts
import worker
from worker.core import kinds


def test_worker_exports() -> None:
    assert len(worker.__all__) == len(set(worker.__all__))
    assert set(worker.__all__) == {
        "TERMINAL_STATES",
        "AttemptError",
        "CallRequest",
        "CallbackState",
        "CommandRequest",
        "Completion",
        "ConfigurationError",
        "DatabaseLostError",
        "DatabaseNotFoundError",
        "DuplicateTaskError",
        "Failure",
        "InvalidInputError",
        "InvalidStateTransitionError",
        "InvalidTaskError",
        "LeaseLostError",
        "Priority",
        "QueueClosedError",
        "QueueConfig",
        "QueueError",
        "Schedule",
        "ScheduleNotFoundError",
        "ScheduleTaskOptions",
        "ScheduleTiming",
        "SchemaMismatchError",
        "SchemaOutdatedError",
        "StorageError",
        "Task",
        "TaskCallback",
        "TaskItem",
        "TaskNotFoundError",
        "TaskState",
        "UnknownRequestKindError",
        "UnloadedRequest",
        "WorkerQueue",
        "register_request_kind",
        "retry_delay_s",
        "Heartbeat",
        "PermanentError",
        "ProcessorRegistry",
        "Progress",
        "Resources",
        "Retry",
        "RetryPolicy",
        "TaskContext",
        "TaskEvent",
        "Worker",
        "processor",
        "retry_sweeper",
        "run_workers",
        "worker_loop",
        "in_thread",
        "Interrupted",
        # Producers: one call per request, task functions, the synchronous client.
        "ConfiguredTask",
        "Jobs",
        "QueueFullError",
        "SubmitOptions",
        "SyncQueue",
        "TaskFunction",
        "TaskOptions",
        "default_jobs",
        "task",
    }
    for name in worker.__all__:
        assert hasattr(worker, name)  # each loads on first use (PEP 562)
    assert set(dir(worker)) >= set(worker.__all__)


def test_every_error_has_one_root() -> None:
    control_flow = {"AttemptError", "PermanentError"}
    errors = [
        getattr(worker, n) for n in worker.__all__ if n.endswith("Error") and n not in control_flow
    ]
    assert all(issubclass(e, worker.QueueError) for e in errors)
    # What handlers raise to steer the runtime is not an error of the queue.
    assert not issubclass(worker.PermanentError, worker.QueueError)
    assert not issubclass(worker.Retry, worker.QueueError)
    assert issubclass(worker.LeaseLostError, worker.InvalidStateTransitionError)


def test_tts_exports_and_kind_is_found_through_the_entry_point() -> None:
    assert set(tts.__all__) == {"OutputFormat", "TextToSpeechRequest"}
    kinds.remove_request_kind("tts")  # as in a process that never imported tts
    assert kinds.model_for("tts") is tts.TextToSpeechRequest


def test_a_kind_found_by_name_loads_only_its_own_module() -> None:
    """A read of speech tasks (``wq list``) imports the speech requests, not the Django or
    builtin ones; a kind no entry point names still lists every kind in its error."""
    code = """
import sys
from worker.core import kinds
kinds.model_for("tts")
print("django" if "worker.integrations.django.requests" in sys.modules else "-")
try:
    kinds.model_for("nope")
except Exception as error:
    print(error)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    first, error = done.stdout.splitlines()
    assert first == "-"
    assert "unknown request kind 'nope'" in error
    assert "audio, call, command, django_task, tts" in error


def test_a_broken_kind_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A miss by name loads that entry point, then all of them for the error's list: the
    broken one was imported, and logged, twice."""
    broken = EntryPoints(
        [EntryPoint("broken", "tests.no_such_module:Model", kinds.ENTRY_POINT_GROUP)]
    )
    monkeypatch.setattr(kinds, "entry_points", lambda group: broken)
    registry = kinds.KindRegistry()
    with pytest.raises(worker.UnknownRequestKindError, match="unknown request kind 'broken'"):
        registry.model_for("broken")
    logged = [r for r in caplog.records if "could not be loaded" in r.getMessage()]
    assert len(logged) == 1, logged
