"""Worker processes for tests: start ``python -m tests.runtime_worker`` and watch its files."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class Spawner:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, db: Path | str, *args: str) -> subprocess.Popen[bytes]:
        """Start a worker on ``db`` (a SQLite file, or a database URL)."""
        n = len(self.procs)
        with (
            (self.directory / f"worker{n}.out").open("wb") as out,
            (self.directory / f"worker{n}.err").open("wb") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.runtime_worker", "--db", str(db), *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        return proc

    def err_path(self, proc: subprocess.Popen[bytes]) -> Path:
        return self.directory / f"worker{self.procs.index(proc)}.err"

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        n = self.procs.index(proc)
        out = (self.directory / f"worker{n}.out").read_text()
        err = (self.directory / f"worker{n}.err").read_text()
        return f"exit {proc.poll()}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            proc.wait(timeout=10)


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


async def until_logged(path: Path, line: str, proc: subprocess.Popen[bytes], sp: Spawner) -> None:
    await until_found(path, lambda found: line in found, line, proc, sp)


async def until_found(
    path: Path,
    check: Callable[[list[str]], bool],
    line: str,
    proc: subprocess.Popen[bytes],
    sp: Spawner,
) -> None:
    """Wait until ``check`` holds for the lines of ``path`` (``line`` says what is awaited)."""
    give_up = time.monotonic() + 20
    while not check(lines(path)):
        if proc.poll() is not None:
            pytest.fail(f"worker exited before {line!r}: {sp.output(proc)}")
        if time.monotonic() > give_up:
            pytest.fail(f"no {line!r} after 20 s: {sp.output(proc)}")
        await asyncio.sleep(0.02)


async def exit_code(proc: subprocess.Popen[bytes], within: float, sp: Spawner) -> int:
    give_up = time.monotonic() + within
    while (code := proc.poll()) is None:
        if time.monotonic() > give_up:
            pytest.fail(f"worker still running after {within} s: {sp.output(proc)}")
        await asyncio.sleep(0.02)
    return code
