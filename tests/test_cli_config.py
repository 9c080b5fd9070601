"""``QUEUE_*`` settings as ``wq`` and ``make demo`` read them: real subprocesses (the API's
side of each case: test_config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_cli import ROOT, Result, cli_env, one_error_line, wq, wq_all, wq_command

WARNING = (
    "wq: warning: ignoring unknown variable QUEUE_CONCURENCY (did you mean QUEUE_CONCURRENCY?)"
)


def wq_each(*calls: tuple[Path | None, tuple[str, ...], dict[str, str]]) -> list[Result]:
    """Run ``wq`` invocations side by side, each with its own database and environment."""
    procs = [
        subprocess.Popen(
            wq_command(db, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(env),
            cwd=ROOT,
        )
        for db, args, env in calls
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(Result(proc.returncode, out, err))
    return results


def python(code: str, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(env),
        cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_every_kind_of_command_accepts_queue_data_dir(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    env = {"QUEUE_DATA_DIR": str(tmp_path / "data")}
    assert wq(db, "db", "upgrade", env=env).code == 0
    listed, paused, submitted, worked = wq_all(
        db,
        ("list", "--json"),
        ("pause", "q"),
        ("submit", "command", "--queue", "other", "--", "true"),
        ("worker", "--burst", "--queue", "none"),
        env=env,
    )
    for result in (listed, paused, submitted, worked):
        assert result.code == 0, result
        # Neither a warning nor an error about the settings (pausing the empty queue 'q'
        # warns that no task is in it).
        assert "QUEUE_" not in result.err, result
        assert "error" not in result.err, result


def test_a_misspelt_variable_warns_in_one_line_and_runs_on(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    env = {"QUEUE_CONCURENCY": "8"}
    upgraded, worked = wq_all(
        db, ("db", "upgrade"), ("worker", "--burst", "--log-level", "warning"), env=env
    )
    assert upgraded.code == 0, upgraded
    assert upgraded.err.strip() == WARNING
    assert worked.code == 0, worked
    assert worked.err.count("QUEUE_CONCURENCY") == 1  # once, not again in the log format
    assert WARNING in worked.err.splitlines()


def test_bad_values_exit_2_with_a_line_per_variable(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    several, visibility, not_url, unsupported = wq_each(
        (db, ("list",), {"QUEUE_MAX_ATTEMPTS": "0", "QUEUE_BUSY_TIMEOUT": "inf"}),
        (db, ("db", "upgrade"), {"QUEUE_VISIBILITY_TIMEOUT": "inf"}),
        (None, ("status", "x"), {"QUEUE_DATABASE_URL": "sqlite:"}),
        (None, ("--db", "mysql+aiomysql://me:secret@db/q", "list"), {}),
    )
    for result in (several, visibility, not_url, unsupported):
        assert result.code == 2, result
        assert "Traceback" not in result.err
    assert several.err.splitlines() == [
        "wq: error: invalid configuration: QUEUE_MAX_ATTEMPTS: Input should be greater than "
        "or equal to 1 (got '0')",
        "wq: error: invalid configuration: QUEUE_BUSY_TIMEOUT: Input should be a finite "
        "number (got 'inf')",
    ]
    assert "QUEUE_VISIBILITY_TIMEOUT: Input should be a finite number" in one_error_line(visibility)
    assert "QUEUE_DATABASE_URL: not a database URL: 'sqlite:'" in one_error_line(not_url)
    line = one_error_line(unsupported)
    assert "--db: 'mysql' is not supported" in line
    assert "secret" not in line
    assert not db.exists()


def test_a_server_that_cannot_be_reached_is_one_line_naming_it(tmp_path: Path) -> None:
    """A PostgreSQL URL whose server is not there: exit 3, the URL without its password."""
    url = "postgresql://me:secret@127.0.0.1:1/q"  # port 1: nothing listens
    (result,) = wq_each((None, ("--db", url, "list"), {}))
    assert result.code == 3, result
    line = one_error_line(result)
    assert "postgresql+asyncpg://me:***@127.0.0.1:1/q" in line, line
    assert "secret" not in line
    assert "Traceback" not in result.err


def test_a_sync_sqlite_url_works(tmp_path: Path) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    upgraded, listed = wq_each(
        (None, ("--db", f"sqlite:///{first}", "db", "upgrade"), {}),
        (None, ("db", "upgrade"), {"QUEUE_DATABASE_URL": f"sqlite+pysqlite:///{second}"}),
    )
    assert (upgraded.code, listed.code) == (0, 0), (upgraded, listed)
    assert first.is_file()
    assert second.is_file()


def test_a_missing_driver_says_what_to_install(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    code = (
        "import sys\n"
        "sys.modules['aiosqlite'] = None  # as if it were not installed\n"
        f"sys.argv = ['wq', '--db', {str(db)!r}, 'list']\n"
        "from worker.cli import main\n"
        "main()\n"
    )
    result = python(code)
    assert result.code == 2, result
    line = one_error_line(result)
    assert "sqlite needs the aiosqlite driver, which is not installed" in line
    assert "pip install aiosqlite" in line


def test_make_demo_prints_one_line_per_bad_variable() -> None:
    result = python(
        "import sys, tts.demo; sys.exit(tts.demo.main())",
        env={"QUEUE_BUSY_TIMEOUT": "inf", "QUEUE_DATABASE_URL": "sqlite:"},
    )
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert [line.split(": ")[3] for line in lines] == ["QUEUE_DATABASE_URL", "QUEUE_BUSY_TIMEOUT"]
    assert all(line.startswith("demo: error: invalid configuration: ") for line in lines)
