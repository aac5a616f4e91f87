"""Cores the process may use: the affinity mask, capped by a container's CPU quota."""

from __future__ import annotations

import os

import pytest

from gazeclip_cli.core.cpus import cap_threads_to_quota, cgroup_cpu_quota, usable_cores

affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask on this OS")


def cgroup_v2(root, text):
    root.mkdir(exist_ok=True)
    (root / "cpu.max").write_text(text + "\n")
    return root


def cgroup_v1(root, quota, period="100000", folder="cpu"):
    (root / folder).mkdir(parents=True)
    (root / folder / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / folder / "cpu.cfs_period_us").write_text(period + "\n")
    return root


def test_quota_is_read_from_cgroup_v2_and_v1(tmp_path):
    assert cgroup_cpu_quota(cgroup_v2(tmp_path / "a", "150000 100000")) == 1.5
    assert cgroup_cpu_quota(cgroup_v2(tmp_path / "b", "max 100000")) is None
    assert cgroup_cpu_quota(cgroup_v1(tmp_path / "c", "200000")) == 2.0
    assert cgroup_cpu_quota(cgroup_v1(tmp_path / "d", "-1")) is None
    assert cgroup_cpu_quota(cgroup_v1(tmp_path / "e", "50000", folder="cpu,cpuacct")) == 0.5
    assert cgroup_cpu_quota(cgroup_v2(tmp_path / "f", "garbage")) is None
    assert cgroup_cpu_quota(tmp_path / "none") is None


@affinity
def test_usable_cores_is_the_affinity_mask_capped_by_the_quota(tmp_path):
    mask = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "none") == mask
    assert usable_cores(cgroup_v2(tmp_path / "half", "50000 100000")) == 1  # rounded up, at least 1
    assert usable_cores(cgroup_v2(tmp_path / "many", f"{100000 * (mask + 4)} 100000")) == mask


@affinity
def test_threads_capped_only_under_a_smaller_quota_and_never_over_the_users_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cap_threads_to_quota(tmp_path / "none") is None and "OMP_NUM_THREADS" not in os.environ
    assert cap_threads_to_quota(cgroup_v2(tmp_path / "two", "200000 100000")) == 2
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert cap_threads_to_quota(cgroup_v2(tmp_path / "one", "100000 100000")) is None
    assert os.environ["OMP_NUM_THREADS"] == "6"
