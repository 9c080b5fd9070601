"""Database URLs: which backend and driver a URL names, checked before anything connects.

The queue runs on asyncio, so each backend has one async driver; a URL that names the
backend alone (``sqlite:///PATH``) or its synchronous driver (``sqlite+pysqlite://``) gets it.
A plain file path (no ``://``) is a SQLite database there.
Each check raises ``ValueError`` with one line fit to show the user (the configuration turns
it into a :class:`~worker.core.errors.ConfigurationError` naming the setting).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
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
    if backend_name == "sqlite":
        check_sqlite_options(url.database or "", url.query)
        sqlite_location(url.database or "", url.query)  # an authority SQLite would refuse
    if backend_name == "postgresql":
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError(f"the port {url.port} is not valid, it takes 1 to 65535 ({shown})")
        if url.host:
            _check_host(url.host)
        postgres_options(url.query)
    if driver == backend.driver:
        return value
    return url.set(drivername=f"{backend_name}+{backend.driver}").render_as_string(
        hide_password=False
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


#: The words for a flag in a URL's query: SQLAlchemy's reading of SQLite's ``uri``
#: (``asbool``), SQLite's of its own flags (``sqlite3_uri_boolean``) and asyncpg's options
#: all take these.
_FLAGS = {"1": True, "yes": True, "true": True, "on": True}
_FLAGS |= {"0": False, "no": False, "false": False, "off": False}


def _flag(text: str) -> bool:
    return _FLAGS[text.strip().lower()]


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _ssl(text: str) -> str:
    if text not in SSL_MODES:
        raise ValueError
    return text


def _port(text: str) -> str:
    if not 1 <= int(text) <= 65535:
        raise ValueError
    return text


@dataclass(frozen=True, slots=True)
class Option:
    """An option a PostgreSQL URL's query may set: what it holds, and how its text is read
    (``check`` raises ``ValueError`` or ``KeyError`` for a value it refuses). ``typed``: the
    driver takes what ``check`` returns, not the text."""

    what: str
    check: Callable[[str], Any] | None = None
    typed: bool = False


#: asyncpg's ``connect()`` options a string can give, and SQLAlchemy's
#: ``prepared_statement_cache_size``.
POSTGRES_OPTIONS = {
    "host": Option("a host name or socket directory (one per host)"),
    "port": Option("a port, 1 to 65535 (one per host)", _port),
    "user": Option("a user name"),
    "password": Option("a password"),
    "database": Option("a database name"),
    "passfile": Option("a password file"),
    "service": Option("a service name"),
    "servicefile": Option("a service file"),
    "target_session_attrs": Option("e.g. primary, standby, read-write"),
    "krbsrvname": Option("a Kerberos service name"),
    "gsslib": Option("gssapi or sspi"),
    "ssl": Option("one of " + ", ".join(SSL_MODES), _ssl),
    "direct_tls": Option("true or false", _flag, typed=True),
    "timeout": Option("seconds, above 0", _seconds, typed=True),
    "command_timeout": Option("seconds, above 0", _seconds, typed=True),
    "statement_cache_size": Option("a count, 0 or more", _count, typed=True),
    "max_cached_statement_lifetime": Option("seconds, 0 or more", _count, typed=True),
    "max_cacheable_statement_size": Option("bytes, 0 or more", _count, typed=True),
    "prepared_statement_cache_size": Option("a count, 0 or more", _count, typed=True),
}
#: Names that users of libpq's URLs reach for, and asyncpg's.
_LIBPQ_NAMES = {"sslmode": "ssl", "dbname": "database", "connect_timeout": "timeout"}


def postgres_options(query: Mapping[str, str | tuple[str, ...]]) -> dict[str, Any]:
    """The options of a PostgreSQL URL's query that the driver takes as other than text,
    read (``timeout=5`` -> 5.0), or ``ValueError`` naming the first one that is unknown,
    given twice or holds what it cannot."""
    typed: dict[str, Any] = {}
    for name, given in query.items():
        option = POSTGRES_OPTIONS.get(name)
        if option is None:
            hint = f"; use {_LIBPQ_NAMES[name]}=" if name in _LIBPQ_NAMES else ""
            raise ValueError(
                f"{name!r} is not a PostgreSQL URL option{hint} (the options: "
                f"{', '.join(POSTGRES_OPTIONS)})"
            )
        values = (given,) if isinstance(given, str) else given
        if len(values) > 1 and name not in ("host", "port"):
            raise ValueError(f"the URL option {name} is given {len(values)} times")
        for value in values:
            if option.check is None:
                continue
            try:
                result = option.check(value)
            except (ValueError, KeyError):
                raise ValueError(
                    f"the URL option {name}={value!r} is not valid: it takes {option.what}"
                ) from None
            if option.typed:
                typed[name] = result
    return typed


_FLAG = tuple(_FLAGS)
#: What a SQLite URL's query may set: pysqlite's ``uri`` and ``cached_statements``, and, in
#: a ``file:`` URI with ``uri=true``, SQLite's own URI parameters, with what each takes.
SQLITE_OPTIONS: dict[str, tuple[str, ...] | None] = {"uri": _FLAG, "cached_statements": None}
SQLITE_URI_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "mode": ("ro", "rw", "rwc", "memory"),
    "cache": ("shared", "private"),
    "immutable": _FLAG,
    "nolock": _FLAG,
    "psow": _FLAG,
    "vfs": None,
    "modeof": None,
}
#: The options the queue sets itself, refused in a URL (the driver would take the URL's, or
#: the queue's would silently win), with the setting to use.
_SQLITE_SET = {
    "timeout": "QUEUE_BUSY_TIMEOUT sets how long a connection waits for the write lock",
    "isolation_level": "the queue opens every transaction itself (BEGIN IMMEDIATE)",
    "detect_types": "the queue decodes its columns itself",
    "check_same_thread": "the driver runs each connection in a thread of its own",
}


def _one(query: Mapping[str, str | tuple[str, ...]], name: str) -> str | None:
    given = query.get(name)
    return given if given is None or isinstance(given, str) else given[-1]


def _uri(query: Mapping[str, str | tuple[str, ...]]) -> bool:
    """Whether pysqlite opens the URL's database as a URI (``uri`` read as SQLAlchemy does)."""
    return _FLAGS.get((_one(query, "uri") or "false").strip().lower(), False)


def check_sqlite_options(database: str, query: Mapping[str, str | tuple[str, ...]]) -> None:
    """``ValueError`` naming the first option of a SQLite URL's query that the driver would
    ignore (with a warning) or the queue would override, or that holds what it cannot."""
    uri = _uri(query) and database.startswith("file:")
    for name, given in query.items():
        if name in _SQLITE_SET:
            raise ValueError(f"the URL option {name} cannot be set: {_SQLITE_SET[name]}")
        if name not in SQLITE_OPTIONS and name not in SQLITE_URI_OPTIONS:
            known = ", ".join([*SQLITE_OPTIONS, *SQLITE_URI_OPTIONS])
            raise ValueError(f"{name!r} is not a SQLite URL option (the options: {known})")
        values = (given,) if isinstance(given, str) else given
        if len(values) > 1:
            raise ValueError(f"the URL option {name} is given {len(values)} times")
        allowed = SQLITE_OPTIONS[name] if name in SQLITE_OPTIONS else SQLITE_URI_OPTIONS[name]
        if allowed is not None and values[0].strip().lower() not in allowed:
            raise ValueError(
                f"the URL option {name}={values[0]!r} is not valid: it takes " + ", ".join(allowed)
            )
        if name in SQLITE_URI_OPTIONS and not uri:
            raise ValueError(
                f"the URL option {name} is SQLite's, read only in a file: URI with uri=true "
                f"(sqlite:///file:PATH?{name}=...&uri=true)"
            )


def sqlite_location(database: str, query: Mapping[str, str | tuple[str, ...]]) -> str | None:
    """The file SQLite opens for a SQLite URL's database and query, or None for a database
    in memory. As pysqlite hands them over: ``file:...`` is a URI only with ``uri=true``
    (without it, the file is named ``file:...``), and a URI names its file as SQLite reads
    it (``file:rel``, ``file:/abs``, ``file:///abs``, ``file://localhost/abs``, percent
    escapes); ``mode=memory``, ``vfs=memdb`` and ``file::memory:`` are in memory."""
    if not database or database == ":memory:":
        return None
    if not (_uri(query) and database.startswith("file:")):
        return database
    if _one(query, "mode") == "memory" or _one(query, "vfs") == "memdb":
        return None
    rest = database[len("file:") :].split("?", 1)[0].split("#", 1)[0]
    if rest.startswith("//"):  # file://AUTHORITY/PATH: SQLite takes "" or "localhost"
        authority, _, rest = rest[2:].partition("/")
        rest = "/" + rest
        if authority not in ("", "localhost"):
            raise ValueError(f"a SQLite URI names no host, got {authority!r} in {database!r}")
    path = unquote(rest)
    return None if not path or path.startswith(":memory:") else path


def _check_host(host: str) -> None:
    """``ValueError`` unless ``host`` is an IP address or a valid host name."""
    import ipaddress  # 1.6 ms: only for a PostgreSQL URL

    try:
        ipaddress.ip_address(host.strip("[]"))
        return
    except ValueError:
        pass
    try:
        host.encode("idna")
    except UnicodeError:
        shown = host if len(host) <= 40 else f"{host[:40]}... ({len(host)} characters)"
        raise ValueError(
            f"the host {shown!r} is not a valid host name (labels of 1 to 63 characters, "
            "separated by dots)"
        ) from None


def in_memory(database_url: str) -> bool:
    """Whether ``database_url`` is a SQLite database in memory (``:memory:``, no file, or a
    ``file:`` URI in memory, see :func:`sqlite_location`): one that ends with the process
    that opened it."""
    if sqlite_file(database_url) is not None:
        return False
    from sqlalchemy.engine import make_url

    url = make_url(file_url(database_url))
    if not url.get_backend_name().startswith("sqlite"):
        return False
    return sqlite_location(url.database or "", url.query) is None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it
        return False
