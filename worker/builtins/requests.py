"""The ``call`` and ``command`` request models (their handlers live beside them)."""

from __future__ import annotations

from collections.abc import Mapping
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
    def _storable_as_given(cls, value: Any, info: ValidationInfo) -> Any:
        """Each text as given can be stored: pydantic replaces what it cannot read in a
        mapping's key (a variable's name from a non-UTF-8 terminal) before any check after
        it; the rest is checked after validation (a list, a tuple or any iterable)."""
        if isinstance(value, Mapping):
            for key in value:
                if isinstance(key, str):
                    check_text(key, f"the {info.field_name} name '{safe_text(key)}'")
        return value

    @field_validator("argv", "cwd", "env")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        """Each text can be stored (pydantic takes a list item or an optional text that is
        not UTF-8 as it is, to fail when stored)."""
        name = info.field_name or "value"
        if isinstance(value, str):
            check_text(value, name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                check_text(item, f"{name}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                check_text(item, f"{name}['{safe_text(key)}']")
        return value
