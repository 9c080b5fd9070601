"""``wq submit`` and ``wq worker`` in subprocesses: request kinds, options, --wait, --burst."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import (
    ROOT,
    VOICE,
    Result,
    cli_env,
    one_error_line,
    with_queue,
    wq,
    wq_all,
    wq_command,
)
from worker import Task, WorkerQueue

pytestmark = pytest.mark.timeout(90)


def test_submit_command_and_call_with_their_options(database_url: str) -> None:
    command = wq(
        database_url, "submit", "command", "--cwd", str(ROOT), "--env", "A=1", "-e", "URL=a=b",
        "--timeout", "30", "--queue", "jobs", "--priority", "-5", "--json",
        "--", sys.executable, "-c", "print(1)", "--json",
    )  # fmt: skip
    assert command.code == 0, command.err
    first = command.json()
    request = first["items"][0]["request"]
    assert first["items"][0]["kind"] == "command"
    assert request["argv"] == [sys.executable, "-c", "print(1)", "--json"]
    assert (request["cwd"], request["env"]) == (str(ROOT), {"A": "1", "URL": "a=b"})
    assert (request["timeout_s"], first["timeout_s"]) == (30.0, 30.0)
    assert (first["queue"], first["priority"]) == ("jobs", -5)

    call = wq(
        database_url, "submit", "call", "os.path:join", "--args", '["a", "b"]', "--kwargs", "{}",
        "--depends-on", first["id"], "--priority", "critical", "--idempotency-key", "join-1",
        "--json",
    )  # fmt: skip
    assert call.code == 0, call.err
    second = call.json()
    assert second["items"][0]["request"] == {
        "target": "os.path:join",
        "args": ["a", "b"],
        "kwargs": {},
    }
    assert (second["depends_on"], second["waiting_on"], second["priority"]) == (
        [first["id"]],
        1,
        20,
    )

    bad_args, bad_env = wq_all(
        database_url,
        ("submit", "call", "os.path:join", "--args", '{"a": 1}'),
        ("submit", "command", "--env", "NOVALUE", "--", "true"),
    )
    assert bad_args.code == 2
    assert "expected a JSON array" in bad_args.err
    assert bad_env.code == 2
    assert "NAME=VALUE" in bad_env.err
    assert with_queue(database_url, lambda queue: queue.get_queue_stats())["total"] == 2


def test_an_idempotency_key_in_use_returns_the_live_task(database_url: str) -> None:
    first = wq(database_url, "submit", "tts", "once", "--voice", VOICE, "--idempotency-key", "k1")
    again = wq(database_url, "submit", "tts", "once", "--voice", VOICE, "--idempotency-key", "k1")
    assert (again.code, again.out) == (0, first.out), again.err


def _start_waiting(db: str | Path, name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        wq_command(db, "submit", "tts", f"Say {name}", "--voice", VOICE, "--name", name,
                   "--wait", *extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT,
    )  # fmt: skip


def test_submit_wait_exits_0_when_completed_and_4_when_discarded(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())  # migrate once, up front
    done = _start_waiting(database_url, "done")
    failed = _start_waiting(database_url, "failed", "--json")
    try:
        assert done.stdout is not None
        done_id = done.stdout.readline().strip()

        async def work(queue: WorkerQueue) -> None:
            claimed: dict[str, Task] = {}
            deadline = time.monotonic() + 30
            while len(claimed) < 2 and time.monotonic() < deadline:
                claimed.update((t.name or "", t) for t in await queue.dequeue(2))
                await asyncio.sleep(0.05)
            ok, bad = claimed["done"], claimed["failed"]
            assert ok.lease_id is not None
            await queue.set_progress(ok.id, ok.lease_id, 1, 2, "first half")
            await asyncio.sleep(0.3)
            await queue.mark_as_complete(ok.id, lease_id=ok.lease_id, results=["done.wav"])
            await queue.mark_as_discarded(bad.id, "voice not installed", lease_id=bad.lease_id)

        with_queue(database_url, work)
        rest, done_err = done.communicate(timeout=30)
        failed_out, failed_err = failed.communicate(timeout=30)
    finally:
        done.kill()
        failed.kill()
    assert (done.returncode, rest) == (0, ""), done_err
    assert len(done_id) == 26
    assert failed.returncode == 4
    outcome = Result(failed.returncode, failed_out, failed_err)
    final = outcome.json()
    assert (final["state"], final["last_error"]) == ("discarded", "voice not installed")
    assert one_error_line(outcome) == (
        f"wq: error: task {final['id']} ended discarded: voice not installed"
    )


def test_worker_burst_runs_submitted_work(database_url: str) -> None:
    allow = {"QUEUE_ALLOW_COMMANDS": "true"}
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    waiting = subprocess.Popen(
        wq_command(database_url, "submit", "command", "--wait", "--",
                   sys.executable, "-c", "print(1)"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(allow), cwd=ROOT,
    )  # fmt: skip
    try:
        assert waiting.stdout is not None
        ok_id = waiting.stdout.readline().strip()
        failing = wq(
            database_url, "submit", "command", "--max-attempts", "1",
            "--", sys.executable, "-c", "raise SystemExit(3)",
        )  # fmt: skip
        bad_id = failing.out.strip()
        burst, missing = wq_all(
            database_url,
            ("worker", "--burst", "-c", "2", "-q", "default", "--log-level", "warning"),
            ("worker", "--burst", "--processors", "no_such_module_xyz"),
            env=allow,
        )
        assert burst.code == 0, burst.err
        assert "worker stopped:" in burst.err
        rest, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert (waiting.returncode, rest) == (0, ""), err

    async def read(queue: WorkerQueue) -> tuple[Task, Task]:
        return await queue.get_task(ok_id), await queue.get_task(bad_id)

    ok, bad = with_queue(database_url, read)
    assert ok.items[0].result == {"exit_code": 0, "stdout_tail": "1\n", "stderr_tail": ""}
    assert bad.state == "discarded"
    assert "code 3" in (bad.last_error or "")
    assert missing.code == 2
    assert "no_such_module_xyz" in one_error_line(missing)


def test_refusals_name_the_option_and_say_it_plainly(tmp_path: Path) -> None:
    """A refused value is named by the option that gave it (not the field it sets:
    voice_id, output_format, timeout_s, interval_s), without pydantic's "Value error,"
    prefix or its words for a discriminated union, and without the interpreter's advice."""
    db = tmp_path / "queue.db"
    call = ("--kind", "call", "--request", '{"target": "os:getcwd"}')
    audio = '{"path": "a.wav", "operations": [{"op": "nosuch"}]}'
    cases = {
        ("submit", "tts", "hi", "-v", "en_US"): "--voice: a voice is engine.voice, e.g. piper.",
        ("submit", "tts", "hi", "-v", VOICE, "--format", "wma"): "--format: Input should be",
        ("submit", "tts", "hi", "-v", VOICE, "--speed", "nan"): "--speed: Input should be a finite",
        ("submit", "tts", "!!!", "-v", VOICE): "text: text must contain at least one letter",
        ("submit", "tts", "hi", "-v", VOICE, "--timeout", "9999d"): "invalid task: --timeout: ",
        ("submit", "call", "os:getcwd", "--args", f"[{'9' * 5000}]"): "an integer of more than",
        ("schedule", "add", "s", "--every", "0s", *call): "schedule 's': --every: Input should",
        ("schedule", "add", "s", "--cron", "* * * * *", "--tz", "No/Where", *call):
            "schedule 's': --timezone: unknown timezone 'No/Where'",
        ("schedule", "add", "s", "--every", "1m", "--kind", "audio", "--request", audio):
            "operations.0: op 'nosuch' is none of 'analyze', 'convert'",
    }  # fmt: skip
    assert wq(db, "db", "upgrade").code == 0
    for args, result in zip(cases, wq_all(db, *cases), strict=True):
        assert result.code == 2, (args, result.err)
        assert cases[args] in result.err, (args, result.err)
        for internal in ("voice_id", "output_format", "timeout_s", "interval_s", "Value error"):
            assert internal not in result.err, (args, result.err)
        assert "set_int_max_str_digits" not in result.err


def test_a_program_argument_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 (a terminal in another encoding) in a program's argument,
    directory or environment: refused before anything is written, naming the option and
    the byte. The argument and the directory failed when stored ("cannot be stored:
    Error serializing to JSON"), and a variable's name was stored with U+FFFD for them."""
    db = tmp_path / "queue.db"
    byte = "\udcff"  # the byte 0xff, as os.fsdecode reads it; subprocess passes it as 0xff
    results = wq_all(
        db,
        ("submit", "command", "--", f"l{byte}s"),
        ("submit", "command", "--cwd", f"/tmp/{byte}", "--", "ls"),
        ("submit", "command", "-e", f"A{byte}B=1", "--", "ls"),
        ("submit", "command", "-e", f"A={byte}", "--", "ls"),
    )
    for result, option in zip(results, ("ARGV", "--cwd", "--env", "--env"), strict=True):
        assert result.code == 2, result.err
        line = one_error_line(result)
        assert f"invalid command request: {option}: " in line
        assert "holds the byte \\xff at position " in line
    assert with_queue(db, lambda queue: queue.get_queue_stats())["total"] == 0


def test_a_command_request_checks_every_text_however_given() -> None:
    """A tuple for argv and a read-only mapping for env (what the API takes as well as a list
    and a dict) are checked as those are."""
    from types import MappingProxyType

    from pydantic import ValidationError

    from worker.builtins.requests import CommandRequest

    with pytest.raises(ValidationError, match=r"argv\[1\] holds the byte \\xff"):
        CommandRequest(argv=("echo", "\udcff"))
    with pytest.raises(ValidationError, match=r"env\['A'\] holds the byte \\xff"):
        CommandRequest(argv=["ls"], env=MappingProxyType({"A": "\udcff"}))
    with pytest.raises(ValidationError, match=r"the env name 'A\\udcff' holds the byte"):
        CommandRequest(argv=["ls"], env=MappingProxyType({"A\udcff": "1"}))
