"""The configuration page's table is generated from ``QueueConfig``, so it cannot drift.

The generator is the MkDocs hook ``docs/hooks/settings_table.py`` (``mkdocs build`` runs it);
these tests run it directly.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
from pydantic import Field

from tests.test_docs_blocks import ROOT
from worker import QueueConfig


def load_hook() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "settings_table.py"
    spec = importlib.util.spec_from_file_location("settings_table", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_has_a_row_with_its_variable_default_and_description() -> None:
    hook = load_hook()
    table: str = hook.settings_table()
    rows = {line.split("|")[2].strip(" `"): line for line in table.splitlines()[2:]}
    assert set(rows) == set(QueueConfig.model_fields)
    for name, field in QueueConfig.model_fields.items():
        variable = hook.variable(name, field)
        assert variable.startswith("QUEUE_")
        assert f"`{variable}`" in rows[name]
        assert field.description, f"QueueConfig.{name} has no description"
        # The variable the row names is the one from_env() reads.
        assert variable in QueueConfig.model_fields[name].validation_alias.choices  # type: ignore[union-attr]
    assert "| `QUEUE_VISIBILITY_TIMEOUT` | `default_visibility_timeout` | `3600` |" in table
    assert "| `QUEUE_ALLOW_COMMANDS` | `allow_commands` | `false` |" in table
    assert "outputs/&lt;task id&gt;/" in rows["data_dir"]  # escaped, not an HTML tag


def test_the_variable_each_row_names_is_read_by_from_env() -> None:
    hook = load_hook()
    checked = 0
    for name, field in QueueConfig.model_fields.items():
        default = getattr(QueueConfig(), name)
        if isinstance(default, bool):
            value = str(not default)
        elif isinstance(default, int | float):
            value = str(default + 1 if isinstance(default, int) else default / 2)
        else:
            continue
        config = QueueConfig.from_env({hook.variable(name, field): value})
        assert getattr(config, name) != default, f"{hook.variable(name, field)} missed {name}"
        checked += 1
    assert checked >= 20


def test_a_setting_without_a_description_fails_the_build() -> None:
    hook = load_hook()

    class Undocumented(QueueConfig):
        extra_setting: int = Field(1, validation_alias="QUEUE_EXTRA_SETTING")

    with pytest.raises(hook.SettingsTableError, match="extra_setting has no description"):
        hook.settings_table(Undocumented)


def test_the_configuration_page_holds_the_marker_and_mkdocs_runs_the_hook() -> None:
    hook = load_hook()
    page = (ROOT / "docs" / hook.PAGE).read_text(encoding="utf-8")
    assert hook.MARKER in page
    assert "docs/hooks/settings_table.py" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
