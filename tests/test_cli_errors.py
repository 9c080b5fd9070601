"""No traceback reaches a ``wq`` user, and ``wq`` starts without loading what it does not use.

An unexpected exception is provoked in a real ``wq`` process by replacing one queue method
before ``main()`` runs (a stand-in for a bug); everything else is real.
"""

from __future__ import annotations

import json
import signal
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer

import worker.cli
from tests.test_cli import Result, one_error_line, with_queue
from tests.test_cli_config import python

HEAVY = ("alembic", "worker.runtime.workers", "worker.storage.migrate", "tts.engines", "rich.live")


def wq_with_bug(db: str | Path, *args: str) -> Result:
    """``wq ARGS`` in a process whose ``list_tasks`` raises RuntimeError (the queue's and
    the quick reads' own: both are QueueAdmin's)."""
    code = (
        "import sys\n"
        "from worker.queue.admin import QueueAdmin\n"
        "async def broken(self, *args, **kwargs):\n"
        "    raise RuntimeError('the list broke\\nand said more')\n"
        "QueueAdmin.list_tasks = broken\n"
        f"sys.argv = ['wq', *{list(args)!r}]\n"
        "from worker.cli import main\n"
        "main()\n"
    )
    return python(code)


def test_an_unexpected_error_is_one_line_and_exit_70(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    result = wq_with_bug(database_url, "--db", database_url, "list")
    assert result.code == 70, result
    assert one_error_line(result) == (
        "wq: error: internal error: RuntimeError: the list broke "
        "(wq --debug ... shows the traceback)"
    )
    debug = wq_with_bug(database_url, "--debug", "--db", database_url, "list")
    assert debug.code == 70, debug
    lines = debug.err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "RuntimeError: the list broke" in debug.err
    assert lines[-1].startswith("wq: error: internal error: RuntimeError: the list broke")


def imported_by(db: str | Path, *args: str) -> set[str]:
    """The modules a ``wq ARGS`` process had loaded when it exited."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        f"sys.argv = ['wq', '--db', {str(db)!r}, *{list(args)!r}]\n"
        "from worker.cli import main\n"
        "main()\n"
    )
    result = python(code)
    assert result.code == 0, result
    return set(json.loads(result.err.strip().splitlines()[-1]))


def test_help_and_reads_load_only_what_they_use(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    for args in (("--help",), ("list", "--help"), ("list",), ("stats",)):
        modules = imported_by(database_url, *args)
        loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
        assert loaded == [], args
        if "--help" in args:  # no database, no models, no tables to draw
            assert (
                not {"sqlalchemy", "rich", "worker.queue.worker_queue", "worker.core.models"}
                & modules
            ), args
    # typer converts a command's parameters with pydantic, but wq alone does not need it.
    assert "pydantic" not in imported_by(database_url, "--help")
    # A command builds itself alone: the other commands' modules stay unloaded.
    others = {"worker.cli.admin", "worker.cli.schedule", "worker.cli.serve", "worker.cli.web"}
    assert not others & imported_by(database_url, "list"), "list loaded another command"
    assert not {"worker.cli.serve", "worker.cli.web"} & imported_by(database_url, "db", "--help")


def test_a_broken_plugin_is_a_warning_and_the_rest_of_wq_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    group = worker.cli.PLUGIN_GROUP
    broken = [
        EntryPoint("missing", "tests.no_such_module:register", group),  # cannot import
        EntryPoint("raising", "json:loads", group),  # loads, then fails on the app
    ]
    monkeypatch.setattr(worker.cli, "entry_points", lambda group: broken)
    target = typer.Typer()
    worker.cli.load_plugins(target)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("wq: warning: plugin 'missing' (tests.no_such_module:register)")
    assert lines[1].startswith("wq: warning: plugin 'raising' (json:loads) could not be loaded")


def test_a_ctrl_c_swallowed_while_loading_still_interrupts(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python drops a KeyboardInterrupt raised inside an import's lock callback ("Exception
    ignored in ..."); wq's own handler remembers it, and the command stops before it opens the
    database (before, ``wq stats --watch`` then ran on until a second Ctrl-C)."""
    from typer.testing import CliRunner

    from worker.cli import app
    from worker.cli.session import _Interrupts

    with pytest.raises(KeyboardInterrupt):
        _Interrupts.handler(signal.SIGINT, None)  # as if during an import: raised, then lost
    try:
        result = CliRunner().invoke(app, ["--db", str(db_path), "stats"])
    finally:
        _Interrupts.seen = False
    assert result.exit_code == 130, result.output
    assert "wq: error: interrupted" in result.stderr
    assert not db_path.exists()  # stopped before anything was opened


def test_control_characters_in_a_task_are_shown_not_obeyed(tmp_path: Path) -> None:
    """A task's name, error and progress message are its producer's text: printed raw, an
    ESC in them would recolour, move the cursor or retitle the user's terminal."""
    from tests.support import make_task
    from tests.test_cli import wq_all

    db = tmp_path / "queue.db"
    evil = "evil\x1b]0;owned\x07\x1b[2J\x9b31m"
    with_queue(db, lambda queue: queue.enqueue([make_task(name=evil)]))
    [task] = with_queue(db, lambda queue: queue.list_tasks())
    for result in wq_all(db, ("list",), ("status", task.id), ("list", "--state", "pending")):
        assert result.code == 0, result.err
        assert "evil\\x1b]0;owned\\x07\\x1b[2J\\x9b31m" in result.out
        assert not any(char in result.out for char in "\x1b\x07\x9b")


def test_a_closed_stdout_or_an_ascii_one_is_no_error(tmp_path: Path) -> None:
    """``wq worker >&-`` (a daemon started without standard output) runs, and what a
    command prints is dropped; with PYTHONIOENCODING=ascii, what the encoding cannot hold
    shows as ``?``. Both were "internal error" (exit 70) before anything ran."""
    import os
    import subprocess

    from tests.support import make_task
    from tests.test_cli import ROOT, cli_env, wq, wq_command

    db = tmp_path / "queue.db"
    with_queue(db, lambda queue: queue.enqueue([make_task(name="naïve · ✓")]))
    closed = subprocess.run(
        wq_command(db, "list"), stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT,
        timeout=60, check=False, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert (closed.returncode, closed.stderr) == (0, "")
    ascii_out = wq(db, "list", env={"PYTHONIOENCODING": "ascii"})
    assert ascii_out.code == 0, ascii_out.err
    assert "na?ve ? ?" in ascii_out.out
    as_json = wq(db, "list", "--json", env={"PYTHONIOENCODING": "ascii"})
    assert as_json.out.isascii()
    assert [t["name"] for t in as_json.json()["tasks"]] == ["naïve · ✓"]  # escaped, whole


def test_a_closed_stdout_is_null_on_its_own_descriptor() -> None:
    """With standard input closed too, /dev/null opened plainly took descriptor 0 and left 1
    closed: the next file opened became the output, which child processes inherit."""
    import os
    import subprocess
    import sys

    from tests.test_cli import ROOT, cli_env

    code = (
        "import os, sys\n"
        "from worker.cli import _usable_streams\n"
        "_usable_streams()\n"
        "print('dropped')\n"
        "with open(os.devnull) as other:\n"
        "    sys.stderr.write(f'{os.readlink(\"/proc/self/fd/1\")} {other.fileno()}')\n"
    )

    def close_in_and_out() -> None:
        os.close(0)
        os.close(1)

    done = subprocess.run(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=cli_env(),
        cwd=ROOT, timeout=60, check=False, preexec_fn=close_in_and_out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    target, descriptor = done.stderr.split()
    assert target == "/dev/null"
    assert int(descriptor) not in (1, 2)  # 0 is free: standard input is closed
