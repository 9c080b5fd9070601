"""The benchmarks run: their quick sizes, end to end, in a subprocess each.

They reach into the library (the core bench replays its statements through ``sqlite3``), so a
change can break them without breaking the library; this is where that shows. No figure is
asserted: speed is measured by the benchmarks, not by tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    "script",
    [
        "bench_cli.py",
        "bench_core.py",
        "bench_runtime.py",
        "bench_contention.py",
        "bench_liveness.py",
        "bench_producers.py",
        "bench_pool.py",
        "bench_task_list.py",
        "bench_web.py",
    ],
)
def test_benchmark_runs_at_quick_sizes(script: str, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--runs", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures, "the benchmark wrote no figures"
