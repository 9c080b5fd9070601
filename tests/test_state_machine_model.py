"""Stateful test: ``WorkerQueue``'s task state machine against a small pure-Python model.

Hypothesis drives random sequences of enqueue, dequeue, acknowledgements (with the current
lease, a stale lease, a foreign lease or none), cancel (of a waiting task, or a cancel request
to a running one), resume, lease renewal, clock moves and the retry sweep against a real
SQLite file and a fake clock. After every step the queue must agree with the model: which
operations succeed, which error each refusal raises, and every task's state, counters, lease,
schedule and finish time.

The model is written from the queue's documented behaviour, not from ``worker.core.states``, so a
wrong row in the transition table shows up as a disagreement.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import pytest
from hypothesis import Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.support import FakeClock, make_task, sqlite_url
from worker import (
    InvalidStateTransitionError,
    LeaseLostError,
    QueueConfig,
    QueueError,
    Task,
    TaskNotFoundError,
    TaskState,
    WorkerQueue,
)
from worker.core.ids import new_id

T = TypeVar("T")

# A pass takes about 15 s; shrinking a failure can take minutes, and pytest-timeout firing
# in the middle of it would leave Hypothesis a broken event loop instead of a minimal example.
pytestmark = pytest.mark.timeout(900)

VISIBILITY_TIMEOUT: Final = 30.0
BASE_DELAY: Final = 10.0
MULTIPLIER: Final = 2.0
MAX_DELAY: Final = 100.0
DEFAULT_MAX_ATTEMPTS: Final = 3
JITTER: Final = 0.1
SWEEP_SIZE: Final = 100
#: Stay below the sweep size, so one sweep handles every candidate (no ordering by limit).
MAX_TASKS: Final = 90
EXPIRED_ERROR: Final = "visibility timeout expired"
#: Slack for float comparisons of jittered schedules (times are around 1.8e9 s).
EPSILON: Final = 1e-6
#: No queue call takes anywhere near this long; one that does fails the example, not the run.
CALL_TIMEOUT_S: Final = 20.0
#: Stands for "an id no task has" among the drawn states.
UNKNOWN: Final = "unknown"

PENDING: Final = TaskState.PENDING
PROCESSING: Final = TaskState.PROCESSING
COMPLETED: Final = TaskState.COMPLETED
RETRYABLE: Final = TaskState.RETRYABLE
DISCARDED: Final = TaskState.DISCARDED
CANCELLED: Final = TaskState.CANCELLED
TERMINAL: Final = frozenset({COMPLETED, DISCARDED, CANCELLED})

Operation = Literal["complete", "retry", "discard", "cancel", "resume", "extend_lease"]

#: The model's own transition table: the states each operation accepts.
ACCEPTS: Final[dict[Operation, frozenset[TaskState]]] = {
    "complete": frozenset({PROCESSING}),
    "retry": frozenset({PROCESSING}),
    "discard": frozenset({PROCESSING}),
    "cancel": frozenset({PENDING, RETRYABLE, PROCESSING}),
    "resume": frozenset({DISCARDED}),
    "extend_lease": frozenset({PROCESSING}),
}

#: The operations a lease fences.
LEASED_OPERATIONS: Final[tuple[Operation, ...]] = ("complete", "retry", "discard", "extend_lease")
OPERATIONS: Final[tuple[Operation, ...]] = (*LEASED_OPERATIONS, "cancel", "resume")


@dataclass(frozen=True)
class TaskSpec:
    """How one enqueued task differs from the defaults."""

    priority: int
    schedule_offset: float | None  # None: due at enqueue time
    max_attempts: int | None
    visibility_timeout: float | None


@dataclass
class ModelTask:
    id: str
    priority: int
    schedule_at: float
    max_attempts: int | None
    visibility_timeout: float | None
    state: TaskState = PENDING
    attempt_count: int = 0
    expired_count: int = 0
    #: Every lease a claim gave this task, oldest first.
    leases: list[str] = field(default_factory=list)
    #: The lease the queue honours: the last claim's, until the sweep expires it (then None).
    lease_id: str | None = None
    lease_expires_at: float | None = None
    retry_delay: float | None = None
    last_error: str | None = None
    errors: list[tuple[int, str, bool]] = field(default_factory=list)
    finished_at: float | None = None
    #: A cancel was asked for while it ran: its expiry ends it CANCELLED, not RETRYABLE.
    #: A claim clears it: the request was for the run it was made during.
    cancel_requested: bool = False


def predict(
    task: ModelTask | None, operation: Operation, lease_id: str | None
) -> type[QueueError] | None:
    """The error ``operation`` must raise on ``task`` (None: it must succeed)."""
    if task is None:
        return TaskNotFoundError
    if lease_id is not None and lease_id != task.lease_id:
        return LeaseLostError
    if task.state not in ACCEPTS[operation]:
        return InvalidStateTransitionError
    return None


def backoff_bounds(attempt_count: int) -> tuple[float, float]:
    """The delay range the sweep may pick after attempt ``attempt_count`` (jitter included)."""
    delay = min(MAX_DELAY, BASE_DELAY * MULTIPLIER ** (max(attempt_count, 1) - 1))
    return delay, min(MAX_DELAY, delay * (1 + JITTER))


task_specs = st.builds(
    TaskSpec,
    priority=st.sampled_from([-10, 0, 0, 10]),
    schedule_offset=st.none() | st.integers(-20, 60).map(float),
    max_attempts=st.sampled_from([None, 1, 2, 4]),
    visibility_timeout=st.none() | st.sampled_from([5.0, 45.0]),
)
delays = st.none() | st.sampled_from([0.0, 2.5, 15.0, 120.0])
extensions = st.none() | st.sampled_from([1.0, 20.0, 90.0])


@functools.cache
def migrated_database() -> Path:
    """A database file at the newest schema, made once per process and copied per example.

    Copying it (about 10 ms) instead of running the migrations (about 70 ms) for every
    example keeps the run, and above all the shrinking of a failure, short.
    """
    directory = Path(tempfile.mkdtemp(prefix="queue-model-template-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "queue.db"

    async def migrate() -> None:
        queue = WorkerQueue(QueueConfig(database_url=sqlite_url(path)))
        await queue.initialize()
        await queue.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(migrate())
    finally:
        loop.close()
    return path


class QueueStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="queue-model-"))
        database = self.directory / "queue.db"
        shutil.copyfile(migrated_database(), database)
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        config = QueueConfig(
            database_url=sqlite_url(database),
            default_visibility_timeout=VISIBILITY_TIMEOUT,
            retry_base_delay=BASE_DELAY,
            retry_backoff_multiplier=MULTIPLIER,
            max_retry_delay=MAX_DELAY,
            default_max_attempts=DEFAULT_MAX_ATTEMPTS,
        )
        self.queue = WorkerQueue(config, worker_id="w", clock=self.clock)
        self.model: dict[str, ModelTask] = {}
        #: Each task's model as last compared with get_task (its repr).
        self.last_checked: dict[str, str] = {}
        try:
            self.loop.run_until_complete(self.queue.initialize())
        except BaseException:
            self._release()
            raise

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.queue.close())
        finally:
            self._release()

    def _release(self) -> None:
        try:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, CALL_TIMEOUT_S))

    def outcome(self, coroutine: Coroutine[Any, Any, T]) -> T | QueueError:
        """Run ``coroutine``; its result, or the queue error it raised."""
        try:
            return self.run(coroutine)
        except QueueError as error:
            return error

    def attempt(
        self,
        operation: str,
        coroutine: Coroutine[Any, Any, object],
        expected: type[QueueError] | None,
        task: ModelTask | None,
    ) -> bool:
        """Run ``coroutine``; it must raise exactly ``expected`` (or succeed when None)."""
        return self.check_outcome(operation, self.outcome(coroutine), expected, task)

    @staticmethod
    def check_outcome(
        operation: str, result: object, expected: type[QueueError] | None, task: ModelTask | None
    ) -> bool:
        """Whether the operation succeeded, after checking that the model predicted it."""
        event(f"{operation}: {'ok' if expected is None else expected.__name__}")
        if not isinstance(result, QueueError):
            assert expected is None, f"expected {expected.__name__}, the operation succeeded"
            return True
        error = result
        assert expected is not None, f"unexpected {type(error).__name__}: {error}"
        assert type(error) is expected, (
            f"expected {expected.__name__}, got {type(error).__name__}: {error}"
        )
        if isinstance(error, InvalidStateTransitionError):
            assert task is not None
            assert error.state == task.state.value, (error.state, task.state)
        return False

    def tasks_in(self, *states: TaskState) -> list[ModelTask]:
        return [t for _, t in sorted(self.model.items()) if t.state in states]

    def all_leases(self) -> list[str]:
        """Every lease ever given, by task and claim (not by value: leases are random, and a
        draw from them must pick the same claim when Hypothesis replays the example)."""
        return [lease for task in self.tasks_in(*TaskState) for lease in task.leases]

    def has_processing(self) -> bool:
        return bool(self.tasks_in(PROCESSING))

    def has_tasks(self) -> bool:
        return bool(self.model)

    def has_stale_lease(self) -> bool:
        return any(len(t.leases) >= 2 for t in self.model.values())

    def has_discarded(self) -> bool:
        return bool(self.tasks_in(DISCARDED))

    def draw_task(self, data: st.DataObject, pool: list[ModelTask] | None = None) -> ModelTask:
        pool = pool if pool is not None else self.tasks_in(*TaskState)
        return data.draw(st.sampled_from(pool), label="task")

    # -- producing and claiming ----------------------------------------------------------

    @initialize(specs=st.lists(task_specs, min_size=1, max_size=6), claim=st.integers(0, 4))
    def start_with_tasks(self, specs: list[TaskSpec], claim: int) -> None:
        """Start with a few tasks, some of them claimed, so every rule has work early on."""
        self.enqueue(specs)
        if claim:
            self.dequeue(claim)

    @precondition(lambda self: len(self.model) <= MAX_TASKS - 3)
    @rule(specs=st.lists(task_specs, min_size=1, max_size=3))
    def enqueue(self, specs: list[TaskSpec]) -> None:
        now = self.clock.now
        new = [
            make_task(
                priority=spec.priority,
                schedule_at=0.0 if spec.schedule_offset is None else now + spec.schedule_offset,
                max_attempts=spec.max_attempts,
                visibility_timeout=spec.visibility_timeout,
            )
            for spec in specs
        ]
        assert self.run(self.queue.enqueue(new)) == len(new)
        ids = [task.id for task in new]
        # ULIDs are monotonic: id order is enqueue order, which the claim's tie-break relies on.
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        assert all(task_id > known for task_id in ids for known in self.model)
        for task, spec in zip(new, specs, strict=True):
            self.model[task.id] = ModelTask(
                id=task.id,
                priority=spec.priority,
                schedule_at=now if spec.schedule_offset is None else now + spec.schedule_offset,
                max_attempts=spec.max_attempts,
                visibility_timeout=spec.visibility_timeout,
            )

    @rule(size=st.integers(1, 4))
    def dequeue(self, size: int) -> None:
        now = self.clock.now
        due = [t for t in self.tasks_in(PENDING) if t.schedule_at <= now]
        due.sort(key=lambda t: (-t.priority, t.id))
        chosen = due[:size]
        before = set(self.all_leases())
        claimed = self.run(self.queue.dequeue(size=size))
        assert [t.id for t in claimed] == [t.id for t in chosen]
        event(f"dequeue: claimed {min(len(claimed), 2)}{'+' if len(claimed) >= 2 else ''}")
        for got, want in zip(claimed, chosen, strict=True):
            assert got.lease_id is not None
            assert got.lease_id not in before, "a claim reused a lease"
            want.state = PROCESSING
            want.cancel_requested = False  # a claim starts a new run: old requests are void
            want.attempt_count += 1
            want.leases.append(got.lease_id)
            want.lease_id = got.lease_id
            timeout = want.visibility_timeout or VISIBILITY_TIMEOUT
            want.lease_expires_at = now + timeout
            assert got.state is PROCESSING
            assert got.attempt_count == want.attempt_count
            assert got.lease_expires_at == want.lease_expires_at
            assert got.worker_id == "w"
            assert got.started_at == now
        assert len({t.lease_id for t in claimed}) == len(claimed)

    @rule(seconds=st.integers(0, 60))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(float(seconds))

    # -- acknowledgements ----------------------------------------------------------------

    def act(
        self,
        operation: Operation,
        task_id: str,
        lease_id: str | None = None,
        delay_s: float | None = None,
        seconds: float | None = None,
    ) -> None:
        """Run ``operation`` on ``task_id``, check the model's prediction, update the model."""
        task = self.model.get(task_id)
        expected = predict(task, operation, lease_id)
        result = self.outcome(self.call(operation, task_id, lease_id, delay_s, seconds))
        if not self.check_outcome(operation, result, expected, task):
            return
        assert task is not None
        now = self.clock.now
        if operation == "extend_lease":
            length = seconds if seconds is not None else task.visibility_timeout
            task.lease_expires_at = now + (length or VISIBILITY_TIMEOUT)
            assert result == task.lease_expires_at
            return
        if operation == "cancel":
            if task.state is PROCESSING:  # its worker is asked to stop it
                assert result is PROCESSING
                task.cancel_requested = True
                return
            assert result is CANCELLED
        else:
            assert result is None
        task.lease_expires_at = None
        if operation == "complete":
            task.state = COMPLETED
            task.finished_at = now
        elif operation in ("retry", "discard"):
            task.state = RETRYABLE if operation == "retry" else DISCARDED
            error = "err" if operation == "retry" else "bad"
            task.last_error = error
            task.errors.append((task.attempt_count, error, False))
            if operation == "retry" and task.cancel_requested:
                task.state = CANCELLED  # a run asked to stop is not retried
                task.finished_at = now
            elif operation == "retry":
                task.retry_delay = delay_s
            else:
                task.finished_at = now
        elif operation == "cancel":
            task.state = CANCELLED
            task.finished_at = now
        else:  # resume: due now, with at least one attempt left
            task.state = PENDING
            task.schedule_at = now
            limit = task.max_attempts if task.max_attempts is not None else DEFAULT_MAX_ATTEMPTS
            task.max_attempts = max(limit, task.attempt_count + 1)
            task.finished_at = None
            task.retry_delay = None

    def call(
        self,
        operation: Operation,
        task_id: str,
        lease_id: str | None,
        delay_s: float | None,
        seconds: float | None,
    ) -> Coroutine[Any, Any, float | TaskState | None]:
        """The queue call that performs ``operation``."""
        if operation == "complete":
            return self.queue.mark_as_complete(task_id, lease_id=lease_id)
        if operation == "retry":
            return self.queue.mark_as_retry(task_id, "err", lease_id=lease_id, delay_s=delay_s)
        if operation == "discard":
            return self.queue.mark_as_discarded(task_id, "bad", lease_id=lease_id)
        if operation == "extend_lease":
            assert lease_id is not None
            return self.queue.extend_lease(task_id, lease_id, seconds)
        assert lease_id is None
        if operation == "cancel":
            return self.queue.mark_as_cancelled(task_id)
        return self.queue.mark_as_resume(task_id)

    def lease_for(
        self, operation: Operation, task: ModelTask | None, lease_id: str | None
    ) -> str | None:
        """The lease to pass: none for cancel and resume; extend_lease always needs one."""
        if operation in ("cancel", "resume"):
            return None
        if operation == "extend_lease" and lease_id is None:
            return task.lease_id if task is not None and task.lease_id else "not-a-lease"
        return lease_id

    @precondition(has_processing)
    @rule(
        data=st.data(),
        operation=st.sampled_from(LEASED_OPERATIONS),
        with_lease=st.booleans(),
        delay_s=delays,
        seconds=extensions,
    )
    def act_on_claimed(
        self,
        data: st.DataObject,
        operation: Operation,
        with_lease: bool,
        delay_s: float | None,
        seconds: float | None,
    ) -> None:
        """A worker acknowledges (or renews) a task it holds, with its lease or without one."""
        task = self.draw_task(data, self.tasks_in(PROCESSING))
        lease_id = self.lease_for(operation, task, task.lease_id if with_lease else None)
        assert predict(task, operation, lease_id) is None
        self.act(operation, task.id, lease_id, delay_s, seconds)

    @precondition(has_stale_lease)
    @rule(
        data=st.data(),
        operation=st.sampled_from(LEASED_OPERATIONS),
        delay_s=delays,
        seconds=extensions,
    )
    def act_with_stale_lease(
        self,
        data: st.DataObject,
        operation: Operation,
        delay_s: float | None,
        seconds: float | None,
    ) -> None:
        """A worker whose claim was superseded by a later claim of the same task."""
        task = self.draw_task(data, [t for t in self.tasks_in(*TaskState) if len(t.leases) >= 2])
        lease_id = data.draw(st.sampled_from(task.leases[:-1]), label="stale lease")
        assert predict(task, operation, lease_id) is LeaseLostError
        event("stale lease")
        self.act(operation, task.id, lease_id, delay_s, seconds)

    @precondition(has_tasks)
    @rule(
        data=st.data(),
        operation=st.sampled_from(OPERATIONS),
        lease=st.sampled_from(["last", "none", "foreign"]),
        delay_s=delays,
        seconds=extensions,
    )
    def act_on_any(
        self,
        data: st.DataObject,
        operation: Operation,
        lease: str,
        delay_s: float | None,
        seconds: float | None,
    ) -> None:
        """Any operation on any task, in whatever state it is, or on an id no task has."""
        # A state first, then a task in it: rare states are picked as often as common ones.
        present = [state for state in TaskState if self.tasks_in(state)]
        state = data.draw(st.sampled_from([*present, UNKNOWN]), label="state")
        if state == UNKNOWN:
            task_id = new_id()
        else:
            task_id = self.draw_task(data, self.tasks_in(TaskState(state))).id
        task = self.model.get(task_id)
        lease_id: str | None = None
        if lease == "last":  # the last claim's lease: current, or expired by the sweep
            lease_id = task.leases[-1] if task is not None and task.leases else "not-a-lease"
        elif lease == "foreign":
            own = set(task.leases) if task is not None else set()
            others = [*(x for x in self.all_leases() if x not in own), "not-a-lease"]
            lease_id = data.draw(st.sampled_from(others), label="foreign lease")
        self.act(operation, task_id, self.lease_for(operation, task, lease_id), delay_s, seconds)

    @precondition(has_discarded)
    @rule(data=st.data())
    def resume_discarded(self, data: st.DataObject) -> None:
        self.act("resume", self.draw_task(data, self.tasks_in(DISCARDED)).id)

    # -- the sweep -----------------------------------------------------------------------

    @rule()
    def sweep(self) -> None:
        now = self.clock.now
        moved = self.run(self.queue.retry(size=SWEEP_SIZE))
        touched: set[str] = set()
        expired: set[str] = set()
        for task in self.tasks_in(PROCESSING):
            assert task.lease_expires_at is not None
            if task.lease_expires_at <= now:
                expired.add(task.id)
                touched.add(task.id)
                task.state = CANCELLED if task.cancel_requested else RETRYABLE
                if task.cancel_requested:
                    task.finished_at = now
                task.expired_count += 1
                task.last_error = EXPIRED_ERROR
                task.errors.append((task.attempt_count, EXPIRED_ERROR, True))
                task.lease_id = None  # an expired lease is lost
                task.lease_expires_at = None
                task.retry_delay = None
        bounds: dict[str, tuple[float, float]] = {}
        for task in self.tasks_in(RETRYABLE):
            touched.add(task.id)
            limit = task.max_attempts if task.max_attempts is not None else DEFAULT_MAX_ATTEMPTS
            if task.attempt_count >= limit:
                task.state = DISCARDED
                task.finished_at = now
            else:
                task.state = PENDING
                if task.retry_delay is not None:
                    bounds[task.id] = (now + task.retry_delay, now + task.retry_delay)
                else:
                    low, high = backoff_bounds(task.attempt_count)
                    bounds[task.id] = (now + low, now + high)
                task.retry_delay = None
        assert [t.id for t in moved] == sorted(touched)
        for swept in moved:
            kind = swept.state.value
            if swept.id in bounds:
                low, high = bounds[swept.id]
                kind = "pending after delay_s" if low == high else "pending after backoff"
            event(f"sweep: {'expired, then ' if swept.id in expired else ''}{kind}")
        for got in moved:
            want = self.model[got.id]
            assert got.state is want.state, (got.id, got.state, want.state)
            if got.id in bounds:
                low, high = bounds[got.id]
                assert low - EPSILON <= got.schedule_at <= high + EPSILON, (
                    got.id,
                    got.attempt_count,
                    got.schedule_at - now,
                    (low - now, high - now),
                )
                want.schedule_at = got.schedule_at  # the jitter is random: adopt what was drawn

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        stats = self.run(self.queue.get_queue_stats())
        expected = {state.value: 0 for state in TaskState}
        for task in self.model.values():
            expected[task.state.value] += 1
        expected["total"] = len(self.model)
        assert stats == expected
        # Every task through one list read; through get_task, each task the step changed.
        listed = self.run(self.queue.list_tasks(limit=1000))
        assert [t.id for t in listed] == sorted(self.model)
        for got in listed:
            self.check_task(got, self.model[got.id])
        for task_id, want in self.model.items():
            fingerprint = repr(want)
            if self.last_checked.get(task_id) != fingerprint:
                self.check_task(self.run(self.queue.get_task(task_id)), want)
                self.last_checked[task_id] = fingerprint
        missing = self.outcome(self.queue.get_task(new_id()))
        assert isinstance(missing, TaskNotFoundError), missing

    def check_task(self, got: Task, want: ModelTask) -> None:
        where = f"task {want.id}"
        assert got.state is want.state, (where, got.state, want.state)
        assert got.attempt_count == want.attempt_count, where
        assert got.expired_count == want.expired_count, where
        assert got.max_attempts == want.max_attempts, where
        assert got.priority == want.priority, where
        assert got.schedule_at == want.schedule_at, where
        assert got.last_error == want.last_error, where
        assert [(e.attempt, e.error, e.expired) for e in got.errors] == want.errors, where
        assert got.finished_at == want.finished_at, where
        assert got.lease_id == want.lease_id, where
        assert (got.cancel_requested_at is not None) == want.cancel_requested, where
        if got.state is PROCESSING:
            assert got.lease_id is not None, where
            assert got.lease_expires_at is not None, where
            assert got.lease_expires_at == want.lease_expires_at, where
        else:
            assert got.lease_expires_at is None, where
        if got.state in TERMINAL:
            assert got.finished_at is not None, where
        else:
            assert got.finished_at is None, where


QueueStateMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    # The explain phase replays the failure many times over to no profit for a state machine.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestQueueStateMachine = QueueStateMachine.TestCase


async def test_resume_forgets_an_earlier_cancel_request(queue: WorkerQueue) -> None:
    """An operator's resume asks for a new run: a cancel request made to an earlier run
    must not stop it."""
    task = make_task()
    await queue.enqueue([task])
    [claimed] = await queue.dequeue(size=1)
    assert claimed.lease_id is not None
    assert await queue.mark_as_cancelled(claimed.id) is PROCESSING  # a cancel request
    await queue.mark_as_discarded(claimed.id, "gave up", lease_id=claimed.lease_id)
    await queue.mark_as_resume(claimed.id)
    [again] = await queue.dequeue(size=1)
    assert again.lease_id is not None
    assert (await queue.get_task(again.id)).cancel_requested_at is None
    beat = await queue.heartbeat([(again.id, again.lease_id)])
    assert beat.cancel_requested == []
