"""Rows holding text that is not UTF-8: read them anyway, on the paths that must not stop.

Python's ``sqlite3`` decodes every TEXT value as UTF-8 and fails the whole fetch ("Could
not decode to UTF-8 column ...") at the first one that is not. Such a row can be left by an
older version of the queue (a lone surrogate that SQLite's JSON functions turned into bytes)
or written by another program, and one of them would stop every sweep, claim and listing
that meets it. So those paths run their statement as usual and, only when it fails that
way, once more with a tolerant decoder on that connection (:func:`tolerant`): bad text
comes back as :class:`~worker.storage.garbled.Garbled`, with U+FFFD for each byte that is
not UTF-8, and the caller reports the task and skips or discards it. Nothing costs
anything until such a row exists.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from worker.storage.garbled import Garbled, decode, garbled_columns

__all__ = ["Garbled", "decode", "garbled_columns", "is_undecodable", "rows", "tolerant"]

log = logging.getLogger(__name__)

_UNDECODABLE = "Could not decode to UTF-8"


def is_undecodable(error: BaseException) -> bool:
    """Whether ``error`` (a driver error, SQLAlchemy's wrapping of one, or a
    :class:`~worker.core.errors.StorageError`) is ``sqlite3`` failing to decode stored text."""
    cause: Any = error
    for attribute in ("orig", "cause"):
        cause = getattr(cause, attribute, None) or cause
    return isinstance(cause, sqlite3.OperationalError) and str(cause).startswith(_UNDECODABLE)


@asynccontextmanager
async def tolerant(conn: AsyncConnection) -> AsyncIterator[None]:
    """Within this block, ``conn`` decodes text with :func:`decode` (aiosqlite only; other
    drivers store nothing but valid text)."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if not hasattr(driver, "text_factory"):
        yield
        return
    previous = driver.text_factory
    driver.text_factory = decode
    try:
        yield
    finally:
        driver.text_factory = previous


async def rows(conn: AsyncConnection, statement: Executable) -> tuple[list[Any], bool]:
    """``statement``'s rows, and whether they were read tolerantly (then text that is not
    UTF-8 is :class:`Garbled`, which :func:`garbled_columns` finds)."""
    try:
        return list((await conn.execute(statement)).all()), False
    except exc.OperationalError as error:
        if not is_undecodable(error):
            raise
        log.warning("some stored text is not UTF-8; reading it with replacements: %s", error.orig)
    async with tolerant(conn):
        return list((await conn.execute(statement)).all()), True
