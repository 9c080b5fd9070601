"""Writes to files, the moment they happen: Linux's inotify, through ctypes.

An idle SQLite worker learns of other processes' commits from the database files
(:class:`worker.runtime.wakeup.DatabaseWatcher` stats them every few milliseconds). Where
inotify is there, a :class:`FileEvents` on the files' directory sets an ``asyncio.Event`` as
soon as one of them is written (a commit appends to the ``-wal``), so the worker claims
within a turn of its loop instead of at its next stat. Elsewhere (other systems, a
filesystem or sandbox without inotify) :func:`watch` returns None and the stats go on alone;
they go on beside the events too, at their slower rate, for anything the events miss.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: inotify's event mask bits (linux/inotify.h): file modified, file created in the directory.
IN_MODIFY = 0x00000002
IN_CREATE = 0x00000100
#: ``struct inotify_event`` without its name: wd, mask, cookie, len.
_EVENT = struct.Struct("iIII")


def _load() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    return libc


_LIBC = _load()


class FileEvents:
    """``written`` is set when one of the watched files is written or created (on the
    running loop; :meth:`close` when done)."""

    def __init__(self, fd: int, names: Sequence[str]) -> None:
        self._fd = fd
        self._names = {os.fsencode(name) for name in names}
        self.written = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        offset, size = 0, _EVENT.size
        while offset + size <= len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + size : offset + size + length].rstrip(b"\0")
            offset += size + length
            if name in self._names:
                self.written.set()

    def drain(self) -> None:
        """Forget the writes seen so far (those still unread too)."""
        self._read()
        self.written.clear()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)


def watch(paths: Sequence[Path]) -> FileEvents | None:
    """Events of writes to ``paths`` (files of one directory, which need not exist yet), or
    None where inotify is not to be had."""
    if _LIBC is None or not paths:
        return None
    fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        log.debug("inotify_init1 failed: %s", os.strerror(ctypes.get_errno()))
        return None
    directory = os.fsencode(paths[0].parent)
    if _LIBC.inotify_add_watch(fd, directory, IN_MODIFY | IN_CREATE) < 0:
        log.debug("inotify_add_watch failed: %s", os.strerror(ctypes.get_errno()))
        os.close(fd)
        return None
    return FileEvents(fd, [path.name for path in paths])
