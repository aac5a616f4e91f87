"""Gaze angles of cache rows: the ones the cache stores, or a registered estimator run again on the cached patches.

Either way the angles are (pitch, yaw) in radians in the normalised camera, ETH-XGaze's convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gazeclip_cli.core.analyze.common import ProgressFn, Selection, tell
from gazeclip_cli.core.data.cache import PREPROCESSED_FILE, Cache, CacheRow, estimator_fingerprint, load_rgb
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.model.builder import WeightSources, build_frozen_gaze_estimator
from gazeclip_cli.core.model.gaze_estimator import (
    GAZE_ESTIMATORS,
    PATCH_SIZE,
    GazeEstimator,
    estimator_config,
)
from gazeclip_cli.core.weights.locate import find_weight, sha256_file, weights_dir


@dataclass(frozen=True)
class GazeAngles:
    """(pitch, yaw) of every row, and where they came from."""

    angles: np.ndarray  # (N, 2) radians, in row order
    label: str  # short name for tables and legends: "cache (small-cnn)", "eth-xgaze"
    record: dict[str, Any]  # the JSON record of the source

    def describe(self) -> dict[str, Any]:
        """The record with the label: what an analysis's JSON says about its angles."""
        return {"label": self.label, **self.record}


def cached_angles(cache: Cache, rows: Sequence[CacheRow]) -> GazeAngles:
    """The angles ``preprocess`` stored for ``rows``.

    Raises:
        DataError: some rows have none (the cache was made without a gaze estimator).
    """
    missing = sum(r.gaze is None for r in rows)
    if missing:
        raise DataError(
            f"{cache.folder}: no gaze angles in {PREPROCESSED_FILE} for {missing} of {len(rows)} rows; "
            "re-run `gazeclip preprocess` with --gaze-estimator, or pass --gaze-estimator NAME here "
            "to estimate them from the cached patches"
        )
    settings = cache.settings
    name = settings.gaze_estimator if settings is not None else ""
    record = {
        "kind": "cache",
        "estimator": name or None,
        "fingerprint": (settings.gaze_estimator_fingerprint or None) if settings is not None else None,
    }
    angles = np.array([r.gaze for r in rows], dtype=np.float64).reshape(-1, 2)
    return GazeAngles(angles=angles, label=f"cache ({name})" if name else "cache", record=record)


def present_estimators(
    weights: WeightSources, names: Sequence[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Registered estimators whose weights are present, and why each other one was left out.

    Args:
        weights: the weights folder and explicit files (``overrides``: estimator name -> file).
        names: limit to these (each must be registered); all registered ones when None.
    """
    from gazeclip_cli.core.errors import ConfigError

    directory = weights_dir(weights.directory)
    present, skipped = [], {}
    for name in names or sorted(GAZE_ESTIMATORS):
        if name not in GAZE_ESTIMATORS:
            raise ConfigError(
                f"unknown gaze estimator '{name}' (known: {', '.join(sorted(GAZE_ESTIMATORS))})"
            )
        weight = estimator_config(name).weights  # its release's weight name, as preprocess reads it
        if weight in weights.overrides or find_weight(weight, directory) is not None:
            present.append(name)
        else:
            skipped[name] = f"no weight file {weight!r} in {directory}"
    return present, skipped


def load_estimator(name: str, weights: WeightSources) -> tuple[GazeEstimator, Path]:
    """The frozen estimator ``name`` with its weights (eval mode) and the file they came from.

    Raises:
        WeightsError: its weight file is missing or does not fit.
    """
    estimator, path = build_frozen_gaze_estimator(estimator_config(name), weights)
    assert path is not None  # estimator_config always names a weight file
    return estimator, path


class _Patches(Dataset):
    def __init__(self, rows: Sequence[CacheRow]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_rgb(self.rows[i].patch, PATCH_SIZE)  # (3, 224, 224) in [0, 1]


@torch.inference_mode()
def estimate_angles(
    rows: Sequence[CacheRow],
    estimator: GazeEstimator,
    name: str,
    weights_file: Path | None,
    device: torch.device,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> GazeAngles:
    """Run ``estimator`` on the cached gaze patches of ``rows``: (N, 2) (pitch, yaw)."""
    estimator = estimator.to(device).eval()
    out = []
    done = 0
    for batch in DataLoader(_Patches(rows), batch_size=batch_size, shuffle=False):
        out.append(estimator(batch.to(device)).float().cpu().numpy())  # (B, 3, 224, 224) -> (B, 2)
        done += len(batch)
        tell(progress, f"gaze ({name})", done, len(rows))
    angles = np.concatenate(out).astype(np.float64) if out else np.zeros((0, 2))
    record = {
        "kind": "estimator",
        "estimator": name,
        "fingerprint": estimator_fingerprint(estimator),
        "weights": str(weights_file) if weights_file else None,
        "weights_sha256": sha256_file(weights_file) if weights_file else None,
    }
    return GazeAngles(angles=angles, label=name, record=record)


def gaze_for(
    selection: Selection,
    estimator: str | None = None,
    weights: WeightSources | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> GazeAngles:
    """Angles of every selected row: the caches' own (``estimator`` None) or ``estimator``'s from the patches.

    Raises:
        DataError: a cache has no angles, or the caches hold angles of different estimators.
        WeightsError: the estimator's weights are missing.
    """
    if estimator is not None:
        model, path = load_estimator(estimator, weights or WeightSources())
        return estimate_angles(
            selection.rows, model, estimator, path, torch.device(device), batch_size, progress
        )
    parts = []
    for k, cache in enumerate(selection.caches):
        parts.append(
            cached_angles(cache, [r for r, o in zip(selection.rows, selection.owner, strict=True) if o == k])
        )
    prints = {(p.record["estimator"], p.record["fingerprint"]) for p in parts}
    if len(prints) > 1:
        listed = "; ".join(f"{c.folder}: {p.label}" for c, p in zip(selection.caches, parts, strict=True))
        raise DataError(
            f"the caches hold gaze angles of different estimators ({listed}); "
            "pass --gaze-estimator NAME to estimate them all with one"
        )
    angles = np.concatenate([p.angles for p in parts]) if parts else np.zeros((0, 2))
    return GazeAngles(angles=angles, label=parts[0].label, record=parts[0].record)
