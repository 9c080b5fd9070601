"""The cores a worker shares out among its tasks (worker.runtime.cores): its affinity,
lowered by a container's CPU quota, read from the cgroup files as Linux lays them out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.runtime import cores
from worker.runtime.cores import cgroup_cpu_limit, task_threads


def _files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("membership", "files", "limit"),
    [
        # cgroup v2 inside a container (Docker --cpus=1.5, a Kubernetes limit of 1500m)
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),
        ("0::/kubepods/pod1/c1\n", {"kubepods/pod1/c1/cpu.max": "200000 100000\n"}, 2.0),
        # cgroup v1, the cpu controller mounted alone or with cpuacct
        (
            "4:cpu,cpuacct:/docker/abc\n0::/\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            0.5,
        ),
        (
            "1:cpu:/\n0::/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        ("0::/\n", {}, None),  # no cpu.max there (the controller is not enabled)
        ("0::/\n", {"cpu.max": "lots\n"}, None),  # unreadable: no limit rather than a crash
        # A limit on a parent cgroup binds its children: the lowest on the way up counts.
        ("0::/pod/c1\n", {"pod/cpu.max": "50000 100000\n", "pod/c1/cpu.max": "max 100000\n"}, 0.5),
        # v1 without a cgroup namespace: the host's path is not under the container's mount,
        # whose top holds the container's limit.
        (
            "4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "150000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            1.5,
        ),
        ("garbage\n0::/\n", {"cpu.max": "100000 100000\n"}, 1.0),  # an odd line is skipped
    ],
    ids=[
        "v2",
        "v2-unlimited",
        "v2-nested",
        "v1",
        "v1-unlimited",
        "v2-absent",
        "garbled",
        "v2-parent",
        "v1-no-namespace",
        "odd-line",
    ],
)
def test_the_cpu_quota_is_read_from_the_process_s_cgroup(
    tmp_path: Path, membership: str, files: dict[str, str], limit: float | None
) -> None:
    _files(tmp_path / "fs", files)
    (tmp_path / "cgroup").write_text(membership)
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "cgroup") == limit


def test_no_cgroup_file_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


def test_a_quota_lowers_the_usable_cores_rounding_up(monkeypatch: pytest.MonkeyPatch) -> None:
    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: 0.5)
    assert cores.usable_cores() == 1
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: affinity + 8.0)
    assert cores.usable_cores() == affinity  # a quota above the affinity changes nothing
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: None)
    assert cores.usable_cores() == affinity


@pytest.mark.parametrize(
    ("processes", "concurrency", "threads"),
    [(1, 1, 8), (2, 1, 4), (1, 4, 2), (2, 4, 1), (3, 1, 2), (16, 1, 1), (1, 100, 1)],
)
def test_the_cores_are_shared_out_over_processes_and_concurrency(
    monkeypatch: pytest.MonkeyPatch, processes: int, concurrency: int, threads: int
) -> None:
    monkeypatch.setattr(cores, "usable_cores", lambda: 8)
    assert task_threads(processes, concurrency) == threads
