"""The pages in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium), served by a real ``wq web`` process, with a real worker in another
process: a task enqueued elsewhere appears on the overview, its progress bar advances and it
turns completed without a reload; a cancel from the page stops a running task; every page
renders without console errors. Screenshots of each page land in the test's tmp dir, and in
``docs/screenshots/`` with ``WQ_SAVE_SCREENSHOTS=1``.

Without chromium the tests are skipped, saying what to install, except in CI (``CI`` set),
where they fail: ``make check`` installs it (``make chromium``)."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import JsonValue

from tests.test_cli import ROOT, cli_env, with_queue, wq_command
from tests.test_web_server import _started
from tests.test_web_task_page import HOSTILE
from tests.web_worker import StepsRequest
from tts.requests import TextToSpeechRequest
from worker import QueueConfig, TaskState, WorkerQueue
from worker.core.models import Task, TaskItem

pytestmark = pytest.mark.slow

T = TypeVar("T")

SCREENSHOTS = ROOT / "docs" / "screenshots"
#: How long a page may take to show what the test waits for, on a busy machine.
DEADLINE_S = 20.0


def _browser_programs() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@dataclass
class Site:
    """A ``wq web`` process on a free port, its database, its data directory."""

    base: str
    database_url: str
    data_dir: Path
    tmp: Path

    def queue(self, operation: Callable[[WorkerQueue], Any]) -> Any:
        async def main() -> Any:
            config = QueueConfig(database_url=self.database_url, data_dir=self.data_dir)
            async with WorkerQueue(config) as queue:
                return await operation(queue)

        return asyncio.run(main())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    programs = _browser_programs()
    if programs is None:
        message = (
            "chromium and chromedriver not found: install Debian's chromium and "
            "chromium-driver (make chromium, as root)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"in CI the browser tests must run: {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = programs
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1400",
                     "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    data_dir = tmp_path / "data"
    with_queue(database_url, lambda queue: queue.get_queue_stats())  # create the database
    log = tmp_path / "web.log"
    env = cli_env({"QUEUE_DATA_DIR": str(data_dir)})
    with log.open("wb") as err:
        proc = subprocess.Popen(
            wq_command(database_url, "web", "--port", "0"),
            stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        yield Site(_started(log, proc), database_url, data_dir, tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """The browser, its log drained, for one test on ``site``; it leaves the site's pages
    before the site stops (an open page's stream would retry a stopped server)."""
    browser.get("about:blank")
    browser.get_log("browser")
    try:
        yield browser
    finally:
        browser.get("about:blank")


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Starts a ``steps`` worker (tests/web_worker.py) in another process, once it runs."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        ready = tmp_path / f"worker{len(procs)}.ready"
        with (tmp_path / f"worker{len(procs)}.err").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.web_worker", "--db", database_url,
                 "--ready-file", str(ready)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        procs.append(proc)
        give_up = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, (tmp_path / f"worker{len(procs) - 1}.err").read_text()
            assert time.monotonic() < give_up, "the worker did not start"
            time.sleep(0.05)

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def until(check: Callable[[], T | None], what: str, within_s: float = DEADLINE_S) -> T:
    """Poll ``check`` until it returns something true; fail after ``within_s``."""
    give_up = time.monotonic() + within_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > give_up:
            raise AssertionError(f"not {what} within {within_s} s")
        time.sleep(0.05)


def write_speechlike(path: Path, seconds: float, rate: int = 16000) -> None:
    """A 16-bit mono WAV whose loudness rises and falls like syllables (for the waveform)."""
    frames = int(seconds * rate)
    samples = []
    for n in range(frames):
        t = n / rate
        envelope = abs(math.sin(2 * math.pi * 2.1 * t)) * (0.3 + 0.6 * abs(math.sin(1.2 * t)))
        tone = 0.6 * math.sin(2 * math.pi * 180 * t) + 0.4 * math.sin(2 * math.pi * 365 * t)
        samples.append(int(32767 * 0.9 * envelope * tone))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{frames}h", *samples))


def steps_task(steps: int, step_s: float, **fields: Any) -> Task:
    return Task(items=[TaskItem(request=StepsRequest(steps=steps, step_s=step_s))], **fields)


def enqueue(site: Site, task: Task) -> str:
    async def put(queue: WorkerQueue) -> str:
        await queue.enqueue([task])
        return task.id

    result: str = site.queue(put)
    return result


def severe(browser: Any) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(browser: Any, site: Site, name: str) -> None:
    path = site.tmp / f"{name}.png"
    browser.save_screenshot(str(path))
    if os.environ.get("WQ_SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")


def live(browser: Any) -> bool:
    state = browser.execute_script(
        "var s = document.getElementById('live-status'); return s && s.dataset.live;"
    )
    return bool(state == "on")


def task_dom(browser: Any) -> dict[str, Any]:
    found: dict[str, Any] = browser.execute_script(
        "var t = document.getElementById('task'), p = document.getElementById('progress');"
        "return {state: t && t.dataset.state, fraction: p && p.dataset.fraction,"
        " marker: window.__sameDocument || null};"
    )
    return found


def test_a_task_from_another_process_goes_live_without_a_reload(
    page: Any, site: Site, start_worker: Callable[[], None]
) -> None:
    browser = page
    browser.get(site.base + "/")
    until(lambda: live(browser), "the overview's stream open")
    task_id = enqueue(site, steps_task(8, 0.5, name="eight steps"))
    pending = (
        'var c = document.querySelector(\'tr[data-queue="default"] td[data-count="pending"]\');'
        "return c && c.textContent;"
    )
    until(lambda: browser.execute_script(pending) == "1", "the task on the overview")
    screenshot(browser, site, "overview")

    browser.get(f"{site.base}/tasks/{task_id}")
    until(lambda: live(browser), "the task page's stream open")
    assert task_dom(browser)["state"] == "pending"
    assert "Queued (position 1)" in browser.page_source
    screenshot(browser, site, "task-pending")
    browser.execute_script("window.__sameDocument = 42;")

    start_worker()
    fractions: list[float] = []
    states: list[str] = []
    shot = False

    def completed() -> bool:
        nonlocal shot
        dom = task_dom(browser)
        assert dom["marker"] == 42, "the page was reloaded"
        if not states or states[-1] != dom["state"]:
            states.append(dom["state"])
        if dom["fraction"]:
            fraction = float(dom["fraction"])
            if not fractions or fractions[-1] != fraction:
                fractions.append(fraction)
            if 0 < fraction < 1 and not shot:
                screenshot(browser, site, "task-running")
                shot = True
        return bool(dom["state"] == "completed")

    until(completed, "the task completed on the page", within_s=60)
    assert "processing" in states
    assert states[-1] == "completed"
    assert fractions == sorted(fractions), fractions
    assert len([f for f in fractions if 0 < f < 1]) >= 2, fractions  # it advanced
    assert fractions[-1] == 1.0
    message = browser.execute_script("return document.getElementById('progress-message').innerText")
    assert "step 8 of 8" in message
    assert not severe(browser)


def test_a_cancel_from_the_page_stops_a_running_task(
    page: Any, site: Site, start_worker: Callable[[], None]
) -> None:
    browser = page
    start_worker()
    task_id = enqueue(site, steps_task(600, 0.1, name="long"))
    browser.get(f"{site.base}/tasks/{task_id}")
    until(lambda: task_dom(browser)["state"] == "processing", "the task running")
    until(lambda: task_dom(browser)["fraction"], "its first progress")
    # Clicked in one script: a live fragment may replace the button between a find and a click.
    browser.execute_script("document.getElementById('cancel').click()")
    until(lambda: task_dom(browser)["state"] == "cancelled", "the task cancelled on the page")
    screenshot(browser, site, "task-cancelled")

    task = site.queue(lambda queue: queue.get_task(task_id))
    assert task.state is TaskState.CANCELLED
    assert task.progress is not None
    assert task.progress.current < 600  # it stopped before its end
    assert not severe(browser)


def test_every_page_renders_without_console_errors(page: Any, site: Site) -> None:
    browser = page
    hostile = enqueue(
        site,
        steps_task(3, 0.1, name=HOSTILE + '<img src=x onerror="window.__pwned=1">',
                   metadata={"note": HOSTILE}),
    )  # fmt: skip
    upstream = enqueue(site, steps_task(3, 0.1, name="upstream"))
    enqueue(site, steps_task(3, 0.1, name="downstream", depends_on=[upstream]))
    audio = site.data_dir / "outputs" / "speech" / "0.wav"
    write_speechlike(audio, seconds=1.5)

    async def speech(queue: WorkerQueue) -> str:
        request = TextToSpeechRequest(text="Hello from the queue.", voice_id="espeak.en")
        await queue.enqueue([Task(items=[TaskItem(request=request)], queue="speech")])
        [claimed] = await queue.dequeue(1, queues=["speech"])
        result: JsonValue = {"path": str(audio), "format": "wav", "duration_s": 1.5,
                             "sample_rate": 16000}  # fmt: skip
        await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id, results=[result])
        return claimed.id

    spoken = site.queue(speech)
    pages = {
        "overview-tasks": "/",
        "task-hostile": f"/tasks/{hostile}",
        "task-dependencies": f"/tasks/{upstream}",
        "task-speech": f"/tasks/{spoken}",
    }
    for name, path in pages.items():
        browser.get(site.base + path)
        until(lambda: live(browser), f"{path}'s stream open")
        assert browser.execute_script("return window.__pwned || null") is None
        screenshot(browser, site, name)
        if name == "task-hostile":  # shown as text, never run
            # Read in one script: the live fragment may replace the heading meanwhile.
            heading = browser.execute_script("return document.querySelector('h1').innerText")
            assert HOSTILE in heading
        assert not severe(browser), (path, severe(browser))
    browser.get(site.base + f"/tasks/{spoken}")
    duration = until(
        lambda: browser.execute_script(
            "var a = document.querySelector('audio'); return a && a.readyState >= 1 && a.duration;"
        ),
        "the audio's metadata loaded",
    )
    assert abs(float(duration) - 1.5) < 0.05
    waveform = browser.execute_script(
        "return document.querySelector('svg.waveform path').getAttribute('d')"
    )
    assert waveform
    assert waveform.count("M") > 100
    assert not severe(browser)
