"""The throwaway PostgreSQL servers the tests and benchmarks run on (tests/postgres_server.py).

A real server each time: the session's (the ``postgres_server`` fixture), plus one that fails
to start and one started by the benchmarks' module in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.postgres_server import (
    HOST,
    PostgresError,
    PostgresNotFound,
    PostgresServer,
    ScratchDatabases,
    find_programs,
)
from worker.storage.schema import metadata

ROOT = Path(__file__).resolve().parent.parent

#: Databases handed out by ``postgres_url`` so far in this session, oldest first.
_handed_out: list[str] = []

_USER_TABLES = (
    "SELECT count(*) FROM pg_catalog.pg_tables"
    " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory the ``postgres`` user can enter when we are root (pytest's tmp_path is not)."""
    directory = Path(tempfile.mkdtemp(prefix="wq-pg-test-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


async def _scalar(url: str, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar_one()
    finally:
        await engine.dispose()


async def test_server_answers_sqlalchemy_through_asyncpg(postgres_url: str) -> None:
    assert make_url(postgres_url).drivername == "postgresql+asyncpg"
    assert await _scalar(postgres_url, "SELECT 1") == 1


async def test_server_listens_on_loopback_only(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    assert make_url(postgres_url).host == HOST == "127.0.0.1"
    assert await _scalar(postgres_url, "SHOW listen_addresses") == "127.0.0.1"
    assert await _scalar(postgres_url, "SELECT host(inet_server_addr())") == "127.0.0.1"
    assert await _scalar(postgres_url, "SHOW port") == str(postgres_server.port)
    # the Unix socket is in the server's own directory, not the machine's /var/run/postgresql
    sockets = await _scalar(postgres_url, "SHOW unix_socket_directories")
    assert sockets == str(postgres_server.directory)


def test_server_runs_unprivileged_with_the_test_settings(postgres_server: PostgresServer) -> None:
    owner = os.stat(f"/proc/{postgres_server.pid}").st_uid
    if os.geteuid() == 0:
        assert owner != 0, "the server runs as root"
    else:
        assert owner == os.geteuid()
    settings = postgres_server.psql(
        "SELECT current_setting('fsync'), current_setting('full_page_writes'),"
        " current_setting('synchronous_commit'), current_setting('max_connections')"
    )
    assert settings == "off|off|on|200"


@pytest.mark.parametrize("round_", [1, 2])
async def test_each_test_gets_a_database_of_its_own_at_the_newest_schema(
    postgres_server: PostgresServer, postgres_url: str, round_: int
) -> None:
    name = make_url(postgres_url).database
    assert name is not None
    assert name not in _handed_out
    existing = postgres_server.psql("SELECT datname FROM pg_database").splitlines()
    assert name in existing
    assert not set(_handed_out) & set(existing), "an earlier test's database was not dropped"
    # The queue's tables, copied from the session's migrated template, and no rows.
    assert await _scalar(postgres_url, _USER_TABLES) == len(metadata.tables) + 1  # + Alembic's
    assert await _scalar(postgres_url, "SELECT count(*) FROM tasks") == 0
    # leave something behind that the next round must not see
    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE left_by_round_{round_} (x int)"))
    finally:
        await engine.dispose()
    _handed_out.append(name)


async def test_a_database_made_from_a_template_is_a_copy_of_it(
    postgres_databases: ScratchDatabases,
) -> None:
    template_url = postgres_databases.create()
    engine = create_async_engine(template_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE migrated (version int)"))
            await conn.execute(text("INSERT INTO migrated VALUES (42)"))
    finally:
        await engine.dispose()  # a template is copied only while nobody is connected to it
    template = make_url(template_url).database
    assert template is not None

    clone_url = postgres_databases.create(template=template)
    assert clone_url != template_url
    assert await _scalar(clone_url, "SELECT version FROM migrated") == 42
    engine = create_async_engine(clone_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO migrated VALUES (43)"))
    finally:
        await engine.dispose()
    assert await _scalar(template_url, "SELECT count(*) FROM migrated") == 1
    assert await _scalar(clone_url, "SELECT count(*) FROM migrated") == 2


def test_missing_programs_name_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotFound, match="apt-get install postgresql") as nowhere:
        find_programs({"PATH": str(tmp_path)}, debian_lib=tmp_path / "no-postgresql")
    assert "PG_BIN" in str(nowhere.value)
    with pytest.raises(PostgresNotFound, match=r"has no initdb, pg_ctl, postgres, psql"):
        find_programs({"PG_BIN": str(tmp_path), "PATH": os.environ.get("PATH", "")})


def test_the_programs_are_found_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.postgres_server"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "initdb").is_file()


def test_a_server_that_cannot_start_says_why_and_leaves_nothing(reachable_dir: Path) -> None:
    with pytest.raises(PostgresError, match=r"(?s)did not start.*shared_buffers"):
        PostgresServer.start({"shared_buffers": "plenty"}, parent=reachable_dir)
    assert list(reachable_dir.iterdir()) == []


def test_the_benchmarks_get_a_durable_server_of_their_own(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    out = tmp_path / "facts.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "postgres.py"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(out.read_text())
    assert facts["fsync"] == facts["full_page_writes"] == facts["synchronous_commit"] == "on"
    assert facts["listen_addresses"] == "127.0.0.1"
    assert make_url(facts["url"]).port != postgres_server.port
    assert not Path(facts["directory"]).exists(), "the benchmark server's directory was left"
    assert postgres_server.psql("SELECT 1") == "1"
