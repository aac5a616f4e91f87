"""What a bug report needs to know about this machine: versions, devices, CPU, weights, model folders.

:func:`describe_environment` returns plain data (``gazeclip env`` prints it); asking torch
about CUDA happens only here, when called.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gazeclip_cli import __version__
from gazeclip_cli.core.cpus import cgroup_cpu_quota, usable_cores
from gazeclip_cli.core.inference.provenance import LIBRARIES, library_versions
from gazeclip_cli.core.weights.locate import KNOWN_WEIGHTS, find_weight, present_timm_weights, weights_dir

# Besides the libraries that can change a verdict (provenance.LIBRARIES): the CLI's own.
CLI_LIBRARIES = ("typer", "rich", "scikit-learn", "matplotlib")


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    memory_gb: float  # total memory
    capability: str  # compute capability, e.g. "9.0"


@dataclass(frozen=True)
class WeightStatus:
    name: str
    path: str | None  # where it was found, or None
    size_mb: float | None


@dataclass
class Environment:
    """Everything ``gazeclip env`` reports."""

    gazeclip: str
    python: str
    executable: str
    platform: str
    libraries: dict[str, str]  # distribution -> version ("absent" when not installed)
    torch_cuda_build: str | None  # the CUDA version torch was built with; None for a CPU build
    cudnn: str | None
    cuda_available: bool
    cuda_devices: list[CudaDevice] = field(default_factory=list)
    cpu_capability: str = ""  # the SIMD level torch's CPU kernels use (AVX2, AVX512, ...)
    cpu_cores: int = 0  # usable cores: affinity mask capped by a container's CPU quota
    cpu_quota: float | None = None  # a container's CPU quota in cores, when one is set
    torch_threads: int = 0  # torch's intra-op threads in this process
    weights_dir: str = ""
    weights: list[WeightStatus] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)  # the GAZECLIP_* and thread variables set

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env_vars() -> dict[str, str]:
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("GAZECLIP_") or k in names}


def describe_environment(weights: str | Path | None = None) -> Environment:
    """This machine and installation as :class:`Environment`.

    Args:
        weights: the weights folder to look in (default ``$GAZECLIP_WEIGHTS_DIR`` or ``models/weights``).
    """
    import torch

    folder = weights_dir(weights)
    found = []
    for name in [*KNOWN_WEIGHTS, *(n for n in present_timm_weights(folder) if n not in KNOWN_WEIGHTS)]:
        path = find_weight(name, folder)
        size = None
        if path is not None and path.is_file():
            size = round(path.stat().st_size / 1e6, 1)
        found.append(WeightStatus(name, None if path is None else str(path), size))
    devices = []
    available = torch.cuda.is_available()
    for i in range(torch.cuda.device_count() if available else 0):
        props = torch.cuda.get_device_properties(i)
        devices.append(
            CudaDevice(i, props.name, round(props.total_memory / 2**30, 1), f"{props.major}.{props.minor}")
        )
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    versions = library_versions(LIBRARIES + CLI_LIBRARIES)
    return Environment(
        gazeclip=__version__,
        python=platform.python_version(),
        executable=sys.executable,
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        libraries=versions,
        torch_cuda_build=torch.version.cuda,
        cudnn=None if cudnn is None else str(cudnn),
        cuda_available=available,
        cuda_devices=devices,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_cores=usable_cores(),
        cpu_quota=cgroup_cpu_quota(),
        torch_threads=torch.get_num_threads(),
        weights_dir=str(folder),
        weights=found,
        environment=_env_vars(),
    )
