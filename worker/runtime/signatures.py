"""A function's signature as the request model of its task: one field per parameter.

``def resize(path: str, width: int = 640, *, ctx: TaskContext)`` becomes a frozen pydantic
model with the fields ``path: str`` and ``width: int = 640``; the parameter annotated
:class:`~worker.runtime.context.TaskContext` is left out (the worker passes the context
there). The model validates the arguments a producer defers, and it is what the queue stores
as JSON, so a signature the queue cannot store is refused when the function is decorated:

- ``*args`` and ``**kwargs`` (nothing to name the values by), positional-only parameters;
- annotations pydantic cannot validate, or cannot write as JSON (a callable, an arbitrary
  class): only types with a JSON form are stored;
- defaults that are not valid values of their annotation;
- names the model itself has (``model_config``, ``model_dump``, ``json``, ``copy``, ...: the
  attributes of pydantic's ``BaseModel``).

A parameter without an annotation takes any JSON value. ``bytes`` travel as base64.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    JsonValue,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticSchemaGenerationError
from pydantic_core import PydanticSerializationError

#: How the generated models validate and store: no unknown arguments, values kept as given.
MODEL_CONFIG = ConfigDict(
    extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
)


class SignatureError(TypeError):
    """A function whose signature cannot be a task's (the message says which parameter)."""


@dataclass(frozen=True, slots=True)
class Arguments:
    """A function's parameters as a request model, and where the context goes."""

    model: type[BaseModel]
    #: The parameters, in order (the model's fields).
    names: tuple[str, ...]
    #: The parameter that receives the TaskContext, if any.
    context: str | None


def qualified_name(function: Callable[..., Any]) -> str:
    """``package.module.function``: what a function is known by in every process. A script
    run as ``python -m package.module`` names its module so, not ``__main__``."""
    module = getattr(function, "__module__", None) or "__main__"
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
    return f"{module}.{function.__qualname__}"


def arguments_model(
    function: Callable[..., Any], name: str, *, context_type: type[Any]
) -> Arguments:
    """The request model of ``function``'s arguments, named ``name``; the parameter
    annotated ``context_type`` is left out. Raises :class:`SignatureError` naming a
    parameter the queue cannot store."""
    where = f"task function {name}"
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise SignatureError(f"{where}: its signature cannot be read: {exc}") from exc
    fields: dict[str, Any] = {}
    context = None
    for parameter in signature.parameters.values():
        label = f"{where}: parameter {parameter.name!r}"
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise SignatureError(f"{label}: *{parameter.name} cannot be stored; name each argument")
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            raise SignatureError(
                f"{label}: **{parameter.name} cannot be stored; name each argument"
            )
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise SignatureError(f"{label}: positional-only parameters cannot be stored by name")
        annotation = hints.get(parameter.name, JsonValue)
        if annotation is context_type:
            context = parameter.name
            continue
        if parameter.name.startswith("_"):
            raise SignatureError(f"{label}: a stored argument's name cannot start with '_'")
        if hasattr(BaseModel, parameter.name):  # model_config, model_dump, json, copy, ...
            raise SignatureError(
                f"{label}: the name is taken by the request model itself "
                f"(pydantic's BaseModel.{parameter.name}); rename the parameter"
            )
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    model_name = name.replace(".", "_").replace("-", "_") + "_arguments"
    try:
        model = create_model(
            model_name,
            __config__=MODEL_CONFIG,
            __module__=getattr(function, "__module__", __name__),
            **fields,
        )
        model.model_json_schema()  # what has no JSON form says so here
    except (PydanticSchemaGenerationError, PydanticInvalidForJsonSchema) as exc:
        raise SignatureError(f"{where}: an annotation cannot be stored as JSON: {exc}") from exc
    except PydanticUserError as exc:
        raise SignatureError(f"{where}: {exc}") from exc
    _check_defaults(model, where)
    return Arguments(model, tuple(fields), context)


def _check_defaults(model: type[BaseModel], where: str) -> None:
    """A default must be a valid value of its annotation, with a JSON form: a producer that
    leaves the argument out stores it."""
    for field, info in model.model_fields.items():
        if info.is_required():
            continue
        adapter: TypeAdapter[Any] = TypeAdapter(info.rebuild_annotation())
        try:
            adapter.validate_python(info.default)
            adapter.dump_json(info.default)
        except (ValidationError, PydanticSerializationError) as exc:
            raise SignatureError(
                f"{where}: parameter {field!r}: its default {info.default!r} cannot be "
                f"stored as its annotation says: {exc}"
            ) from exc
