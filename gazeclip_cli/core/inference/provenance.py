"""Provenance of a verdict: what produced it, from what, with which settings, when.

An analyst must be able to show what produced a verdict. :func:`build_provenance` records
the model folder (path, architecture, format, the SHA-256 of ``weights.safetensors``
recorded in ``meta.json`` and the one computed now, the pretrained weight files the
folder was built on with their checksums, what it was trained on), the tool and library
versions, the settings and the UTC time. :func:`sha256_of_file` hashes each input file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gazeclip_cli import __version__
from gazeclip_cli.core.model.folder import SYNTHETIC_NOTICE, trained_on_synthetic
from gazeclip_cli.core.weights.locate import sha256_file

# Distributions whose version can change a verdict (decoders, detector, network code).
LIBRARIES = (
    "torch",
    "torchvision",
    "open_clip_torch",
    "peft",
    "timm",
    "facenet-pytorch",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "safetensors",
)


@dataclass(frozen=True)
class ModelProvenance:
    """The model folder that produced the verdicts."""

    path: str  # absolute path of the model folder
    architecture: str  # architecture name from the config
    format: int  # model-folder format version
    tool_version: str  # gazeclip version that wrote the folder
    weights_sha256: str  # SHA-256 of weights.safetensors, computed when it was loaded
    weights_sha256_recorded: str  # the SHA-256 meta.json recorded when the folder was written
    weight_files: dict[str, dict[str, str]]  # pretrained files the folder was built on: name -> file, sha256
    trained_on: str  # hash of the preprocessed training data, as recorded
    created: str  # when the folder was written (UTC), as recorded
    class_names: list[str]  # attribution classes, index = logit
    synthetic: bool = False  # trained on the synthetic demo benchmark: verdicts say nothing about real photos


@dataclass(frozen=True)
class Provenance:
    """Everything needed to show what produced a set of verdicts."""

    tool: str  # "gazeclip"
    tool_version: str  # version of the tool that ran now
    model: ModelProvenance
    libraries: dict[str, str]  # distribution -> version ("absent" when not installed)
    python: str  # Python version
    platform: str  # OS and machine
    device: str  # where the model ran
    settings: dict[str, Any]  # inference settings (threshold, face policy, ...)
    time_utc: str  # when this run started, ISO 8601 UTC
    extra: dict[str, Any] = field(default_factory=dict)  # command-specific additions

    @property
    def notice(self) -> str | None:
        """What a reader of these verdicts must know first (a model trained on synthetic data), or None."""
        return SYNTHETIC_NOTICE if self.model.synthetic else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (the same chunked reader the weights and model folders use)."""
    return sha256_file(Path(path))


def sha256_of_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes already read (an input file is read once, hashed and decoded)."""
    return hashlib.sha256(data).hexdigest()


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed version of each distribution, from package metadata (nothing is imported)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def utc_now() -> str:
    """The current time as ISO 8601 UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def model_provenance(
    path: str | os.PathLike[str], meta: dict[str, Any], weights_sha256: str
) -> ModelProvenance:
    """Provenance of a loaded model folder.

    Args:
        path: the model folder.
        meta: its ``meta.json``.
        weights_sha256: SHA-256 of its ``weights.safetensors`` computed at load time.
    """
    return ModelProvenance(
        path=os.path.abspath(path),
        architecture=str(meta.get("architecture", "")),
        format=int(meta.get("format", 0)),
        tool_version=str(meta.get("tool_version", "")),
        weights_sha256=weights_sha256,
        weights_sha256_recorded=str(meta.get("weights_sha256", "")),
        weight_files={k: dict(v) for k, v in sorted(meta.get("weight_files", {}).items())},
        trained_on=str(meta.get("trained_on", "")),
        created=str(meta.get("created", "")),
        class_names=list(meta.get("class_names", [])),
        synthetic=trained_on_synthetic(meta),
    )


def build_provenance(
    model: ModelProvenance, device: str, settings: dict[str, Any], extra: dict[str, Any] | None = None
) -> Provenance:
    """The provenance block of one run, timed now.

    Args:
        model: the model folder's provenance (:func:`model_provenance`).
        device: where the model runs.
        settings: the inference settings in force.
        extra: command-specific fields (for example the scan's output file).
    """
    return Provenance(
        tool="gazeclip",
        tool_version=__version__,
        model=model,
        libraries=library_versions(),
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        device=device,
        settings=dict(settings),
        time_utc=utc_now(),
        extra=dict(extra or {}),
    )
