"""The ``call`` allow-list: what a target in an allowed module may name, and what it may not.

The allowed module is a real package written into a temporary directory on ``sys.path``: it
imports ``os`` and ``json``, re-exports some names through ``__all__``, defines classes with
methods, inherits from a built-in, and holds an instance.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_processors import run_one
from worker import PermanentError, ProcessorRegistry, TaskState
from worker.builtins import CallRequest
from worker.builtins.allowlist import CallRefusedError, allowed_callable

pytestmark = pytest.mark.timeout(30)

PACKAGE = """
import functools
import json
import os
from json import dumps
from os.path import join as joined
from json import dumps as dumps_exported
from collections import OrderedDict as Exported

__all__ = ["dumps_exported", "Exported", "double", "instance", "Box"]


def double(x):
    return 2 * x


async def triple(x):
    return 3 * x


def _private(x):
    return -x


@functools.lru_cache
def cached(x):
    return x * 10


class Box:
    def method(self):
        return "method"

    @staticmethod
    def make(x):
        return {"made": x}

    @classmethod
    def build(cls, x):
        return [cls.__name__, x]

    helper = staticmethod(os.getcwd)
    dumper = json.dumps
    size = 3

    class Inner:
        @staticmethod
        def deep(x):
            return x + 1


class Child(Box):
    pass


class Mapping(dict):
    pass


instance = Box()
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh package (a new name each test: nothing cached in sys.modules)."""
    name = f"callee_{uuid.uuid4().hex[:12]}"
    package = tmp_path / "importable" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (package / "sub.py").write_text("def answer():\n    return 42\n")
    monkeypatch.syspath_prepend(str(package.parent))
    yield name
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]


@pytest.mark.parametrize(
    ("path", "args", "expected"),
    [
        ("double", [21], 42),
        ("_private", [1], -1),  # defined in the module, though private by convention
        ("cached", [2], 20),  # a decorated function keeps its module
        ("Box.make", [1], {"made": 1}),
        ("Box.build", [2], ["Box", 2]),
        ("Child.build", [2], ["Child", 2]),  # inherited from a class of the same module
        ("Box.Inner.deep", [1], 2),
        ("dumps_exported", [[1]], "[1]"),  # imported, but listed in __all__
        ("Exported", [], {}),  # a class from elsewhere, listed in __all__: it may be made
    ],
)
def test_the_module_s_own_functions_classes_methods_and_exports_are_allowed(
    module: str, path: str, args: list[Any], expected: Any
) -> None:
    function = allowed_callable(f"{module}:{path}", [module])
    assert function(*args) == expected


def test_an_async_function_and_a_class_are_allowed(module: str) -> None:
    assert allowed_callable(f"{module}:triple", [module]).__name__ == "triple"
    assert allowed_callable(f"{module}:Box", [module]).__name__ == "Box"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("os.mkdir", "'os' is a module ('os') that"),
        ("json.dumps", "'json' is a module ('json') that"),
        ("dumps", "'dumps' is defined in 'json', not in"),
        ("joined", "'joined' is defined in 'posixpath', not in"),
        ("double.__globals__", "names starting with '__'"),
        ("Box.__class__", "names starting with '__'"),
        ("Box.__init__", "names starting with '__'"),
        ("__builtins__", "names starting with '__'"),
        ("__loader__", "names starting with '__'"),
        ("double.real", ":double' is not a class"),
        ("instance.method", ":instance' is not a class"),
        ("Box.helper", "Box.helper is defined in 'posix'"),
        ("Box.dumper", "Box.dumper is defined in 'json'"),
        ("Box.size", "Box.size is an int, not a method or class"),
        ("Box.mro", ":Box' defines no 'mro'"),
        ("Mapping.fromkeys", "'fromkeys' is inherited from builtins.dict"),
        ("Exported.fromkeys", ":Exported' is defined in 'collections'"),
        ("Box.nothing", "defines no 'nothing'"),
        ("nothing", "has no 'nothing'"),
        ("instance", "'instance' is not callable"),  # exported, but not callable
        ("Box..make", "expected 'package.module:function'"),
    ],
)
def test_a_path_that_leaves_the_module_is_refused_naming_the_target(
    module: str, path: str, why: str
) -> None:
    target = f"{module}:{path}"
    with pytest.raises(CallRefusedError) as caught:
        allowed_callable(target, [module])
    assert isinstance(caught.value, PermanentError), "the task is discarded, not retried"
    assert str(caught.value).startswith(f"call target {target!r} refused: ")
    assert why in str(caught.value)


def test_a_submodule_needs_its_own_entry(module: str) -> None:
    with pytest.raises(CallRefusedError, match=rf"allowing '{module}' does not allow its sub"):
        allowed_callable(f"{module}.sub:answer", [module])
    assert f"{module}.sub" not in sys.modules, "a module not allowed is never imported"
    assert allowed_callable(f"{module}.sub:answer", [f"{module}.sub"])() == 42
    with pytest.raises(CallRefusedError, match=r"'sub' is a module"):
        allowed_callable(f"{module}:sub.answer", [module])  # nor through the parent


def test_a_module_not_listed_is_neither_imported_nor_called(module: str) -> None:
    with pytest.raises(CallRefusedError, match="not allowed: add it to QUEUE_CALL_ALLOWED"):
        allowed_callable(f"{module}:double", ["math", f"{module}x"])
    assert module not in sys.modules


def test_trusted_dotted_paths_of_the_registry_are_not_restricted(module: str) -> None:
    registry = ProcessorRegistry(builtins=False, entry_points=False)
    registry.add("escape", f"{module}:json.dumps")  # code, not task data: anything goes
    assert registry.get("escape")([1]) == "[1]"


async def test_a_call_task_cannot_walk_out_of_its_module(
    module: str, database_url: str, tmp_path: Path
) -> None:
    made = tmp_path / "made-by-os-mkdir"
    task = await run_one(
        database_url,
        CallRequest(target=f"{module}:os.mkdir", args=[str(made)]),
        call_allowed_modules=[module],
        max_attempts=3,
    )
    assert task.state is TaskState.DISCARDED
    assert task.attempt_count == 1, "refused for good, not retried"
    assert not made.exists()
    assert task.last_error == (
        f"CallRefusedError: call target '{module}:os.mkdir' refused: 'os' is a module ('os') "
        f"that '{module}' imports; a module must be allowed by its own entry"
    )
    done = await run_one(
        database_url,
        CallRequest(target=f"{module}:Box.make", args=[7]),
        call_allowed_modules=[module],
    )
    assert done.state is TaskState.COMPLETED
    assert done.items[0].result == {"made": 7}
