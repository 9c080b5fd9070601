"""The task model: what callers build, what reads return. Pure data; the store persists it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    field_validator,
    model_validator,
)

from worker.core.garbage import task_built
from worker.core.ids import is_ulid
from worker.core.limits import (
    MAX_ATTEMPTS,
    MAX_DURATION_S,
    MAX_INSTANT,
    MAX_PRIORITY,
    MIN_PRIORITY,
)
from worker.core.states import TaskState
from worker.core.storable import check_text
from worker.core.targets import check_target

_http_url = TypeAdapter(AnyHttpUrl)

#: The most memory a task may declare or a worker offer, in bytes (SQLite's integers are
#: 64-bit); and the most CPUs.
MAX_MEMORY_BYTES = 2**62
MAX_CPUS = 1_000_000.0
#: The longest progress message, in characters.
MAX_MESSAGE_CHARS = 2000


def _duration(default: float | None, *, zero: bool = False) -> Any:
    """A finite number of seconds above 0 (at least 0 with ``zero``), at most a year."""
    if zero:
        return Field(default, ge=0, le=MAX_DURATION_S, allow_inf_nan=False)
    return Field(default, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)


def _instant(default: float) -> Any:
    return Field(default, ge=0, le=MAX_INSTANT, allow_inf_nan=False)


def _request(value: Any) -> BaseModel:
    if not isinstance(value, BaseModel):
        raise ValueError(
            "request must be an instance of a registered request model, "
            f"e.g. TextToSpeechRequest(...), got {type(value).__name__}"
        )
    return value


def _dump_request(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json")


Request = Annotated[BaseModel, PlainValidator(_request), PlainSerializer(_dump_request)]


class TaskItem(BaseModel):
    """One unit of work inside a task: a request and where to post its result."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    request: Request
    response_url: str | None = None
    result: JsonValue = None
    error: str | None = None

    @field_validator("response_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            _http_url.validate_python(value)
        return value


class UnloadedRequest(BaseModel):
    """Stands in, on reads, for a stored request this process cannot load."""

    kind: str
    data: JsonValue
    problem: str


class AttemptError(BaseModel):
    """The error that ended one attempt."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    error: str
    at: float
    expired: bool = False
    #: The id of the worker that ran the attempt (``None`` in records written before it was
    #: kept, or when the run held no worker id).
    worker: str | None = None


class Progress(BaseModel):
    """What a running handler last reported: ``current`` of ``total``, and a message."""

    model_config = ConfigDict(frozen=True)

    current: float = Field(allow_inf_nan=False)
    total: float | None = Field(None, allow_inf_nan=False)
    message: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)
    at: float = Field(allow_inf_nan=False)

    @field_validator("message")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "the message")


class RetryPolicy(BaseModel):
    """How a task waits between attempts, overriding the queue's exponential backoff.

    ``exponential`` (``base_delay_s``, ``multiplier``, ``max_delay_s``; unset ones come from
    the config), ``fixed`` (``delay_s`` every time), or ``delays`` (``delays_s[n-1]`` after
    attempt n; the last one repeats). With ``deadline_s``, no retry is scheduled later than
    that many seconds after the task was created. ``priority_step`` changes the task's
    priority by that much at each retry (``-1``: a failing task gives way to the others),
    stopping at the ends of the priority range.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["exponential", "fixed", "delays"] = "exponential"
    base_delay_s: float | None = _duration(None, zero=True)
    multiplier: float | None = Field(None, ge=1, le=100, allow_inf_nan=False)
    max_delay_s: float | None = _duration(None, zero=True)
    delay_s: float | None = _duration(None, zero=True)
    delays_s: list[Annotated[float, Field(ge=0, le=MAX_DURATION_S, allow_inf_nan=False)]] = Field(
        default_factory=list, max_length=1000
    )
    deadline_s: float | None = _duration(None)
    priority_step: int = Field(0, ge=MIN_PRIORITY - MAX_PRIORITY, le=MAX_PRIORITY - MIN_PRIORITY)

    @model_validator(mode="after")
    def _complete(self) -> RetryPolicy:
        if self.kind == "fixed" and self.delay_s is None:
            raise ValueError("a fixed retry policy needs delay_s")
        if self.kind == "delays" and not self.delays_s:
            raise ValueError("a delays retry policy needs a non-empty delays_s")
        return self


class Resources(BaseModel):
    """What a task needs of its worker: memory, a share of CPUs, a GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_bytes: int = Field(0, ge=0, le=MAX_MEMORY_BYTES)
    cpu: float = Field(0.0, ge=0, le=MAX_CPUS, allow_inf_nan=False)
    gpu: bool = False


#: The needs of a task that declares none (a frozen model: one instance serves every task).
NO_NEEDS = Resources()


class Task(BaseModel):
    """A unit of queued work. ``id=""`` and zero times are filled in by ``enqueue``."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    id: str = ""
    queue: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    state: TaskState = TaskState.PENDING
    priority: int = Field(0, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    schedule_at: float = _instant(0.0)
    items: list[TaskItem] = Field(min_length=1)
    attempt_count: int = Field(0, ge=0)
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS)
    visibility_timeout: float | None = _duration(None)
    expired_count: int = Field(0, ge=0)
    lease_id: str | None = None
    lease_expires_at: float | None = None
    worker_id: str | None = None
    last_error: str | None = None
    errors: list[AttemptError] = Field(default_factory=list)
    created_at: float = _instant(0.0)
    updated_at: float = _instant(0.0)
    started_at: float | None = None
    finished_at: float | None = None
    name: str | None = Field(None, max_length=200)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    timeout_s: float | None = _duration(None)
    retry_policy: RetryPolicy | None = None
    held: bool = False
    depends_on: list[str] = Field(default_factory=list, max_length=1000)
    waiting_on: int = Field(0, ge=0)
    progress: Progress | None = None
    checkpoint: JsonValue = None
    cancel_requested_at: float | None = None
    resources: Resources = NO_NEEDS
    #: Callables (``"package.module:function"``) a worker runs after the task completed
    #: (``on_success(task, result)``) or was discarded (``on_failure(task, error)``); see
    #: :mod:`worker.runtime.callbacks`.
    on_success: str | None = None
    on_failure: str | None = None

    @field_validator("on_success", "on_failure")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return None if value is None else check_target(value, "a callback")

    @field_validator("name", "idempotency_key")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "it")

    @field_validator("depends_on")
    @classmethod
    def _dependencies(cls, value: list[str]) -> list[str]:
        for task_id in value:
            if not is_ulid(task_id):
                raise ValueError(f"depends_on holds task ids (ULIDs), got {task_id!r}")
        return list(dict.fromkeys(value))

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if value and not is_ulid(value):
            raise ValueError(f"id must be empty (a ULID is assigned) or a ULID, got {value!r}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Counted: a program building many tasks in a row has the collector skip walking
        them (:mod:`worker.core.garbage`)."""
        task_built()


class Completion(NamedTuple):
    """A claimed task finished; ``results[i]`` becomes item ``i``'s result.

    A named tuple rather than a frozen dataclass: one is built per acknowledged task, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) costs 2.5 times as much.
    """

    task_id: str
    lease_id: str | None = None
    results: list[JsonValue] | None = None
    #: The handler's last progress report, written with the completion (no write of its own).
    progress: Progress | None = None


class Failure(NamedTuple):
    """A claimed task's attempt failed with ``error``; ``delay_s`` overrides the backoff.

    A named tuple, as :class:`Completion`."""

    task_id: str
    error: str
    lease_id: str | None = None
    delay_s: float | None = None
