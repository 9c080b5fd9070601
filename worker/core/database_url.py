"""Database URLs: which backend and driver a URL names, checked before anything connects.

The queue runs on asyncio, so each backend has one async driver; a URL that names the
backend alone (``sqlite:///PATH``) or its synchronous driver (``sqlite+pysqlite://``) gets it.
A plain file path (no ``://``) is a SQLite database there.
Each check raises ``ValueError`` with one line fit to show the user (the configuration turns
it into a :class:`~worker.core.errors.ConfigurationError` naming the setting).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

EXAMPLE = "sqlite+aiosqlite:///data/queue.db"
POSTGRES_EXAMPLE = "postgresql://user@host/db"


@dataclass(frozen=True, slots=True)
class Backend:
    """A supported backend: its async driver, the drivers replaced by it, how to install it."""

    driver: str
    module: str
    sync_drivers: frozenset[str]
    install: str


BACKENDS = {
    "sqlite": Backend(
        driver="aiosqlite",
        module="aiosqlite",
        sync_drivers=frozenset({"", "pysqlite"}),
        install="pip install aiosqlite (a dependency of worker-queue: reinstall it)",
    ),
    "postgresql": Backend(
        driver="asyncpg",
        module="asyncpg",
        sync_drivers=frozenset({"", "psycopg2", "psycopg", "pg8000"}),
        install="pip install 'worker-queue[postgres]'",
    ),
}


#: What starts a URL (``scheme:``); a path that would start so is taken for a mistyped URL.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def file_url(value: str) -> str:
    """A SQLAlchemy URL as given, or a plain file path as ``sqlite+aiosqlite:///PATH``
    (``%``, ``?`` and ``#`` in it escaped: a URL would read them as its own)."""
    if "://" in value or not value.strip() or _SCHEME.match(value):
        return value
    path = str(Path(value).expanduser())
    for char, escaped in (("%", "%25"), ("?", "%3F"), ("#", "%23")):
        path = path.replace(char, escaped)
    return f"sqlite+aiosqlite:///{path}"


#: A SQLite URL that names a file and nothing else: no query, no ``file:`` URI.
_PLAIN_SQLITE = re.compile(r"sqlite(?P<driver>\+aiosqlite|\+pysqlite)?:///(?P<path>[^?#]+)")


def sqlite_file(database_url: str) -> str | None:
    """The file of a plain SQLite URL (``sqlite[+driver]:///PATH``, no query) or path, read
    without SQLAlchemy (a test holds it to SQLAlchemy's reading); None for any other URL."""
    match = _PLAIN_SQLITE.fullmatch(file_url(database_url))
    if match is None:
        return None
    path = unquote(match["path"])
    return None if path == ":memory:" or path.startswith("file:") else path


def async_database_url(value: str) -> str:
    """``value`` (a URL, or a SQLite file path) with the backend's async driver, or
    ``ValueError`` saying what is wrong."""
    value = file_url(value)
    plain = _PLAIN_SQLITE.fullmatch(value)
    if plain is not None and sqlite_file(value) is not None and installed("aiosqlite"):
        # The usual case, without loading SQLAlchemy (wq's read commands do without it).
        return "sqlite+aiosqlite:///" + plain["path"]
    from sqlalchemy.engine import make_url  # SQLAlchemy is heavy: only when a URL is checked
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError(
            f"not a database URL: {value!r} (use e.g. {EXAMPLE}, or a SQLite file path)"
        ) from None
    shown = url.render_as_string(hide_password=True)
    backend_name, _, driver = url.drivername.partition("+")
    backend = BACKENDS.get(backend_name)
    if backend is None:
        raise ValueError(
            f"{backend_name!r} is not supported ({shown}): use SQLite (e.g. {EXAMPLE}, or a "
            f"file path) or PostgreSQL (e.g. {POSTGRES_EXAMPLE})"
        )
    if driver != backend.driver and driver not in backend.sync_drivers:
        raise ValueError(
            f"driver {driver!r} is not supported ({shown}): use {backend_name}+{backend.driver}"
        )
    if not installed(backend.module):
        raise ValueError(
            f"{backend_name} needs the {backend.driver} driver, which is not installed "
            f"({shown}): {backend.install}"
        )
    if driver == backend.driver:
        return value
    return url.set(drivername=f"{backend_name}+{backend.driver}").render_as_string(
        hide_password=False
    )


def in_memory(database_url: str) -> bool:
    """Whether ``database_url`` is a SQLite database in memory (``:memory:``, no file, or a
    ``file:`` URI with ``mode=memory``): one that ends with the process that opened it."""
    if sqlite_file(database_url) is not None:
        return False
    from sqlalchemy.engine import make_url

    url = make_url(file_url(database_url))
    if not url.get_backend_name().startswith("sqlite"):
        return False
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return True
    return database.startswith("file:") and "mode=memory" in database


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it
        return False
