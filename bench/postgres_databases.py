"""Which PostgreSQL server a benchmark runs on, and a fresh database on it for every run.

A PostgreSQL figure needs a database no earlier run has touched (a drain of a table that
held 50,000 dead rows is not the drain of a new one), so each run gets its own, created here
and dropped at the end. The server comes from :func:`server_url`: the URL given with
``--database-url`` (or ``BENCH_DATABASE_URL``), or with ``--backend postgres`` a throwaway
server the benchmark starts itself (:mod:`postgres`: initdb and pg_ctl in a temporary
directory, PostgreSQL's durable defaults), stopped at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import logging
import os
import secrets
from itertools import count
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from postgres import add_backend_option, benchmark_server
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

log = logging.getLogger(__name__)

ENV_VAR = "BENCH_DATABASE_URL"
PREFIX = "bench_"  # every database made here starts with it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_option(parser)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(ENV_VAR),
        help="a PostgreSQL server to also run on, postgresql+asyncpg://user@host:port/db "
        f"(default ${ENV_VAR}); each run gets a new database there, dropped at the end",
    )


def server_url(args: argparse.Namespace) -> str | None:
    """The URL of the PostgreSQL server to measure, or None to measure SQLite alone.

    The one place that decides where the server comes from: a ``--backend postgres`` that
    starts a throwaway server would return that server's URL here (and stop it at exit).
    """
    url: str | None = args.database_url
    if url is not None and not url.startswith("postgresql"):
        raise SystemExit(f"--database-url must be a postgresql URL, got {url!r}")
    if url is None and args.backend == "postgres":
        server = _servers.enter_context(benchmark_server())
        atexit.register(_servers.close)
        url = server.url("postgres")
    return url


_servers = contextlib.ExitStack()  # the server --backend postgres started, stopped at exit


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


class Databases:
    """Databases made on one server for this process's runs; :meth:`drop_all` removes them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._made: list[str] = []
        self._numbers = count()
        self._tag = secrets.token_hex(3)

    def fresh(self, label: str) -> str:
        """A new empty database; its URL (the server URL's scheme and credentials)."""
        name = f"{PREFIX}{self._tag}_{next(self._numbers):03d}_{label.replace('-', '_')}"
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"'))
        self._made.append(name)
        return _with_database(self.url, name)

    def drop_all(self) -> None:
        for name in self._made:
            try:
                asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except (OSError, SQLAlchemyError) as error:  # the others are still dropped
                log.error("could not drop database %s: %s", name, error)
        self._made.clear()

    def server_version(self) -> str:
        return asyncio.run(self._fetch_one("SHOW server_version"))

    def setting(self, name: str) -> str:
        return asyncio.run(self._fetch_one(f"SHOW {name}"))

    async def _admin(self, sql: str) -> None:
        await run_sql(self.url, sql)

    async def _fetch_one(self, sql: str) -> str:
        return str(await run_sql(self.url, sql))


async def run_sql(url: str, sql: str, **params: Any) -> Any:
    """Run one statement outside a transaction (CREATE DATABASE, VACUUM need that) on
    ``url``'s database; its first value, if it returns rows."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            result = await conn.execute(sa.text(sql), params)
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


async def analyze(engine: Any) -> None:
    """Refresh the planner's statistics after a bulk fill, as a long-lived database has them
    (PostgreSQL: ``VACUUM ANALYZE``, outside a transaction; SQLite: ``ANALYZE``)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
