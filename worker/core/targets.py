"""Callables named in task data: ``"package.module:function"`` (or ``"module:Class.method"``).

The ``call`` request's ``target`` and a task's ``on_success`` / ``on_failure`` are such names.
Only their shape is checked here, where they are accepted; whether a worker may import and
run one is its allow-list's to say (:mod:`worker.builtins.allowlist`), when it runs.
"""

from __future__ import annotations

import re

#: The longest name a task may give (the column's width).
MAX_TARGET_CHARS = 300

_DOTTED = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def check_target(value: str, what: str = "target") -> str:
    """``value`` if it looks like ``'package.module:function'``, else ``ValueError``."""
    if len(value) > MAX_TARGET_CHARS or not _DOTTED.match(value):
        raise ValueError(
            f"{what} must look like 'package.module:function' (at most {MAX_TARGET_CHARS} "
            f"characters), got {value!r:.400}"
        )
    return value
