"""The wheel installs ``worker`` and ``tts`` only, and an installed wheel finds its revisions.

The project's wheel is built for real (pip, with build isolation, as any installer would) and
installed with its dependencies into a plain virtual environment that does not see the
checkout; a queue is then initialized from outside the checkout. A top-level ``migrations``
package in the wheel would collide with any other Alembic project installed beside it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zipfile
from importlib.metadata import distributions, version
from pathlib import Path

import pytest

from worker.storage.revision import HEAD_REVISION, REVISIONS

ROOT = Path(__file__).resolve().parent.parent
DIST_INFO = f"worker_queue-{version('worker-queue')}.dist-info"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Run by the installed environment's interpreter: initialize a queue on the file argv[1] and
#: say where everything came from.
INITIALIZE = """
import asyncio, importlib.util, json, sys
import tts, worker
from worker import QueueConfig, WorkerQueue
from worker.storage.migrate import alembic_config

async def main():
    queue = WorkerQueue(QueueConfig(database_url=f"sqlite+aiosqlite:///{sys.argv[1]}"))
    await queue.initialize()
    await queue.close()

asyncio.run(main())
print(json.dumps({
    "worker": worker.__file__,
    "tts": tts.__file__,
    "script_location": alembic_config().get_main_option("script_location"),
    "migrations_importable": importlib.util.find_spec("migrations") is not None,
    "path": sys.path,
}))
"""


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; on failure, the assertion shows what it printed."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    command = " ".join(str(arg) for arg in args[:4])
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command} ... exited {done.returncode}:\n{output}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from the checkout once for this module."""
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, ROOT, cwd=out)
    (built,) = out.glob("*.whl")
    return built


def install(wheel: Path, directory: Path) -> tuple[Path, Path]:
    """A plain virtual environment in ``directory`` with the wheel and its dependencies (the
    versions this environment has, so that pip's cache serves them): its interpreter and its
    site-packages."""
    venv = directory / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=directory)
    python = venv / "bin" / "python"
    pinned = directory / "constraints.txt"
    pinned.write_text(
        "".join(
            f"{dist.metadata['Name']}=={dist.version}\n"
            for dist in distributions()
            if dist.metadata["Name"] != "worker-queue"
        )
    )
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "--quiet")
    run(*pip, "--constraint", pinned, wheel, cwd=directory)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = run(python, "-I", "-c", where, cwd=directory)
    return python, Path(purelib.stdout.strip())


def test_the_wheel_holds_worker_and_tts_at_the_top_level_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read(f"{DIST_INFO}/RECORD").decode()
    recorded = [line.split(",")[0] for line in record.splitlines() if line]
    assert sorted(recorded) == sorted(names)
    assert {name.split("/")[0] for name in names} == {"worker", "tts", DIST_INFO}
    assert {"worker/migrations/env.py", "worker/migrations/script.py.mako"} <= set(names)
    pages = {"worker/web/templates/base.html", "worker/web/templates/task_live.html",
             "worker/web/static/live.js", "worker/web/static/style.css"}  # fmt: skip
    assert pages <= set(names)
    versions = [name for name in names if name.startswith("worker/migrations/versions/")]
    assert sorted(Path(name).name.split("_")[0] for name in versions) == list(REVISIONS)


def test_an_installed_wheel_migrates_a_new_database(wheel: Path, tmp_path: Path) -> None:
    python, site = install(wheel, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = elsewhere / "queue.db"

    report = json.loads(run(python, "-I", "-c", INITIALIZE, db, cwd=elsewhere).stdout)

    assert report["worker"] == str(site / "worker" / "__init__.py")
    assert report["tts"] == str(site / "tts" / "__init__.py")
    assert report["script_location"] == str(site / "worker" / "migrations")
    assert report["migrations_importable"] is False
    assert not [entry for entry in report["path"] if Path(entry).is_relative_to(ROOT)]
    with sqlite3.connect(db) as raw:
        (revision,) = raw.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert revision == HEAD_REVISION
    assert "tasks" in tables


def test_an_install_without_its_revisions_runs_no_others(wheel: Path, tmp_path: Path) -> None:
    """Another project's top-level ``migrations`` beside an installed ``worker`` whose own went
    missing is refused, not run."""
    python, site = install(wheel, tmp_path)
    packaged = site / "worker" / "migrations"
    packaged.rename(site / "migrations")  # as another project's
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = elsewhere / "queue.db"

    done = subprocess.run(
        [python, "-I", "-c", INITIALIZE, db],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 1
    assert "FileNotFoundError: the queue's Alembic revisions are missing" in done.stderr
    assert f"neither {packaged}/env.py" in done.stderr
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == []
