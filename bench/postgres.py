"""A throwaway PostgreSQL server on 127.0.0.1 for a benchmark run with ``--backend postgres``.

The server is the tests' (``tests/postgres_server.py``: a cluster of its own in a temporary
directory, a free loopback port, stopped and removed at the end), but with PostgreSQL's durable
defaults: fsync, full_page_writes and synchronous_commit on, as the peer benchmarks'
``servers.sh`` runs the server that procrastinate and saq are measured on (only
``max_connections`` is raised, to 200, there and here). The tests turn fsync off; a figure must
not be taken that way. ``server_facts()`` gives the settings to record beside the figures.

    .venv/bin/python bench/postgres.py [--json PATH]   # start one, print its facts, stop it
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

BACKENDS = ("sqlite", "postgres")
#: Nothing beyond tests.postgres_server.BASE_SETTINGS: the durable defaults.
BENCH_SETTINGS: Mapping[str, str] = {}
#: What a figure depends on, recorded beside it.
RECORDED_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_connections",
    "listen_addresses",
)


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="sqlite: database files in a temporary directory (default); postgres: a "
        "throwaway PostgreSQL server on 127.0.0.1 started for the run (bench/postgres.py)",
    )


@contextmanager
def benchmark_server(parent: Path | None = None) -> Iterator[PostgresServer]:
    """A throwaway server with the durable defaults, stopped and removed on leaving."""
    started = time.perf_counter()
    with PostgresServer.start(BENCH_SETTINGS, parent=parent) as server:
        logger.info(
            "benchmark PostgreSQL on %s:%d ready in %.2f s",
            server.host,
            server.port,
            time.perf_counter() - started,
        )
        yield server


def recreate_database(server: PostgresServer, name: str) -> str:
    """``name`` dropped if there and created empty, for one repetition; its SQLAlchemy URL."""
    server.drop_database(name)
    return server.create_database(name)


def server_facts(server: PostgresServer) -> dict[str, str]:
    """RECORDED_SETTINGS as the running server reports them."""
    names = ", ".join(f"'{name}'" for name in RECORDED_SETTINGS)
    rows = server.psql(
        f"SELECT name, current_setting(name) FROM pg_settings WHERE name IN ({names})"
    )
    facts = dict(row.split("|", 1) for row in rows.splitlines())
    return {name: facts[name] for name in RECORDED_SETTINGS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the facts to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with benchmark_server() as server:
        facts = {
            **server_facts(server),
            "url": server.url("postgres"),
            "directory": str(server.directory),
        }
    print(json.dumps(facts, indent=2))
    if args.json:
        args.json.write_text(json.dumps(facts, indent=2) + "\n")


if __name__ == "__main__":
    main()
