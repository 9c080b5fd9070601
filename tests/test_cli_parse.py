"""The command line's pure parts: value parsers, formatting, progress views, exit codes."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import make_url

from tests.support import make_task
from worker import Priority, TaskState
from worker.cli import EXIT_CODES
from worker.cli.parse import (
    parse_duration,
    parse_env_pair,
    parse_json_list,
    parse_json_object,
    parse_priority,
)
from worker.cli.render import (
    ProgressView,
    duration,
    instant,
    progress_text,
    progress_view,
    request_summary,
)
from worker.cli.session import ExitCode
from worker.core.database_url import file_url
from worker.core.models import Progress


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("12h", 43_200.0),
        ("7d", 604_800.0),
        ("2w", 1_209_600.0),
        ("1.5h", 5_400.0),
        ("90", 90.0),
        ("0.25", 0.25),
        (" 10S ", 10.0),
        ("0s", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_number_passes_as_seconds() -> None:
    assert parse_duration(2) == 2.0
    assert parse_duration(0.5) == 0.5


@pytest.mark.parametrize("text", ["", "s", "5x", "-5m", "5 minutes", "1h30m", "m5", "1e3"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*30s, 15m, 12h, 7d"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "priority"),
    [
        ("0", 0),
        ("-5", -5),
        ("250", 250),
        ("low", Priority.LOW),
        ("normal", Priority.NORMAL),
        ("HIGH", Priority.HIGH),
        (" Critical ", Priority.CRITICAL),
    ],
)
def test_priorities(text: str, priority: int) -> None:
    assert parse_priority(text) == priority
    assert parse_priority(priority) == priority


@pytest.mark.parametrize("text", ["", "urgent", "1.5", "high!"])
def test_bad_priorities_list_the_names(text: str) -> None:
    with pytest.raises(ValueError, match="low, normal, high, critical"):
        parse_priority(text)


def test_database_urls_and_paths() -> None:
    url = "postgresql+asyncpg://u:p@db/queue"
    assert file_url(url) == url
    assert file_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert file_url("data/q.db") == "sqlite+aiosqlite:///data/q.db"
    assert file_url("/tmp/q.db") == "sqlite+aiosqlite:////tmp/q.db"
    for url_like in ("sqlite:", "postgresql:/u@db/q", ""):  # refused later, as URLs
        assert file_url(url_like) == url_like
    # What a URL reads as its own is escaped, so the file is the one named.
    weird = "runs/100% #1?.db"
    assert make_url(file_url(weird)).database == weird


def test_env_pairs() -> None:
    assert parse_env_pair("A=1") == ("A", "1")
    assert parse_env_pair("A=") == ("A", "")
    assert parse_env_pair("URL=a=b") == ("URL", "a=b")
    for bad in ("A", "=1", ""):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_env_pair(bad)


def test_json_arguments() -> None:
    assert parse_json_list('[1, "a", null]') == [1, "a", None]
    assert parse_json_object('{"k": [1]}') == {"k": [1]}
    with pytest.raises(ValueError, match="expected a JSON array, got dict"):
        parse_json_list('{"k": 1}')
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        parse_json_object("[]")
    with pytest.raises(ValueError, match="invalid JSON"):
        parse_json_list("[1,")


def test_json_arguments_the_database_cannot_store_are_refused_as_typed() -> None:
    """A lone surrogate (JSON's \\ud800) or nesting past the limit is refused where it is
    parsed, naming the option, not later by the queue as ``tasks[0].items[0].request``."""
    with pytest.raises(ValueError, match=r"the JSON holds a lone surrogate \('\\ud800'\)"):
        parse_json_list('["\\ud800"]')
    with pytest.raises(ValueError, match="the JSON is nested deeper than"):
        parse_json_object('{"k": ' + "[" * 300 + "]" * 300 + "}")
    with pytest.raises(ValueError, match="JSON nested too deeply"):
        parse_json_list("[" * 100_000 + "]" * 100_000)


def test_durations_read_for_people() -> None:
    assert duration(None) == "-"
    assert duration(0.25) == "250ms"
    assert duration(12.34) == "12.3s"
    assert duration(245) == "4m05s"
    assert duration(12_000) == "3h20m"
    assert duration(187_200) == "2d04h"
    assert duration(-90) == "-1m30s"


def test_progress_views() -> None:
    task = make_task()
    assert progress_view(task) == ProgressView("pending", 0.0, None)
    task.state = TaskState.PROCESSING
    task.progress = Progress(current=3, total=10, message="chunk 3", at=1.0)
    assert progress_view(task) == ProgressView("processing: chunk 3", 3, 10)
    assert progress_text(task) == "3/10 (30%) chunk 3"
    task.state = TaskState.COMPLETED  # the last report came before the end: it is whole now
    assert progress_view(task) == ProgressView("completed", 10, 10)
    assert progress_text(task) == "10/10 (100%)"
    task.progress = Progress(current=130, total=None, message="rows", at=1.0)
    assert progress_text(task) == "130"
    assert progress_view(task) == ProgressView("completed", 1.0, 1.0)
    task.progress = None
    assert progress_view(task) == ProgressView("completed", 1.0, 1.0)
    assert progress_text(task) == "-"


def test_request_summaries_name_the_kind_and_fit() -> None:
    request = make_task("a long sentence " * 10).items[0].request
    summary = request_summary(request, width=40)
    assert summary.startswith('tts: {"text": "a long')
    assert len(summary) == 40


def test_every_exit_code_is_in_the_help_and_the_docstring() -> None:
    import worker.cli

    assert worker.cli.__doc__ is not None
    for code in ExitCode:
        assert f"{int(code)} " in EXIT_CODES
        assert f"\n{int(code)} " in worker.cli.__doc__


def test_instants_name_their_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    # A panel once showed "created 02:14:48" (local, unnamed) beside the "why" line's UTC.
    assert instant(0, 60, "Europe/Paris") == "1970-01-01 01:00:00 CET (1m00s ago)"
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert instant(0, 60) == "1969-12-31 19:00:00 EST (1m00s ago)"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert instant(None, 60) == "-"
