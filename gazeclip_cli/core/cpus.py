"""How many CPU cores this process may use: its affinity mask, and a container's CPU quota.

``os.cpu_count()`` counts the machine's cores. A process may be confined to fewer: by its
affinity mask (``taskset``, Slurm, ``docker --cpuset-cpus``) or by a CPU quota
(``docker --cpus=2``, Kubernetes CPU limits), under which the affinity mask still lists
every core of the host. Sizing thread pools by the host's count under a quota runs many
threads on a budget of a few cores, and OpenMP teams then wait at every barrier. The quota
is read from the cgroup file system as the process sees it (inside a container, its own
cgroup): v2 ``cpu.max``, v1 ``cpu/cpu.cfs_quota_us`` over ``cpu.cfs_period_us``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: affinity mask, capped by the cgroup CPU quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in cores (``2.5`` = two and a half cores' time), or None when there is none."""
    v2 = _read(cgroup_root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            return _ratio(parts[0], parts[1])
        return None
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota = _read(cgroup_root / folder / "cpu.cfs_quota_us")
        period = _read(cgroup_root / folder / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return _ratio(quota, period) if quota.strip() != "-1" else None
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cap_threads_to_quota(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """Under a CPU quota smaller than the affinity mask, default OpenMP to the quota's cores.

    Sets ``OMP_NUM_THREADS`` (read by torch and OpenCV when they first start their thread
    pools, so call this before either runs) unless the user set it. Returns the thread count
    set, or None when nothing was changed.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        return None
    cores = usable_cores(cgroup_root)
    if cores >= affinity:
        return None
    os.environ["OMP_NUM_THREADS"] = str(cores)
    return cores
