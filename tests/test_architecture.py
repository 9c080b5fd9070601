"""The architecture holds: no backend's SQL outside its folder, each backend spells every
construct of the portable vocabulary, no import cycles, and each layer (core, storage, queue,
runtime, edges) imports only its own and lower ones."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

from worker.storage import sql
from worker.storage.backend import backend_for
from worker.storage.schema import tasks
from worker.storage.statements import Statements

WORKER = Path(__file__).resolve().parent.parent / "worker"

#: SQL only one backend speaks, by the folder allowed to hold it.
ONLY = {
    "sqlite": [
        r"INDEXED BY", r"\bjson_each\b", r"\bjson_extract\b", r"\bjson_insert\b",
        r"\bjson_set\b", r"\bjson_object\b", r"OR IGNORE", r"OR REPLACE", r"\binstr\(",
        r"PRAGMA ", r"sqlite_master", r"BEGIN IMMEDIATE\"", r"prefix_with\(",
    ],
    "postgres": [
        r"SKIP LOCKED", r"\bjsonb_", r"::jsonb", r"\bpg_notify\(", r"add_listener\(",
        r"pg_advisory", r"\bunnest\(", r"clock_timestamp\(",
    ],
}  # fmt: skip


def _offences(backend: str) -> list[str]:
    own = WORKER / "storage" / backend
    found = []
    for path in sorted(WORKER.rglob("*.py")):
        if own in path.parents:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in ONLY[backend]:
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(WORKER.parent)}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_no_backend_syntax_outside_its_folder(backend: str) -> None:
    assert _offences(backend) == []


def test_the_grep_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The patterns match the syntax they are for (a grep that matches nothing proves nothing)."""
    samples = {
        "sqlite": "SELECT id FROM tasks INDEXED BY ix WHERE x IN (SELECT value FROM json_each(?))",
        "postgres": "SELECT id FROM tasks FOR UPDATE SKIP LOCKED",
    }
    for backend, text in samples.items():
        assert any(re.search(pattern, text) for pattern in ONLY[backend])


@pytest.mark.parametrize(
    "dialect",
    [SQLiteDialect_aiosqlite(), PGDialect_asyncpg()],  # type: ignore[no-untyped-call]
    ids=["sqlite", "postgres"],
)
def test_every_construct_compiles_on_each_backend(dialect: sa.engine.Dialect) -> None:
    """Every hot-path statement compiles, and into the backend's own idiom only."""
    compiled = Statements(dialect)
    text = " ".join(
        p.sql
        for p in (
            compiled.insert, compiled.claim, compiled.claim_by_queue, compiled.any_due,
            compiled.complete, compiled.complete_plain, compiled.retry, compiled.discard,
        )
    )  # fmt: skip
    other = "postgres" if dialect.name == "sqlite" else "sqlite"
    assert not [p for p in ONLY[other] if re.search(p, text)], text
    backend = backend_for(dialect.name)
    for statement in (backend.state_counts(by_queue=True), backend.position()):
        assert "tasks" in str(statement.compile(dialect=dialect))
    expressions = [
        sql.greatest(tasks.c.attempt_count, 0),
        sql.all_null(tasks.c.last_error, tasks.c.outcomes),
        sql.json_equals(tasks.c.errors, "[]"),
        sql.append_error(tasks.c.last_error, 1.0, expired=True),
        sql.has_response_url(tasks.c.task_items),
        tasks.c.id.in_(sql.json_values("ids")),
    ]
    for expression in expressions:
        assert str(expression.compile(dialect=dialect))


def test_the_claim_on_postgresql_skips_locked_rows_and_rechecks_the_state() -> None:
    claim = Statements(PGDialect_asyncpg()).claim.sql  # type: ignore[no-untyped-call]
    assert "FOR UPDATE SKIP LOCKED" in claim
    assert re.search(r"WHERE tasks\.id = due\.id AND tasks\.state = 'pending'", claim), claim


def _imports() -> dict[str, set[str]]:
    """Each worker module's imports of other worker modules, at import time or for typing
    (``if TYPE_CHECKING:``), but not those inside functions (made when called)."""
    found: dict[str, set[str]] = {}
    for path in WORKER.rglob("*.py"):
        name = ".".join(path.relative_to(WORKER.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        nodes: list[ast.stmt] = list(tree.body)
        for node in tree.body:
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                nodes += node.body
        modules = {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module}
        found[name] = {
            module
            for module in modules
            if module.startswith("worker.")
            and module != name
            # a package importing its own submodules (and they it) is how packages work
            and not module.startswith(name + ".")
            and not name.startswith(module + ".")
        }
    return found


def test_no_import_cycles_between_modules() -> None:
    """queue -> queue_admin -> webhooks.store -> queue and queue -> wakeup -> queue are gone,
    and no other cycle has taken their place."""
    graph = _imports()
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in done and imported in graph:
                visit(imported, [*path, imported])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []


#: The layers, lowest first: a module may import its own layer's and lower ones' modules.
LAYERS = ("core", "storage", "queue", "runtime", "edges")
#: Which layer each top-level part of worker is in.
PART_LAYER = {
    "core": "core", "storage": "storage", "queue": "queue", "runtime": "runtime",
    "builtins": "runtime", "cli": "edges", "webhooks": "edges", "web": "edges",
    "__main__": "edges", "integrations": "edges",
}  # fmt: skip
#: Imports up the layers, each with its reason.
UPWARD = {
    # The Worker delivers webhooks beside its sweeper (and drains them before a burst ends).
    ("worker.runtime.workers", "worker.webhooks"),
}


def test_each_layer_imports_only_its_own_and_lower_ones() -> None:
    def layer(module: str) -> str | None:
        parts = module.split(".")
        return PART_LAYER.get(parts[1]) if len(parts) > 1 else None

    upward = []
    for module, imported in _imports().items():
        for target in imported:
            mine, theirs = layer(module), layer(target)
            if mine is None or theirs is None or (module, target) in UPWARD:
                continue
            if LAYERS.index(theirs) > LAYERS.index(mine):
                upward.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert upward == []
