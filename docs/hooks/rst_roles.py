"""Griffe extension: render the reST-style roles of today's docstrings in Markdown.

The docstrings are written for people reading the source, with Sphinx roles
(``:class:`~worker.WorkerQueue```, ``:meth:`Worker.run```) and ``::`` before literal
blocks. mkdocstrings renders docstrings as Markdown, where a role would show as
``:class:`` followed by code. This extension rewrites each role, once a package is loaded:

- a target that names an object of a loaded package (resolved as Python would from the
  docstring's scope, or as a full dotted path) becomes a cross-reference, linked when that
  object is on some page of the site and plain code when it is not;
- a dotted target inside a loaded package that names nothing (a typo, a renamed object)
  becomes a plain cross-reference, which the strict build reports as unresolved;
- anything else (the standard library, other packages) becomes plain code.

A ``~`` prefix shows only the last part of the name, as in Sphinx.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from griffe import (
    AliasResolutionError,
    CyclicAliasError,
    Extension,
    GriffeLoader,
    Module,
    NameResolutionError,
    Object,
)

ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj|const):`(~?)([^`]+)`")
LITERAL = re.compile(r"(\S)::$", re.MULTILINE)


def _find(obj: Object, target: str, loader: GriffeLoader) -> str | None:
    """The full path of ``target`` as seen from ``obj``'s docstring, if it names an object."""
    head, dot, rest = target.partition(".")
    candidates = []
    # Not in scope: the target may still be a full dotted path, tried next.
    with contextlib.suppress(NameResolutionError):
        candidates.append(obj.resolve(head) + dot + rest)
    candidates.append(target)
    for path in candidates:
        try:
            loader.modules_collection.get_member(path)
        except (KeyError, ValueError, AttributeError, AliasResolutionError, CyclicAliasError):
            continue
        return path
    return None


def rewrite(text: str, obj: Object, loader: GriffeLoader) -> str:
    """``text`` with its roles made Markdown and its ``::`` literal markers made ``:``."""

    def role(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if short else target
        path = _find(obj, target, loader)
        if path is not None:
            return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'
        if "." in target and target.split(".", 1)[0] in loader.modules_collection:
            return f"[`{shown}`][{target}]"  # inside our packages, but names nothing
        return f"`{shown}`"

    return LITERAL.sub(r"\1:", ROLE.sub(role, text))


class RstRoles(Extension):
    """Rewrite every docstring of a package once the package is loaded."""

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:
        pending: list[Object] = [pkg]
        while pending:
            obj = pending.pop()
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj, loader)
            pending.extend(m for m in obj.members.values() if not m.is_alias)  # type: ignore[misc]
