"""MkDocs hook: the configuration page's ``QUEUE_*`` table, generated from ``QueueConfig``.

``docs/configuration.md`` holds the marker ``<!-- queue-settings -->``; at build time it is
replaced by one row per :class:`worker.QueueConfig` field: its environment variable (the
field's ``QUEUE_*`` validation alias), the field name, the default and the field's
``description``. A field without a variable or a description fails the build, so a new
setting cannot ship undocumented.
"""

from __future__ import annotations

import enum
import html
from pathlib import PurePath
from typing import Any

from pydantic import AliasChoices, AliasPath, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = "<!-- queue-settings -->"
PAGE = "configuration.md"


class SettingsTableError(Exception):
    """A setting cannot be documented: it has no ``QUEUE_*`` variable or no description."""


def variable(name: str, field: FieldInfo) -> str:
    """The field's ``QUEUE_*`` environment variable, from its validation alias."""
    alias = field.validation_alias
    choices: list[Any] = alias.choices if isinstance(alias, AliasChoices) else [alias]
    for choice in choices:
        if isinstance(choice, str) and choice.upper().startswith("QUEUE_"):
            return choice.upper()
        if isinstance(choice, AliasPath) and str(choice.path[0]).upper().startswith("QUEUE_"):
            return str(choice.path[0]).upper()
    raise SettingsTableError(f"QueueConfig.{name} has no QUEUE_* validation alias")


def default(field: FieldInfo) -> str:
    """The default as a user would write it in the environment."""
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    if value is None or value == []:
        return "(unset)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, PurePath | int | str):
        return f"`{value}`"
    if isinstance(value, list):
        return "`" + ",".join(str(part) for part in value) + "`"
    return f"`{value!r}`"


def rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(variable, field, default, description) for every field of ``model``, in order."""
    out = []
    for name, field in model.model_fields.items():
        if not field.description:
            raise SettingsTableError(
                f"{model.__name__}.{name} has no description: give its Field(...) a description="
            )
        out.append((variable(name, field), name, default(field), field.description))
    return out


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def settings_table(model: type[BaseModel] | None = None) -> str:
    """The Markdown table of ``model``'s settings (default: ``worker.QueueConfig``)."""
    if model is None:
        from worker.core.config import QueueConfig

        model = QueueConfig
    lines = ["| variable | field | default | meaning |", "| --- | --- | --- | --- |"]
    for var, name, value, description in rows(model):
        lines.append(f"| `{var}` | `{name}` | {value} | {_cell(description)} |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: fill in the table on the configuration page."""
    from mkdocs.exceptions import PluginError

    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/{PAGE} lost its {MARKER} marker: the settings table has no place")
    try:
        return markdown.replace(MARKER, settings_table())
    except SettingsTableError as exc:
        raise PluginError(str(exc)) from exc
