"""Schedules on both backends: declaring by name, each tick enqueued exactly once (queues
racing on one fake clock, and four worker processes on one database in real time), missed
ticks skipped or caught up, and ``wq schedule add/list/remove``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.runtime_worker import JobRequest
from tests.spawning import Spawner
from tests.support import START, FakeClock
from tests.test_cli import wq, wq_all
from worker import (
    CallRequest,
    InvalidInputError,
    QueueConfig,
    RetryPolicy,
    Schedule,
    ScheduleNotFoundError,
    ScheduleTiming,
    TaskState,
    WorkerQueue,
)
from worker.core.kinds import register_request_kind, remove_request_kind
from worker.core.schedules import due_ticks, tick_after

#: An instant on a whole minute, so that minute ticks fall on round offsets from it.
T0 = (START // 60 + 1) * 60


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 0.5)


async def all_tasks(queue: WorkerQueue) -> list[object]:
    return list(await queue.list_tasks(limit=10_000))


async def tick_times(queue: WorkerQueue, name: str) -> list[float]:
    found = []
    for task in await queue.list_tasks(limit=10_000):
        if task.metadata.get("schedule") == name:
            tick = task.metadata["tick_at"]
            assert isinstance(tick, float)
            found.append(tick)
    return sorted(found)


# -- the policy, pure -----------------------------------------------------------------------


def test_cron_ticks_follow_the_timezone_across_a_daylight_saving_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    timing = ScheduleTiming(cron="30 2 * * *", timezone="Europe/Paris")
    at = datetime(2026, 3, 27, 12, 0, tzinfo=paris).timestamp()
    seen = []
    for _ in range(3):
        at = tick_after(timing, at)
        seen.append(datetime.fromtimestamp(at, paris).strftime("%m-%d %H:%M %z"))
    # 02:30 does not exist on 29 March: cron runs it at 03:00 summer time, as Debian's does.
    assert seen == ["03-28 02:30 +0100", "03-29 03:00 +0200", "03-30 02:30 +0200"]


def test_due_ticks_skip_or_catch_up_and_give_the_next_run() -> None:
    every = ScheduleTiming(interval_s=60)
    base = Schedule(name="s", timing=every, kind="call", request={}, next_run_at=T0)
    assert due_ticks(base, T0 - 1) == ([], T0)
    assert due_ticks(base, T0) == ([T0], T0 + 60)
    late = T0 + 4 * 60 + 30  # five ticks due: T0 .. T0 + 240
    assert due_ticks(base, late) == ([T0 + 240], T0 + 300)
    everything = base.model_copy(update={"catch_up": "all"})
    assert due_ticks(everything, late) == ([T0 + 60 * n for n in range(5)], T0 + 300)
    bounded = base.model_copy(update={"catch_up": "all", "max_catch_up": 2})
    assert due_ticks(bounded, late) == ([T0 + 180, T0 + 240], T0 + 300)
    seconds = base.model_copy(update={"timing": ScheduleTiming(cron="*/2 * * * * *")})
    assert due_ticks(seconds.model_copy(update={"catch_up": "all"}), T0 + 5.5)[0] == [
        T0,
        T0 + 2,
        T0 + 4,
    ]


@pytest.mark.parametrize(
    ("timing", "needle"),
    [
        ({"cron": "61 * * * *"}, "is not a cron expression"),
        ({"cron": "* * *"}, "is not a cron expression"),
        ({"cron": "* * * * *", "interval_s": 60}, "exactly one"),
        ({}, "exactly one"),
        ({"interval_s": 0.5}, "greater than or equal to 1"),
        ({"interval_s": 60, "timezone": "Europe/Paris"}, "timezone applies to cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"cron": "* * * * *", "timezone": "localtime"}, "each machine's own timezone"),
    ],
)
async def test_bad_timings_are_refused_naming_the_problem(
    queue: WorkerQueue, timing: dict[str, object], needle: str
) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        await queue.schedule("s", request=CallRequest(target="m:f"), **timing)  # type: ignore[arg-type]
    assert await queue.list_schedules() == []


# -- declaring ------------------------------------------------------------------------------


async def test_a_schedule_is_declared_once_by_name_and_updated_in_place(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    request = CallRequest(target="app.jobs:cleanup", args=[1])
    first = await queue.schedule(
        "cleanup", cron="*/5 * * * *", request=request, queue="maintenance", priority=3
    )
    assert first.next_run_at == T0 + 300 - T0 % 300 if T0 % 300 else T0 + 300
    assert (first.kind, first.request["args"], first.options.queue) == ("call", [1], "maintenance")
    assert (first.created_at, first.updated_at) == (clock.now, clock.now)
    clock.advance(10)
    again = await queue.schedule(
        "cleanup", cron="*/5 * * * *", request=request, queue="maintenance", priority=3
    )
    assert again == first  # the same declaration writes nothing
    changed = await queue.schedule(
        "cleanup", cron="*/5 * * * *", request=request, queue="maintenance", priority=9
    )
    assert (changed.options.priority, changed.next_run_at) == (9, first.next_run_at)
    assert changed.updated_at == clock.now
    retimed = await queue.schedule("cleanup", interval_s=60, request=request)
    assert retimed.next_run_at == tick_after(retimed.timing, clock.now)
    assert [s.name for s in await queue.list_schedules()] == ["cleanup"]
    assert await queue.get_schedule("cleanup") == retimed
    assert await queue.remove_schedule("cleanup") is True
    assert await queue.remove_schedule("cleanup") is False
    with pytest.raises(ScheduleNotFoundError, match="'cleanup'"):
        await queue.get_schedule("cleanup")


async def test_what_a_tick_would_enqueue_is_checked_when_declared(queue: WorkerQueue) -> None:
    with pytest.raises(InvalidInputError, match=r"options\.queue"):
        await queue.schedule("s", interval_s=60, request=CallRequest(target="m:f"), queue="a b")
    with pytest.raises(InvalidInputError, match="a callback must look like"):
        await queue.schedule(
            "s", interval_s=60, request=CallRequest(target="m:f"), on_success="not dotted"
        )
    with pytest.raises(InvalidInputError, match="schedule name"):
        await queue.schedule("no spaces", interval_s=60, request=CallRequest(target="m:f"))

    class Unregistered(JobRequest):
        pass

    with pytest.raises(InvalidInputError, match="not a registered request kind"):
        await queue.schedule("s", interval_s=60, request=Unregistered())
    assert await queue.list_schedules() == []


# -- firing, on a fake clock ----------------------------------------------------------------


async def test_a_tick_is_enqueued_once_with_its_options_then_the_next(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    policy = RetryPolicy(kind="fixed", delay_s=1.0)
    await queue.schedule(
        "beat", interval_s=60, request=JobRequest(name="beat"), queue="q1", priority=5,
        max_attempts=2, retry_policy=policy, metadata={"team": "ops"},
    )  # fmt: skip
    assert await queue.fire_schedules() == []  # the first tick is T0 + 60
    clock.now = T0 + 60.2
    (fired,) = await queue.fire_schedules()
    assert (fired.name, fired.ticks, fired.inserted) == ("beat", [T0 + 60], 1)
    task = await queue.get_task(fired.task_ids[0])
    assert (task.queue, task.priority, task.max_attempts, task.retry_policy) == ("q1", 5, 2, policy)
    assert (task.name, task.schedule_at) == ("beat", T0 + 60)
    assert task.metadata == {"team": "ops", "schedule": "beat", "tick_at": T0 + 60}
    assert task.idempotency_key == f"schedule:beat@{T0 + 60:.3f}"
    assert await queue.fire_schedules() == []  # that tick is done: not again
    stored = await queue.get_schedule("beat")
    assert (stored.next_run_at, stored.last_tick_at, stored.last_task_id) == (
        T0 + 120,
        T0 + 60,
        task.id,
    )
    clock.now = T0 + 120
    assert [f.ticks for f in await queue.fire_schedules()] == [[T0 + 120]]
    assert await tick_times(queue, "beat") == [T0 + 60, T0 + 120]


async def test_a_finished_ticks_task_does_not_let_the_tick_run_again(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    """The idempotency key only dedupes live tasks; the compare-and-set on next_run_at is
    what keeps a tick from being enqueued twice once its task has ended."""
    await queue.schedule("once", interval_s=60, request=JobRequest())
    clock.now = T0 + 60
    (fired,) = await queue.fire_schedules()
    (claimed,) = await queue.dequeue(1)
    await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id)
    stale = await queue.get_schedule("once")
    # A process that read the schedule before the tick was fired tries to fire it again.
    assert stale.next_run_at == T0 + 120
    outcome = await queue.storage.schedules.fire(
        "once", expected=T0 + 60, next_run_at=T0 + 120, last_tick_at=T0 + 60, rows=[], now=T0 + 60
    )
    assert outcome is None
    assert len(await all_tasks(queue)) == 1
    assert fired.task_ids == [claimed.id]


async def test_queues_racing_on_one_database_enqueue_each_tick_once(
    config: QueueConfig, clock: FakeClock
) -> None:
    queues = [WorkerQueue(config, clock=clock) for _ in range(4)]
    for opened in queues:
        await opened.initialize()
    try:
        await queues[0].schedule("race", interval_s=1, request=JobRequest(), catch_up="all")
        for _ in range(20):
            clock.advance(1)
            rounds = await asyncio.gather(*(q.fire_schedules() for q in queues))
            assert sum(len(fired) for fired in rounds) == 1, rounds
        ticks = await tick_times(queues[0], "race")
        assert ticks == [float(t) for t in range(int(T0) + 1, int(T0) + 21)]
    finally:
        for opened in queues:
            await opened.close()


async def test_missed_ticks_are_skipped_or_caught_up_as_the_schedule_says(
    queue: WorkerQueue, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    request = JobRequest()
    await queue.schedule("skipper", cron="* * * * *", request=request)
    await queue.schedule("catcher", cron="* * * * *", request=request, catch_up="all")
    await queue.schedule("bounded", interval_s=60, request=request, catch_up="all", max_catch_up=3)
    clock.now = T0 + 60 * 6 + 10  # no worker ran for six minutes: ticks T0+60 .. T0+360
    with caplog.at_level(logging.INFO, logger="worker.queue.schedules"):
        fired = {f.name: f.ticks for f in await queue.fire_schedules()}
    assert fired == {
        "skipper": [T0 + 360],
        "catcher": [T0 + 60 * n for n in range(1, 7)],
        "bounded": [T0 + 240, T0 + 300, T0 + 360],
    }
    missed = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
    assert len(missed) == 2, missed  # skipper and bounded skipped some; catcher none
    assert all(s.next_run_at == T0 + 420 for s in await queue.list_schedules())
    # A program that declares its schedules as it starts keeps what was missed to catch up.
    clock.now = T0 + 60 * 9 + 5
    await queue.schedule("catcher", cron="* * * * *", request=request, catch_up="all")
    (caught,) = [f for f in await queue.fire_schedules() if f.name == "catcher"]
    assert caught.ticks == [T0 + 420, T0 + 480, T0 + 540]


async def test_a_schedule_of_a_kind_this_process_lacks_is_left_due_and_logged_once(
    queue: WorkerQueue, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    @register_request_kind("schedtest_plugin")
    class PluginRequest(JobRequest):
        pass

    try:
        await queue.schedule("plugin", interval_s=60, request=PluginRequest())
    finally:
        remove_request_kind("schedtest_plugin")
    clock.now = T0 + 60
    await queue.schedule("later", interval_s=60, request=JobRequest())  # due after "plugin"
    clock.now = T0 + 120
    with caplog.at_level(logging.ERROR, logger="worker.queue.schedules"):
        # A page of one: the schedule it cannot fire does not hide the one behind it.
        assert [f.name for f in await queue.fire_schedules(limit=1)] == ["later"]
        assert await queue.fire_schedules(limit=1) == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "schedtest_plugin" in errors[0]
    assert (await queue.get_schedule("plugin")).next_run_at == T0 + 60  # still due
    assert len(await all_tasks(queue)) == 1  # the tick of "later"


# -- four worker processes, real time ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_four_workers_enqueue_each_tick_of_a_per_second_schedule_once(
    database_url: str, spawner: Spawner, tmp_path: Path
) -> None:
    async with WorkerQueue(QueueConfig(database_url=database_url)) as queue:
        procs = []
        for n in range(4):
            ready = tmp_path / f"ready{n}"
            options = ("--ready-file", str(ready), "--schedule-interval", "0.2")
            procs.append(spawner.start(database_url, *options))
        give_up = time.monotonic() + 120
        while not all((tmp_path / f"ready{n}").exists() for n in range(4)):
            assert all(p.poll() is None for p in procs), [spawner.output(p) for p in procs]
            assert time.monotonic() < give_up, "workers not ready"
            await asyncio.sleep(0.1)
        declared = await queue.schedule(
            "every-second", cron="* * * * * *", request=JobRequest(), catch_up="all"
        )
        await asyncio.sleep(10)
        await queue.remove_schedule("every-second")
        await asyncio.sleep(1)  # a round that read the schedule before it went may end
        for proc in procs:
            os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            assert await asyncio.to_thread(proc.wait, 60) == 0, spawner.output(proc)
        ticks = await tick_times(queue, "every-second")
        tasks = list(await queue.list_tasks(limit=10_000))
    assert len(ticks) == len(set(ticks)), "a tick was enqueued twice"
    assert len(ticks) >= 8, ticks  # ten seconds of ticks, less a busy machine's delays
    assert ticks[0] == declared.next_run_at
    assert ticks == [ticks[0] + n for n in range(len(ticks))], "a tick was missed"
    assert {t.state for t in tasks} <= {TaskState.COMPLETED, TaskState.PENDING}
    firers = [p for p in procs if "schedule every-second: enqueued" in spawner.output(p)]
    assert len(firers) >= 2, "the ticks were not shared out among the workers"


# -- the command line -----------------------------------------------------------------------


def test_wq_schedule_add_list_and_remove(database_url: str) -> None:
    added = wq(
        database_url, "schedule", "add", "nightly", "--cron", "0 3 * * *", "--timezone",
        "Europe/Paris", "--kind", "call", "--request", '{"target": "app.jobs:cleanup"}',
        "--queue", "maintenance", "--priority", "high", "--catch-up", "all", "--json",
    )  # fmt: skip
    assert added.code == 0, added.err
    document = added.json()
    assert document["timing"] == {
        "cron": "0 3 * * *",
        "interval_s": None,
        "timezone": "Europe/Paris",
    }
    assert (document["options"]["queue"], document["options"]["priority"]) == ("maintenance", 10)
    paris = datetime.fromtimestamp(document["next_run_at"], ZoneInfo("Europe/Paris"))
    assert (paris.hour, paris.minute) == (3, 0)

    every, bad_cron, bad_json, unknown_kind = wq_all(
        database_url,
        ("schedule", "add", "beat", "--every", "15m", "--kind", "command",
         "--request", '{"argv": ["true"]}'),
        ("schedule", "add", "x", "--cron", "61 * * * *", "--kind", "call",
         "--request", '{"target": "a:b"}'),
        ("schedule", "add", "x", "--every", "1m", "--kind", "call", "--request", "[1]"),
        ("schedule", "add", "x", "--every", "1m", "--kind", "nope"),
    )  # fmt: skip
    assert every.code == 0, every.err
    assert every.out.startswith("schedule beat: every 900s, next run ")
    listed = wq(database_url, "schedule", "list")
    assert listed.code == 0, listed.err
    header, _, *rows = listed.out.splitlines()
    columns = [part.strip() for part in header.split("┃")]
    assert columns == ["name", "when", "enqueues", "queue", "catch-up", "next run", "last tick"]
    assert [row.split("│")[0].strip() for row in rows] == ["beat", "nightly"]
    assert "cron 0 3 * * * (Europe/Paris)" in rows[1]
    assert "every 900s" in rows[0]
    assert (bad_cron.code, bad_json.code, unknown_kind.code) == (2, 2, 2)  # all input
    assert "'61 * * * *' is not a cron expression" in bad_cron.err
    assert "expected a JSON object" in bad_json.err
    assert "unknown request kind 'nope'" in unknown_kind.err
    assert all(r.err.count("\n") == 1 for r in (bad_cron, unknown_kind))  # no traceback

    removed, again = wq_all(
        database_url, ("schedule", "remove", "beat"), ("schedule", "remove", "gone")
    )
    as_json = wq(database_url, "schedule", "list", "--json")
    assert (removed.code, removed.out) == (0, "schedule beat removed\n")
    assert again.code == 1
    assert "schedule 'gone' not found" in again.err
    assert [s["name"] for s in as_json.json()["schedules"]] == ["nightly"]


def test_wq_schedule_list_folds_a_long_name(database_url: str) -> None:
    """A long name folds onto more lines, whole, instead of squeezing the other columns."""
    name = "n" * 150
    added = wq(
        database_url, "schedule", "add", name, "--every", "1m", "--kind", "call",
        "--request", '{"target": "a:b"}',
    )  # fmt: skip
    assert added.code == 0, added.err
    listed = wq(database_url, "schedule", "list", env={"COLUMNS": "160"})
    assert listed.code == 0, listed.err
    header, _, *rows = listed.out.splitlines()
    columns = [part.strip() for part in header.split("┃")]
    assert columns == ["name", "when", "enqueues", "queue", "catch-up", "next run", "last tick"]
    assert "".join(row.split("│")[0].strip() for row in rows) == name
    assert "every 60s" in rows[0]
