"""Wake-ups pushed by PostgreSQL: LISTEN on a connection of its own, NOTIFY from writers.

A transaction that makes work claimable (an enqueue) sends one ``NOTIFY`` on
:data:`TASKS_CHANNEL` (PostgreSQL delivers it at commit, and folds identical ones of one
transaction into one); a cancel request of a running task sends one on
:data:`CANCELS_CHANNEL`. Each process that runs workers keeps one :class:`Listener`: a
dedicated asyncpg connection outside SQLAlchemy's pool (a pooled connection is handed to
other work between statements and would miss notifications) that ``LISTEN``\\ s on both and
calls back, which pokes the queue's in-process notifiers, the same that wake workers of the
enqueuing process itself. A lost connection is reopened with backoff, and the workers' poll
(``QUEUE_POLL_INTERVAL``) covers the gap, as it covers ``QUEUE_POSTGRES_NOTIFY=false``
(PgBouncer in transaction mode, where LISTEN does not work).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from worker.core.database_url import postgres_options

log = logging.getLogger(__name__)

TASKS_CHANNEL = "worker_queue_tasks"
CANCELS_CHANNEL = "worker_queue_cancels"

#: Waits between attempts to reopen a lost listening connection, in seconds.
RECONNECT_S = (0.1, 0.5, 1.0, 2.0, 5.0)


def notify(channel: str) -> sa.TextClause:
    """The statement a writer runs in its transaction to wake the listeners of ``channel``."""
    return sa.text(f"SELECT pg_notify('{channel}', '')")


#: The URL options asyncpg reads from a DSN's query; it sends any other to the server as a
#: setting (``ssl=require`` would be refused there), so those are passed as arguments.
DSN_OPTIONS = frozenset(
    {"host", "port", "user", "password", "database", "passfile", "service",
     "target_session_attrs", "krbsrvname", "gsslib"}
)  # fmt: skip


def asyncpg_connect_args(url: str) -> tuple[str, dict[str, Any]]:
    """A SQLAlchemy ``postgresql+asyncpg://`` URL as asyncpg's ``connect()`` takes it: the
    DSN, and the URL's other options as arguments, read as the engine's are."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    outside = [name for name in parsed.query if name not in DSN_OPTIONS]
    typed = postgres_options(parsed.query)
    arguments: dict[str, Any] = {
        name: typed.get(name, parsed.query[name])
        for name in outside
        if name != "prepared_statement_cache_size"  # SQLAlchemy's, not asyncpg's
    }
    dsn = parsed.difference_update_query(outside)
    for name in ("host", "port"):  # several hosts: asyncpg's parser keeps a repeated key's last
        given = dsn.query.get(name)
        if isinstance(given, tuple):
            dsn = dsn.update_query_dict({name: ",".join(given)})
    return dsn.render_as_string(hide_password=False), arguments


def _ended(lost: asyncio.Event, connection: Any) -> None:
    lost.set()


class Listener:
    """One LISTENing connection calling ``on_notify[channel]()`` for each notification."""

    def __init__(self, url: str, on_notify: dict[str, Callable[[], None]]) -> None:
        self._dsn, self._arguments = asyncpg_connect_args(url)
        self._on_notify = on_notify
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while LISTEN is in force (tests wait on it)
        self.opened = 0  # how many times LISTEN was set up (a lost connection reopens it)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _received(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        callback = self._on_notify.get(channel)
        if callback is not None:
            callback()

    async def _run(self) -> None:
        import asyncpg

        failures = 0
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, **self._arguments)
            except (OSError, asyncpg.PostgresError) as error:
                wait = RECONNECT_S[min(failures, len(RECONNECT_S) - 1)]
                log.warning("cannot open the LISTEN connection (%s); again in %s s", error, wait)
                failures += 1
                await asyncio.sleep(wait)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(functools.partial(_ended, lost))
            try:
                for channel in self._on_notify:
                    await connection.add_listener(channel, self._received)
                failures = 0
                self.opened += 1
                self.listening.set()
                # Anything enqueued while no connection listened is found by the next claim:
                # wake everyone once, then wait for notifications or the connection's end.
                for callback in self._on_notify.values():
                    callback()
                await lost.wait()
                log.warning("the LISTEN connection was lost; reopening it")
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("the LISTEN connection failed (%s); reopening it", error)
            finally:
                self.listening.clear()
                with contextlib.suppress(OSError, asyncpg.PostgresError):
                    await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(RECONNECT_S[0])
