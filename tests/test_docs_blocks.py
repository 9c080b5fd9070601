"""The code the README and the docs show: it parses, and every name it imports exists.

Every ```` ```python ```` block of ``README.md`` and ``docs/**/*.md`` is read here. The
README's blocks all run as written (``test_readme_examples``); a docs block runs too when the
line before its fence is the marker ``<!-- test: run -->``. Blocks that are fragments (no
marker) must still be valid Python, top-level ``await`` allowed, and import only what exists.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_MARKER = "<!-- test: run -->"
_FENCE = re.compile(r"^```(\S*)")
#: Markdown links with a relative target: [text](path) or [text](path#anchor).
_LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)(?:#[^)]*)?\)")


@dataclass(frozen=True)
class Block:
    """One fenced python block: where it is, its code, and whether it runs as written."""

    path: Path
    line: int
    code: str
    runnable: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)
    return [ROOT / "README.md", *docs]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = next(
            (i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), len(lines)
        )
        if fence.group(1) == "python":
            marked = index > 0 and lines[index - 1].strip() == RUN_MARKER
            runnable = path == ROOT / "README.md" or marked
            code = "\n".join(lines[index + 1 : end]) + "\n"
            found.append(Block(path, index + 1, code, runnable))
        index = end + 1
    return found


def python_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks_of(path)]


def runnable_blocks() -> list[Block]:
    return [block for block in python_blocks() if block.runnable]


def parse(block: Block) -> ast.Module:
    tree = compile(
        block.code, block.where, "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    assert isinstance(tree, ast.Module)
    return tree


def test_the_readme_and_the_docs_have_examples_that_run() -> None:
    readme = [b for b in runnable_blocks() if b.path.name == "README.md"]
    docs = [b for b in runnable_blocks() if b.path.name != "README.md"]
    assert len(readme) >= 2, "the README's quick start and worker example"
    assert len(docs) >= 5, [b.where for b in docs]


def test_every_python_block_parses() -> None:
    problems = []
    for block in python_blocks():
        try:
            parse(block)
        except SyntaxError as exc:
            problems.append(f"{block.where}: {exc}")
    assert not problems, "\n".join(problems)


def test_every_run_marker_stands_before_a_python_block() -> None:
    misplaced = []
    for path in markdown_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if line.strip() == RUN_MARKER and not (
                number < len(lines) and lines[number].startswith("```python")
            ):
                misplaced.append(f"{path.relative_to(ROOT)}:{number}")
    assert not misplaced, f"{RUN_MARKER} must stand right before a ```python fence: {misplaced}"


def imported_names(block: Block) -> list[tuple[str, str | None, int]]:
    """(module, name or None for ``import module``, line) for every import in the block."""
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(parse(block)):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
    return found


def test_every_name_the_examples_import_is_importable_from_the_module_named() -> None:
    """Issue 10, item 10: ``from worker import X`` in the docs means ``X`` is in
    ``worker.__all__`` (likewise ``tts``), not only in some submodule."""
    problems = []
    for block in python_blocks():
        for module_name, name, line in imported_names(block):
            where = f"{block.path.relative_to(ROOT)}:{block.line + line}"
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                problems.append(f"{where}: import {module_name}: {exc}")
                continue
            if name is None:
                continue
            if module_name in ("worker", "tts") and name not in module.__all__:
                problems.append(f"{where}: {name} is not in {module_name}.__all__")
            elif not hasattr(module, name):
                problems.append(f"{where}: {module_name} has no {name}")
    assert not problems, "\n".join(problems)


def test_the_readmes_links_name_files_of_the_repository() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = _LINK.findall(text)
    assert targets, "the README links into docs/"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing
