"""Throwaway PostgreSQL servers: one cluster of its own per test session or benchmark run.

``PostgresServer.start()`` makes a new cluster (``initdb``) in a new temporary directory and
starts it with ``pg_ctl`` on a free port of 127.0.0.1 only, its Unix socket in that directory
too; ``stop()`` stops it (``pg_ctl stop -m fast``) and removes the directory. Nothing is shared
with another server on the machine (no fixed port, no ``/var/run/postgresql``), so two test
suites running at once each get their own and cannot meet.

initdb and postgres refuse to run as root. As root, the cluster belongs to, and the server runs
as, the unprivileged ``postgres`` user (created as a system user when missing); the commands
are started as that user by ``subprocess`` itself (``user=``/``group=``, no ``su``).

The server programs are looked for in ``PG_BIN`` (as the peer benchmarks' ``servers.sh``
reads it), ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` (Debian's layout, newest
first) and ``PATH``. This module imports only the standard library, so that
``python -m tests.postgres_server`` (which prints where the programs are, or why none were
found) runs in ``scripts/ensure-postgres.sh`` with any Python. SQL is sent with the server's
own ``psql``: synchronous, so that fixtures of sync and async tests alike can use it, and
no event loop of the test's is touched.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: The cluster's superuser (``initdb -U``); loopback and socket connections are trusted.
SUPERUSER = "postgres"
#: The OS user that owns clusters started as root.
OS_USER = "postgres"
DEBIAN_LIB = Path("/usr/lib/postgresql")
PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")

#: Always set; ``listen_addresses``, ``port`` and ``unix_socket_directories`` are the module's.
BASE_SETTINGS: Mapping[str, str] = {
    # the tests open many engines, and worker subprocesses open their own
    "max_connections": "200",
}
#: For the tests: no flush to disk. A crash of the machine may lose the cluster, which is thrown
#: away anyway. synchronous_commit keeps its default (on): a commit still waits for its WAL write.
TEST_SETTINGS: Mapping[str, str] = {"fsync": "off", "full_page_writes": "off"}
_OWN_SETTINGS = frozenset({"listen_addresses", "port", "unix_socket_directories"})

INSTALL_HINT = (
    "Install PostgreSQL's server programs: on Debian or Ubuntu `apt-get install postgresql` "
    "(package postgresql-15 on Debian 12; as root, `make check` installs it itself through "
    "scripts/ensure-postgres.sh), on Fedora `dnf install postgresql-server`, with Homebrew "
    "`brew install postgresql`; or set PG_BIN to the directory that holds "
    + ", ".join(PROGRAMS)
    + "."
)

PORT_ATTEMPTS = 5
# sockaddr_un.sun_path is 108 bytes on Linux, with the terminating NUL
_SOCKET_PATH_MAX = 107
_LOG_TAIL_CHARS = 3000
# Debian's postgresql-common would give the postgres user this home (and /bin/bash)
_USERADD_HOME = ("--home-dir", "/var/lib/postgresql", "--shell", "/usr/sbin/nologin")


class PostgresNotFound(RuntimeError):
    """The PostgreSQL server programs are not on this machine; the message says what to install."""


class PostgresError(RuntimeError):
    """A throwaway server could not be made, started, stopped or sent a command."""


@dataclass(frozen=True)
class PostgresPrograms:
    """The directory holding initdb, pg_ctl, postgres and psql of one PostgreSQL version."""

    bindir: Path

    def path(self, program: str) -> Path:
        return self.bindir / program


def _missing_programs(bindir: Path) -> list[str]:
    return [
        name
        for name in PROGRAMS
        if not ((bindir / name).is_file() and os.access(bindir / name, os.X_OK))
    ]


def _major_version(bindir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); names that are not versions sort first."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (-1,)


def _candidates(environ: Mapping[str, str], debian_lib: Path) -> list[tuple[str, Path]]:
    """Where to look, in order, each with how it was found (for the message if none fits)."""
    path = environ.get("PATH", os.defpath)
    found: list[tuple[str, Path]] = []
    pg_config = shutil.which("pg_config", path=path)
    if pg_config is not None:
        done = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode == 0 and done.stdout.strip():
            found.append((f"{pg_config} --bindir", Path(done.stdout.strip())))
        else:
            logger.warning("%s --bindir failed: %s", pg_config, done.stderr.strip())
    versions = sorted(debian_lib.glob("*/bin"), key=_major_version, reverse=True)
    found.extend((str(debian_lib / "*" / "bin"), bindir) for bindir in versions)
    for program in ("pg_ctl", "initdb"):
        on_path = shutil.which(program, path=path)
        if on_path is not None:
            # pg_ctl runs the postgres beside its real file, not beside a symlink to it
            found.append((f"PATH ({on_path})", Path(on_path).resolve().parent))
    return found


def find_programs(
    environ: Mapping[str, str] | None = None, debian_lib: Path = DEBIAN_LIB
) -> PostgresPrograms:
    """The first directory with all of PROGRAMS; PostgresNotFound, saying where it looked."""
    env = os.environ if environ is None else environ
    explicit = env.get("PG_BIN")
    if explicit:
        missing = _missing_programs(Path(explicit))
        if missing:
            raise PostgresNotFound(f"PG_BIN={explicit} has no {', '.join(missing)}. {INSTALL_HINT}")
        return PostgresPrograms(Path(explicit))
    looked: list[str] = []
    seen: set[Path] = set()
    for how, bindir in _candidates(env, debian_lib):
        if bindir in seen:
            continue
        seen.add(bindir)
        missing = _missing_programs(bindir)
        if not missing:
            return PostgresPrograms(bindir)
        looked.append(f"{bindir} (from {how}; no {', '.join(missing)})")
    where = "; ".join(looked) if looked else f"no pg_config, {debian_lib}/*/bin or pg_ctl on PATH"
    raise PostgresNotFound(
        f"PostgreSQL server programs not found (looked in: {where}). {INSTALL_HINT}"
    )


def _cluster_owner() -> pwd.struct_passwd | None:
    """The unprivileged user to run initdb and postgres as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(OS_USER)
    logger.info("creating the system user %r to own throwaway PostgreSQL clusters", OS_USER)
    done = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", *_USERADD_HOME, OS_USER],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    try:
        # another test suite may have created it in the meantime (useradd then fails)
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresError(
            f"initdb and postgres refuse to run as root, and the user {OS_USER!r} to run them "
            f"as could not be created: useradd said {done.stderr.strip()!r}"
        ) from None


def _child_env(owner: pwd.struct_passwd | None) -> dict[str, str]:
    """Our environment without libpq's PG* variables (they would redirect psql), in the C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if owner is not None:
        env.update(USER=owner.pw_name, LOGNAME=owner.pw_name, HOME=owner.pw_dir)
    return env


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier; PostgresError if PostgreSQL would truncate it."""
    if not name or len(name.encode()) > 63 or "\0" in name:
        raise PostgresError(f"not a usable database name: {name!r} (1 to 63 bytes, no NUL)")
    return '"' + name.replace('"', '""') + '"'


def _free_port() -> int:
    """A port free on 127.0.0.1 now; the server may still lose it to someone else (retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, start: int = 0) -> str:
    try:
        with path.open("rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no server log was written)"
    return text[-_LOG_TAIL_CHARS:].strip() or "(the server log is empty)"


class PostgresServer:
    """One running throwaway server; ``with PostgresServer.start() as server:`` stops it.

    ``url(db)`` is SQLAlchemy's ``postgresql+asyncpg://postgres@127.0.0.1:PORT/db``, ``dsn(db)``
    libpq's (``postgresql://...``, for asyncpg.connect or psycopg).
    """

    host = HOST
    user = SUPERUSER

    def __init__(
        self, programs: PostgresPrograms, directory: Path, owner: pwd.struct_passwd | None
    ) -> None:
        self.programs = programs
        self.directory = directory
        self.owner = owner
        self.port = 0
        self.version = ""
        self.version_num = 0
        self._running = False

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    @property
    def pid(self) -> int:
        """The postmaster's process id (the first line of postmaster.pid)."""
        return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])

    @classmethod
    def start(
        cls,
        settings: Mapping[str, str] | None = None,
        *,
        parent: Path | None = None,
        timeout: float = 120.0,
    ) -> PostgresServer:
        """initdb, configure (BASE_SETTINGS, then ``settings``) and start a new server.

        ``parent`` (default: the system's temporary directory) must be reachable by the
        ``postgres`` user when we are root. On any failure nothing is left running or on disk.
        """
        extra = dict(settings or {})
        if reserved := _OWN_SETTINGS & extra.keys():
            raise PostgresError(f"{', '.join(sorted(reserved))} are set by PostgresServer itself")
        programs = find_programs()
        owner = _cluster_owner()
        started = time.perf_counter()
        directory = Path(tempfile.mkdtemp(prefix="worker-queue-pg-", dir=parent))
        server = cls(programs, directory, owner)
        try:
            if len(str(directory / ".s.PGSQL.65535")) > _SOCKET_PATH_MAX:
                raise PostgresError(
                    f"{directory} is too long a path for the server's Unix socket; "
                    "pass a shorter parent (or TMPDIR)"
                )
            if owner is not None:
                os.chown(directory, owner.pw_uid, owner.pw_gid)
            server._initdb(timeout)
            server._configure({**BASE_SETTINGS, **extra})
            server._start(timeout)
            version, number = server.psql(
                "SELECT current_setting('server_version'), current_setting('server_version_num')"
            ).split("|")
            server.version, server.version_num = version, int(number)
        except BaseException:
            server._discard()
            raise
        logger.info(
            "PostgreSQL %s throwaway server on %s:%d (%s, pid %d) up in %.2f s",
            server.version,
            HOST,
            server.port,
            directory,
            server.pid,
            time.perf_counter() - started,
        )
        return server

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a server program, as the cluster's owner when we are root."""
        owner = self.owner
        return subprocess.run(
            argv,
            env=_child_env(owner),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
        )

    def _initdb(self, timeout: float) -> None:
        initdb = [str(self.programs.path("initdb")), "-D", str(self.data_dir), "-U", SUPERUSER]
        # the C locale: none need be installed; --no-sync: nothing is flushed for a throwaway
        done = self._run(
            [*initdb, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], timeout
        )
        if done.returncode != 0:
            raise PostgresError(
                f"initdb failed (exit {done.returncode}) in {self.data_dir}"
                + (
                    f" as {self.owner.pw_name} (who must be able to reach it: pass another"
                    " parent, or TMPDIR)"
                    if self.owner
                    else ""
                )
                + f":\n{(done.stderr or done.stdout).strip()}"
            )

    def _configure(self, settings: Mapping[str, str]) -> None:
        lines = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.directory),
            **settings,
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# a throwaway server of worker-queue's (tests/postgres_server.py)\n")
            conf.writelines(f"{key} = {_conf_value(value)}\n" for key, value in lines.items())

    def _start(self, timeout: float) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = _free_port()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            pg_ctl = [str(self.programs.path("pg_ctl")), "-D", str(self.data_dir)]
            wait = ["-w", "-t", str(int(timeout))]
            done = self._run(
                [*pg_ctl, "-l", str(self.log_path), *wait, "-o", f"-p {port}", "start"],
                timeout + 30,
            )
            if done.returncode == 0:
                self.port = port
                self._running = True
                # a session interrupted before its fixtures' teardown still stops its server
                atexit.register(self._stop_at_exit)
                break
            # pg_ctl may give up waiting on a server that goes on starting
            self._running = self._status() == 0
            log = _tail(self.log_path, log_start)
            if "Address already in use" in log and attempt < PORT_ATTEMPTS:
                logger.warning("port %d was taken before PostgreSQL bound it; trying another", port)
                continue
            raise PostgresError(
                f"PostgreSQL did not start on {HOST}:{port} (pg_ctl exit {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}); the server log ends:\n{log}"
            )
        # pg_ctl -w waited for the server to accept connections; check the TCP side is there
        with socket.create_connection((HOST, self.port), timeout=10):
            pass

    def url(self, database: str) -> str:
        """SQLAlchemy's URL of ``database`` on this server, through asyncpg."""
        return f"postgresql+asyncpg://{SUPERUSER}@{HOST}:{self.port}/{quote(database, safe='')}"

    def dsn(self, database: str = "postgres") -> str:
        """libpq's URL of ``database`` (asyncpg.connect, psycopg, psql)."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{quote(database, safe='')}"

    def psql(self, sql: str, database: str = "postgres", timeout: float = 120.0) -> str:
        """Run one SQL command through psql (autocommit); its rows, fields between ``|``."""
        # -X: no ~/.psqlrc; -w: never wait for a password at a terminal
        psql = [
            str(self.programs.path("psql")),
            "-X",
            "-w",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        done = subprocess.run(
            [*psql, "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            env=_child_env(None),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise PostgresError(
                f"psql on {HOST}:{self.port}/{database} failed (exit {done.returncode}) "
                f"running {sql!r}: {done.stderr.strip()}"
            )
        return done.stdout.strip()

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create ``name`` (a copy of ``template`` if given) and return its SQLAlchemy URL.

        PostgreSQL copies a template only while nobody is connected to it: dispose of the
        engines that prepared it first.
        """
        sql = f"CREATE DATABASE {quote_identifier(name)}"
        if template is not None:
            sql += f" TEMPLATE {quote_identifier(template)}"
        self.psql(sql)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, ending the sessions still connected to it."""
        self.psql(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")

    def _status(self) -> int:
        """pg_ctl status: 0 running, 3 not running, 4 no data directory."""
        pg_ctl = str(self.programs.path("pg_ctl"))
        return self._run([pg_ctl, "-D", str(self.data_dir), "status"], 60).returncode

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended) and remove its directory."""
        if self._running:
            atexit.unregister(self._stop_at_exit)
            pg_ctl = [str(self.programs.path("pg_ctl")), "-D", str(self.data_dir), "-w"]
            done = self._run([*pg_ctl, "-t", "60", "-m", "fast", "stop"], 90)
            if done.returncode != 0 and self._status() == 0:
                logger.warning(
                    "pg_ctl stop -m fast failed (%s); stopping %s immediately",
                    (done.stderr or done.stdout).strip(),
                    self.data_dir,
                )
                done = self._run([*pg_ctl, "-t", "60", "-m", "immediate", "stop"], 90)
                if done.returncode != 0 and self._status() == 0:
                    raise PostgresError(
                        f"the server in {self.data_dir} (pid file there) did not stop: "
                        f"{(done.stderr or done.stdout).strip()}; its directory is left in place"
                    )
            self._running = False
        if self.directory.exists():
            shutil.rmtree(self.directory)

    def _stop_at_exit(self) -> None:
        logger.warning("stopping the throwaway server in %s at exit", self.directory)
        self.stop()

    def _discard(self) -> None:
        """After a failed start: stop what may run, remove the directory, keep the first error."""
        try:
            self.stop()
        except Exception:
            logger.exception("cleaning up the throwaway server in %s failed", self.directory)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ScratchDatabases:
    """Fresh databases on one server, uniquely named after their test, dropped by ``drop_all()``."""

    _serial = itertools.count(1)

    def __init__(self, server: PostgresServer, label: str = "") -> None:
        self.server = server
        self.label = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
        self.names: list[str] = []

    def create(self, *, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); its SQLAlchemy URL."""
        name = f"t{next(self._serial)}_{self.label}"[:63].rstrip("_")
        url = self.server.create_database(name, template=template)
        self.names.append(name)
        return url

    def drop_all(self) -> None:
        while self.names:
            self.server.drop_database(self.names.pop())


def main() -> int:
    """Print the directory of the server programs, or why none was found (exit 1)."""
    try:
        programs = find_programs()
    except PostgresNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    print(programs.bindir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
