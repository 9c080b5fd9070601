"""The ``call`` and ``command`` request models (their handlers live beside them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationInfo, field_validator

from worker.core.kinds import register_request_kind
from worker.core.storable import check_text, safe_text
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

    @field_validator("argv", "cwd", "env", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        """Each text as given can be stored (a program's argument or environment from a
        non-UTF-8 terminal is not UTF-8: pydantic took such a list item or a path as it was,
        to fail when stored, and replaced what it could not read in a name)."""
        name = info.field_name or "value"
        if isinstance(value, str):
            check_text(value, name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    check_text(item, f"{name}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    check_text(key, f"the {name} name {safe_text(key)!r}")
                if isinstance(item, str):
                    check_text(item, f"{name}[{safe_text(str(key))!r}]")
        return value
