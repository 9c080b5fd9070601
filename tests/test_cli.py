"""``wq`` as operators run it: real subprocesses (``python -m worker``) on real SQLite files.

Each test groups several invocations (a process start costs about half a second). The setup
that needs states the command line cannot reach (a discarded task, say) goes through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support import make_task, sqlite_url, url_of
from worker import QueueConfig, TaskState, WorkerQueue
from worker.storage.migrate import head_revision

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
VOICE = "espeak.en-us"  # wq submit tts checks the voice against the engines here
UNKNOWN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without QUEUE_* settings, with wide tables."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("QUEUE_")}
    return {**env, "COLUMNS": "200", **(extra or {})}


def wq_command(db: str | Path | None, *args: str) -> list[str]:
    database = [] if db is None else ["--db", str(db)]
    return [sys.executable, "-m", "worker", *database, *args]


def wq(db: str | Path | None, *args: str, env: Mapping[str, str] | None = None) -> Result:
    proc = subprocess.run(
        wq_command(db, *args), capture_output=True, text=True, env=cli_env(env), cwd=ROOT,
        timeout=60, check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def wq_all(
    db: str | Path, *commands: tuple[str, ...], env: Mapping[str, str] | None = None
) -> list[Result]:
    """Run independent invocations side by side (each start-up costs about half a second)."""
    procs = [
        subprocess.Popen(
            wq_command(db, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(env),
            cwd=ROOT,
        )
        for args in commands
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(Result(proc.returncode, out, err))
    return results


def one_error_line(result: Result) -> str:
    """The single ``wq: error: ...`` line an error prints (no traceback)."""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("wq: error: ")
    return lines[0]


def with_queue(db: str | Path, operation: Callable[[WorkerQueue], Awaitable[T]]) -> T:
    async def main() -> T:
        async with WorkerQueue(QueueConfig(database_url=url_of(db))) as queue:
            return await operation(queue)

    return asyncio.run(main())


def test_help_documents_the_exit_codes() -> None:
    result = wq(None, "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for needle in ("Exit codes: 0 ok", "1 queue error", "2 usage error", "3 storage error"):
        assert needle in text
    assert "4 submit --wait" in text
    assert "130 interrupted" in text
    for command in ("submit", "worker", "status", "list", "stats", "purge", "why", "db"):
        assert command in result.out


def test_db_upgrade_prints_the_revision(tmp_path: Path) -> None:
    result = wq(tmp_path / "a.db", "db", "upgrade")
    assert (result.code, result.out.strip()) == (0, head_revision())
    url = sqlite_url(tmp_path / "sub" / "b.db")
    document = wq(None, "db", "upgrade", "--json", env={"QUEUE_DATABASE_URL": url}).json()
    assert document == {"revision": head_revision(), "database_url": url}
    assert (tmp_path / "sub" / "b.db").exists()


def test_a_task_through_status_list_why_hold_resume_and_cancel(database_url: str) -> None:
    submitted = wq(
        database_url, "submit", "tts", "Hello there", "--voice", VOICE, "--queue", "speech",
        "--priority", "high", "--delay", "5m", "--name", "greeting", "--format", "mp3",
        "--speed", "1.5", "--max-attempts", "5", "--timeout", "2m",
        "--idempotency-key", "greeting-1", "--json",
    )  # fmt: skip
    assert submitted.code == 0, submitted.err
    task = submitted.json()
    task_id = task["id"]
    assert task["state"] == "pending"
    assert (task["queue"], task["priority"], task["name"]) == ("speech", 10, "greeting")
    assert (task["max_attempts"], task["timeout_s"]) == (5, 120.0)
    assert task["idempotency_key"] == "greeting-1"
    assert task["schedule_at"] - task["created_at"] == pytest.approx(300, abs=5)
    request = task["items"][0]["request"]
    assert task["items"][0]["kind"] == "tts"
    assert (request["text"], request["voice_id"]) == ("Hello there", VOICE)
    assert (request["output_format"], request["speed"]) == ("mp3", 1.5)

    assert wq(database_url, "hold", task_id).out.strip() == f"{task_id} pending (held)"
    status, listed, table, why = wq_all(
        database_url,
        ("status", task_id),
        ("list", "--state", "pending", "--queue", "speech", "--json"),
        ("list",),
        ("why", task_id),
    )
    for needle in (task_id, "greeting", "pending (held)", "0 of 5", "2m00s", "tts:"):
        assert needle in status.out
    page = listed.json()
    assert [(t["id"], t["held"]) for t in page["tasks"]] == [(task_id, True)]
    assert page["next_after"] is None
    for needle in (task_id, "held", "speech", "greeting"):
        assert needle in table.out
    assert why.code == 0
    assert "held" in why.out
    assert len(why.out.strip().splitlines()) == 1

    assert wq(database_url, "resume", task_id, "--json").json() == {
        "id": task_id,
        "state": "pending",
    }
    not_held = wq(database_url, "resume", task_id)
    assert not_held.code == 1
    assert f"cannot resume task '{task_id}': it is pending" in one_error_line(not_held)
    assert wq(database_url, "cancel", task_id).out.strip() == f"{task_id} cancelled"


def test_unknown_ids_exit_1_naming_the_id(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    for result in wq_all(database_url, ("status", UNKNOWN_ID), ("cancel", UNKNOWN_ID)):
        assert result.code == 1, result
        assert UNKNOWN_ID in one_error_line(result)
        assert result.out == ""


def test_a_task_id_in_lower_case_is_the_same_id(tmp_path: Path) -> None:
    """A ULID's letters are case-insensitive (Crockford's base 32): one copied from a
    lower-casing log or URL finds its task."""
    db = tmp_path / "queue.db"
    with_queue(db, lambda queue: queue.enqueue([make_task(), make_task()]))
    first, second = (t.id for t in with_queue(db, lambda queue: queue.list_tasks()))
    status, why, after, depending = wq_all(
        db,
        ("status", "--json", first.lower()),
        ("why", first.lower()),
        ("list", "--json", "--after", first.lower()),
        ("submit", "call", "os:getcwd", "--json", "--depends-on", second.lower()),
    )
    assert status.code == 0, status.err
    assert status.json()["id"] == first
    assert why.code == 0, why.err
    assert [t["id"] for t in after.json()["tasks"]] == [second]
    assert depending.json()["depends_on"] == [second]
    cancelled = wq(db, "cancel", first.lower())
    assert cancelled.code == 0, cancelled.err
    nonsense = wq(db, "status", "nonsense")  # no ULID: named as typed
    assert nonsense.code == 1
    assert "task 'nonsense' not found" in nonsense.err


def test_a_global_option_after_the_command_says_where_it_goes(tmp_path: Path) -> None:
    late = wq(None, "list", "--db", str(tmp_path / "q.db"))
    assert late.code == 2
    assert "No such option: --db (--db goes before the command: wq --db PATH list ...)" in (
        late.err
    )
    # A program's own arguments are its own: nothing of them is taken for wq's.
    command = ["submit", "command", "--json", "prog", "--db", "other.db", "--debug"]
    submitted = wq(tmp_path / "q.db", *command, env={"QUEUE_ALLOW_COMMANDS": "1"})
    assert submitted.code == 0, submitted.err
    assert submitted.json()["items"][0]["request"]["argv"] == [
        "prog", "--db", "other.db", "--debug"
    ]  # fmt: skip
    assert not (tmp_path / "other.db").exists()


def test_usage_errors_exit_2(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    bad_delay, bad_age, bad_voice, bad_state = wq_all(
        database_url,
        ("submit", "tts", "hi", "--voice", VOICE, "--delay", "5x"),
        ("purge", "--older-than", "a week"),
        ("submit", "tts", "hi", "--voice", "nobody"),
        ("list", "--state", "sleeping"),
    )
    assert bad_delay.code == 2
    assert "'--delay': invalid duration '5x'" in bad_delay.err  # without pydantic's prefix
    assert bad_age.code == 2
    assert "--older-than" in bad_age.err
    assert bad_voice.code == 2
    assert "invalid tts request: --voice: a voice is engine.voice" in one_error_line(bad_voice)
    assert bad_state.code == 2
    assert "Traceback" not in bad_state.err
    bad_config = wq(database_url, "list", env={"QUEUE_MAX_ATTEMPTS": "0"})
    assert bad_config.code == 2
    assert "QUEUE_MAX_ATTEMPTS" in one_error_line(bad_config)
    assert with_queue(database_url, lambda queue: queue.get_queue_stats()) == {
        **{state.value: 0 for state in TaskState},
        "total": 0,
    }


def test_refused_input_exits_2_whichever_check_refuses_it(database_url: str) -> None:
    """Typer's checks, the CLI's and the queue's: the user sees one code for bad input."""
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    request = '{"target": "os:getcwd"}'
    results = wq_all(
        database_url,
        ("list", "-n", "0"),  # typer's range
        ("list", "-n", str(10**12)),  # the queue's bound
        ("list", "--after", "notaulid"),
        ("stats", "--watch", "--interval", "0"),
        # A bad queue name failed every claim, logged each poll, for ever: refused at once.
        ("worker", "--burst", "-q", ""),
        ("worker", "--burst", "-c", "10001"),  # QUEUE_CONCURRENCY's bound
        ("worker", "--burst", "-m", ""),  # importlib's ValueError: exit 70
        ("worker", "--burst", "-m", "../x"),  # importlib's TypeError: exit 70
        ("submit", "audio", ""),  # swept the working directory, every audio file under it
        ("web", "--host", "0.0.0.0", "--token", " "),  # a token no client can send
        ("submit", "call", "os:getcwd", "-p", "99999999"),
        ("schedule", "add", "s", "--every", "0", "-k", "call", "-r", request),
        ("schedule", "add", "s", "--every", "-5", "-k", "call", "-r", request),
        ("schedule", "add", "s", "--cron", "bad", "-k", "call", "-r", request),
        ("schedule", "add", "s", "--every", "5", "-p", "99999999", "-k", "call", "-r", request),
        ("schedule", "add", "s", "--every", "5", "-k", "nope"),
        ("stats", "--window", "100000w"),
        ("purge", "--older-than", "100000000w"),
        ("list", "-s", "pending", "--after", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),  # no such task
    )
    for result in results:
        assert result.code == 2, result
        assert "Traceback" not in result.err
    # Each refusal names the option typed, not the argument of the queue's method it became.
    assert "--limit must be from 1 to 2,147,483,647, got 1,000,000,000,000" in one_error_line(
        results[1]
    )
    assert "--after: a task id (a ULID" in one_error_line(results[2])
    gone = one_error_line(results[-1])
    assert "is gone" in gone
    assert "pass --after-priority (its priority on the last page)" in gone
    assert "--window must be a finite number of seconds > 0 and at most 31,536,000, got " in (
        one_error_line(results[-3])
    )
    assert "--older-than must be" in one_error_line(results[-2])
    assert "--interval: at least 0.1s between refreshes, got 0s" in one_error_line(results[3])
    assert "--queue must be a queue name" in one_error_line(results[4])
    assert "-m '': a module's dotted name" in one_error_line(results[6])
    assert "an empty path" in one_error_line(results[8])
    assert "--token must not be empty or only spaces" in one_error_line(results[9])
    assert "no schedules" in wq(database_url, "schedule", "list").err


@pytest.mark.sqlite_only("a file that is not a database, and SQLite's write lock held")
@pytest.mark.usefixtures("backend")
def test_storage_errors_exit_3(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database file, not at all" * 200)
    result = wq(garbage, "list")
    assert result.code == 3
    assert "not a database" in one_error_line(result)

    db = tmp_path / "locked.db"
    with_queue(db, lambda queue: queue.get_queue_stats())
    holder = sqlite3.connect(db)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        locked = wq(db, "cancel", UNKNOWN_ID, env={"QUEUE_BUSY_TIMEOUT": "0.2"})
    finally:
        holder.close()
    assert locked.code == 3
    assert "database is locked" in one_error_line(locked)


def test_resume_pause_stats_and_purge(database_url: str) -> None:
    async def setup(queue: WorkerQueue) -> tuple[str, str]:
        failed, done = make_task(queue="audio"), make_task(queue="audio")
        await queue.enqueue([failed, done])
        await queue.dequeue(2, worker_id="box:7")
        await queue.mark_as_discarded(failed.id, "voice not installed")
        await queue.mark_as_complete(done.id, results=["out.wav"])
        return failed.id, done.id

    failed_id, done_id = with_queue(database_url, setup)
    done_panel, failed_panel = wq_all(database_url, ("status", done_id), ("status", failed_id))
    assert '"out.wav"' in done_panel.out
    assert "completed" in done_panel.out
    assert "voice not installed" in failed_panel.out
    assert "failed attempts" in failed_panel.out
    assert "box:7" in failed_panel.out  # the worker that ran the attempt
    assert "failed attempts" not in done_panel.out

    assert wq(database_url, "resume", failed_id).out.strip() == f"{failed_id} pending"
    paused, misspelt = wq_all(database_url, ("pause", "audio"), ("pause", "audoi"))
    assert (paused.out.strip(), paused.err) == ("queue audio paused", "")
    assert misspelt.out.strip() == "queue audoi paused"  # paused ahead, but a name to check
    assert misspelt.err.strip() == "wq: warning: no task is in queue 'audoi' yet: is that its name?"
    assert wq(database_url, "unpause", "audoi").out.strip() == "queue audoi unpaused"
    why, figures, table = wq_all(
        database_url, ("why", failed_id), ("stats", "--json"), ("stats", "--queue", "audio")
    )
    assert why.out.startswith("queue 'audio' is paused")
    stats = figures.json()
    assert (stats["states"]["pending"], stats["states"]["completed"]) == (1, 1)
    assert stats["queues"]["audio"] == {"pending": 1, "completed": 1}
    assert set(stats["paused"]) == {"audio"}
    assert stats["completed"] == 1
    assert "audio (paused)" in table.out
    assert "throughput" in table.out
    assert wq(database_url, "unpause", "audio").out.strip() == "queue audio unpaused"

    purged = wq(database_url, "purge", "--older-than", "0s", "--state", "completed", "--json")
    assert purged.json() == {"deleted": 1, "older_than_s": 0.0, "states": ["completed"]}
    assert with_queue(database_url, lambda queue: queue.get_queue_stats())["completed"] == 0


def test_stats_watch_refreshes_until_interrupted(database_url: str) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())
    proc = subprocess.Popen(
        wq_command(database_url, "stats", "--watch", "--interval", "0.1s"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env({"PYTHONFAULTHANDLER": "1"}), cwd=ROOT,
    )  # fmt: skip
    with proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("queues")
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"wq stats --watch did not stop on SIGINT within 60 s:\n{err[-5000:]}")
    # Ctrl-C is how a watch ends, not a failure: exit 0, nothing on stderr.
    assert (proc.returncode, err.strip()) == (0, "")


def test_list_prints_the_command_for_the_next_page(database_url: str) -> None:
    tasks = [make_task(str(n), queue="speech", priority=p) for n, p in enumerate([0, 5, 0, 5, 0])]
    with_queue(database_url, lambda queue: queue.enqueue([*tasks, make_task("x", queue="b")]))
    first = wq(database_url, "list", "-s", "pending", "-q", "speech", "-n", "2")
    assert first.code == 0, first.err
    assert [tasks[1].id in first.out, tasks[3].id in first.out] == [True, True]
    more = first.err.strip().splitlines()[-1]
    after = f"--after {tasks[3].id} --after-priority 5"
    assert more == f"more: wq list -s pending -q speech -n 2 {after}"
    # On a narrow terminal too, the command for the next page is one line to copy.
    narrow = wq(
        database_url, "list", "-s", "pending", "-q", "speech", "-n", "2", env={"COLUMNS": "40"}
    )
    assert narrow.err.strip().splitlines()[-1] == more
    second = wq(database_url, *shlex.split(more.removeprefix("more: wq ")), "--json").json()
    assert [t["id"] for t in second["tasks"]] == [tasks[0].id, tasks[2].id]
    assert (second["next_after"], second["next_after_priority"]) == (tasks[2].id, 0)
    by_id = wq(database_url, "list", "-n", "2", "--json").json()
    assert (by_id["next_after"], by_id["next_after_priority"]) == (tasks[1].id, None)


def test_list_gives_a_line_per_task_on_an_80_column_terminal(db_path: Path) -> None:
    """At 80 columns the id, state, queue, priority, age and request each had a column of
    six characters or less: headers cut ("que…") and every task folded onto eight lines.
    Now the attempt and progress columns give way, headers are whole, and a request's
    summary is cut to one line; a name is still shown whole."""
    long_name = "a name of forty-six characters, every one kept"
    tasks = [make_task(f"text {n}", queue="speech") for n in range(3)]
    named = make_task(name=long_name)
    with_queue(db_path, lambda queue: queue.enqueue([*tasks, named]))
    narrow = wq(db_path, "list", env={"COLUMNS": "80"})
    wide = wq(db_path, "list", env={"COLUMNS": "140"})
    expected = {
        narrow: ["id", "state", "queue", "prio", "age", "name", "/", "request"],
        wide: ["id", "state", "queue", "prio", "att", "age", "progress", "name", "/", "request"],
    }
    for result, columns in expected.items():
        assert result.code == 0, result.err
        header, _, *lines = result.out.splitlines()
        assert header.split() == columns
        assert max(len(line) for line in lines) <= (80 if result is narrow else 140)
        for task, line in zip(tasks, lines, strict=False):  # one line each
            assert line.startswith(task.id), line
            assert " speech " in line, line
            assert "tts: {" in line, line
        assert lines[3].startswith(named.id)
        at = header.index("name")
        assert " ".join(line[at:].strip() for line in lines[3:]) == long_name  # whole


def test_stats_fits_an_80_column_terminal(db_path: Path) -> None:
    """The counts per state had their headers cut at 80 columns ("process…", "comple…")."""
    with_queue(db_path, lambda queue: queue.enqueue([make_task()]))
    result = wq(db_path, "stats", env={"COLUMNS": "80"})
    assert result.code == 0, result.err
    title, header, _, default, every = result.out.splitlines()[:5]
    assert title.strip() == "queues"
    states = [state.value for state in TaskState]
    assert header.split() == ["queue", *states, "total"]
    assert default.split() == ["default", "1", *["0"] * (len(states) - 1), "1"]
    assert every.split()[0] == "all"


def test_list_and_stats_keep_ids_and_headers_whole_beside_long_queue_names(
    db_path: Path,
) -> None:
    """A 64-character queue name took the list's width (ids cut, name and state columns
    gone) and cut the stats' headers; text in wide characters (two columns each) wrapped
    its summary. Now a queue's name folds within 20 columns, and a summary is cut by the
    columns it takes."""
    long_queue = "transcode." + "q" * 54
    wide = make_task("日本語のテキストです。" * 4)
    tasks = [make_task("plain", queue=long_queue), wide]
    with_queue(db_path, lambda queue: queue.enqueue(tasks))
    with_queue(db_path, lambda queue: queue.pause_queue(long_queue))
    listed = wq(db_path, "list", env={"COLUMNS": "80"})
    stats = wq(db_path, "stats", env={"COLUMNS": "80"})
    assert listed.code == 0, listed.err
    assert stats.code == 0, stats.err
    header, _, *lines = listed.out.splitlines()
    assert header.split() == ["id", "state", "queue", "age", "name", "/", "request"]
    starts = [n for n, line in enumerate(lines) if line[:26] in {t.id for t in tasks}]
    assert [lines[n][:26] for n in starts] == [t.id for t in tasks]  # whole, in order
    at, to = header.index("queue"), header.index("age")
    folded = "".join(line[at:to].strip() for line in lines[: starts[1]])
    assert folded == long_queue  # whole, over several lines of at most 20
    assert len(lines) == starts[1] + 1  # the wide text: one line
    assert "tts: {" in lines[-1]
    assert max(len(line) for line in lines) <= 80
    _title, counts, *_ = stats.out.splitlines()
    assert counts.split() == ["queue", *[s.value for s in TaskState], "total"]


def test_a_task_s_own_text_is_printed_as_it_is(db_path: Path) -> None:
    # Names, errors and worker ids are the tasks' own text: rich's markup in them ("[/]"
    # closes nothing) once failed the command as an internal error, and an emoji code in
    # them (":rocket:") was shown as the emoji.
    task = make_task("x", name="[/] [bold]loud :rocket:")

    async def fail_it(queue: WorkerQueue) -> None:
        await queue.enqueue([task])
        [claimed] = await queue.dequeue(1, worker_id="host[/]:1")
        await queue.mark_as_discarded(claimed.id, "[/tmp/out] is full", lease_id=claimed.lease_id)

    with_queue(db_path, fail_it)
    status, listed = wq_all(db_path, ("status", task.id), ("list",))
    for result in (status, listed):
        assert result.code == 0, result.err
        assert "[/] [bold]loud :rocket:" in result.out
    assert "[/tmp/out] is full" in status.out
    assert "host[/]:1" in status.out


JOBS_MODULE = """
from pydantic import BaseModel

from worker import TaskContext, TaskItem, processor, register_request_kind


@register_request_kind("cwd-echo")
class Echo(BaseModel):
    text: str


@processor("cwd-echo")
async def echo(item: TaskItem, ctx: TaskContext) -> str:
    return item.request.text
"""


def test_wq_worker_imports_a_module_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wq script (not python -m worker, which puts the working directory on the path
    # itself) once failed with "No module named 'yourpackage'" beside yourpackage/.
    (tmp_path / "yourpackage").mkdir()
    (tmp_path / "yourpackage" / "__init__.py").write_text("")
    (tmp_path / "yourpackage" / "jobs.py").write_text(JOBS_MODULE)
    # A file there named as a module the worker imports does not stand in for it.
    (tmp_path / "statistics.py").write_text("raise ImportError('the wrong statistics')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from yourpackage.jobs import Echo  # type: ignore[import-not-found]

    from worker import Task, TaskItem

    task = Task(items=[TaskItem(request=Echo(text="hi"))])
    with_queue(tmp_path / "q.db", lambda queue: queue.enqueue([task]))
    script = Path(sys.executable).with_name("wq")
    proc = subprocess.run(
        [str(script), "--db", "q.db", "worker", "-m", "yourpackage.jobs", "--burst"],
        capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = with_queue(tmp_path / "q.db", lambda queue: queue.get_task(task.id))
    assert (done.state, done.items[0].result) == (TaskState.COMPLETED, "hi")
