"""The ``call`` and ``command`` request models (their handlers live beside them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from worker.core.kinds import register_request_kind
from worker.core.targets import check_target


@register_request_kind("call")
class CallRequest(BaseModel):
    """Call ``target`` (``"package.module:function"``) with JSON ``args`` and ``kwargs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return check_target(value)

    @property
    def module(self) -> str:
        return self.target.split(":", 1)[0]


@register_request_kind("command")
class CommandRequest(BaseModel):
    """Run ``argv`` (no shell) in ``cwd`` with ``env`` added, killed after ``timeout_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0)
