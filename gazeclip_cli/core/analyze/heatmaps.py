"""Fig. 8: a grid of Grad-CAM maps, one row per model folder, one column per sample (N per generator, seeded).

The maps are :func:`~gazeclip_cli.core.inference.gradcam.grad_cam`'s, the same ``attribute``
puts in its report: the predicted attribution class, over the GIE's patch grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gazeclip_cli.core.analyze.common import (
    AnalysisFiles,
    ProgressFn,
    draw_per_group,
    group_rows,
    prepare_out,
    tell,
    write_csv,
    write_json,
)
from gazeclip_cli.core.data.cache import CacheRow, load_rgb, read_cached_rgb
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.tables import Table
from gazeclip_cli.core.figures import new_figure, save_figure
from gazeclip_cli.core.inference.gradcam import grad_cam
from gazeclip_cli.core.model.folder import ModelFolder
from gazeclip_cli.core.model.gaze_estimator import PATCH_SIZE

STEM = "heatmaps"


@dataclass(frozen=True)
class HeatmapCell:
    """One model's Grad-CAM of one sample."""

    class_index: int  # the attribution class explained (the predicted one)
    class_name: str
    logit: float
    heatmap: np.ndarray = field(repr=False)  # (H, H) float32 in [0, 1], H the model's input size

    @property
    def peak(self) -> tuple[float, float]:
        """Where the map is hottest, as (row, column) fractions of the crop."""
        r, c = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        h, w = self.heatmap.shape
        return ((r + 0.5) / h, (c + 0.5) / w)


@dataclass
class HeatmapsResult:
    """The samples (columns), the models (rows) and every cell."""

    samples: list[int]  # row indices of the samples, grouped by generator
    models: list[str]  # labels
    cells: list[list[HeatmapCell]]  # [model][sample]
    per_generator: int
    seed: int
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, rows: Sequence[CacheRow]) -> dict[str, Any]:
        return {
            "analysis": "heatmaps",
            "figure": "Fig. 8",
            "inputs": self.inputs,
            "per_generator": self.per_generator,
            "seed": self.seed,
            "samples": [
                {"generator": rows[i].generator, "sample_id": rows[i].sample_id, "crop": str(rows[i].crop)}
                for i in self.samples
            ],
            "cells": [
                {
                    "model": model,
                    "sample_id": rows[i].sample_id,
                    "class_index": cell.class_index,
                    "class_name": cell.class_name,
                    "logit": cell.logit,
                    "peak_row": cell.peak[0],
                    "peak_col": cell.peak[1],
                    "mean_heat": float(cell.heatmap.mean()),
                }
                for model, cells in zip(self.models, self.cells, strict=True)
                for i, cell in zip(self.samples, cells, strict=True)
            ],
        }

    def table(self, rows: Sequence[CacheRow]) -> Table:
        counts: dict[str, int] = {}
        for i in self.samples:
            counts[rows[i].generator] = counts.get(rows[i].generator, 0) + 1
        table_rows = []
        for model, cells in zip(self.models, self.cells, strict=True):
            right = sum(
                cell.class_name == rows[i].generator for i, cell in zip(self.samples, cells, strict=True)
            )
            table_rows.append((model, len(cells), right, float(np.mean([c.heatmap.mean() for c in cells]))))
        return Table(
            key="heatmaps",
            title="Grad-CAM heatmaps, Fig. 8",
            columns=("Model", "samples", "explained class = generator", "mean heat"),
            rows=tuple(table_rows),
            notes=(f"{len(counts)} generators x {self.per_generator} samples, seed {self.seed}.",),
        )


def heatmaps(
    folders: Sequence[tuple[ModelFolder, str]],
    rows: Sequence[CacheRow],
    *,
    per_generator: int = 1,
    generators: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    where: str = "cache",
    progress: ProgressFn | None = None,
) -> HeatmapsResult:
    """Grad-CAM of ``per_generator`` seeded samples of every generator (or of ``generators``) for every model.

    Raises:
        DataError: a model has no image tower, an unknown generator, fewer rows than asked.
    """
    for folder, _ in folders:
        if folder.model.cam_layer() is None:
            raise DataError(
                f"{folder.path}: architecture '{folder.model.cfg.name}' has no spatial feature map "
                "(e.g. use_gie = false); Grad-CAM needs the GIE or a backbone with one"
            )
    groups = group_rows(rows)
    if generators:
        unknown = [g for g in generators if g not in groups]
        if unknown:
            raise DataError(f"{where}: no rows of generator {unknown[0]!r} (here: {', '.join(groups)})")
        groups = {g: groups[g] for g in generators}
    chosen = draw_per_group(groups, per_generator, seed, where=where, what="rows", flag="--per-generator")
    samples = [i for idx in chosen.values() for i in idx]
    total = len(samples) * len(folders)
    cells: list[list[HeatmapCell]] = []
    done = 0
    for folder, _label in folders:
        model = folder.model
        size = model.cfg.image_size
        names = folder.class_names
        row_cells = []
        for i in samples:
            image = load_rgb(rows[i].crop, size)[None].to(device)  # (1, 3, H, H)
            patch = load_rgb(rows[i].patch, PATCH_SIZE)[None].to(device) if model.uses_gaze else None
            cam = grad_cam(model, image, patch)
            row_cells.append(HeatmapCell(cam.class_index, names[cam.class_index], cam.logit, cam.heatmap))
            done += 1
            tell(progress, "Grad-CAM", done, total)
        cells.append(row_cells)
    return HeatmapsResult(
        samples=samples,
        models=[label for _, label in folders],
        cells=cells,
        per_generator=per_generator,
        seed=seed,
    )


def plot_heatmaps(result: HeatmapsResult, rows: Sequence[CacheRow], out_dir: Path, fmt: str = "png") -> Path:
    """First row the crops, then one row of heatmap overlays per model; columns titled by generator."""
    from gazeclip_cli.core.inference.report_html import heatmap_overlay

    n = len(result.samples)
    m = len(result.models)
    fig = new_figure(max(3.0, 1.35 * n), 1.45 * (m + 1) + 0.3)
    axes = fig.subplots(m + 1, n, squeeze=False)
    for j, i in enumerate(result.samples):
        crop = read_cached_rgb(rows[i].crop)
        axes[0, j].imshow(crop)
        axes[0, j].set_title(rows[i].generator, fontsize=7)
        for k in range(m):
            cell = result.cells[k][j]
            axes[k + 1, j].imshow(heatmap_overlay(crop, cell.heatmap))
            axes[k + 1, j].set_xlabel(cell.class_name, fontsize=6)
    for k, label in enumerate(["input", *result.models]):
        axes[k, 0].set_ylabel(label, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, out_dir, STEM, fmt)


def write_heatmaps(
    result: HeatmapsResult, rows: Sequence[CacheRow], out_dir: str | Path, fmt: str = "png"
) -> AnalysisFiles:
    """``heatmaps.{png,svg}``, ``heatmaps.csv`` (one row per model and sample) and ``heatmaps.json``."""
    out = prepare_out(out_dir)
    payload = result.to_dict(rows)
    csv_path = write_csv(
        out / f"{STEM}.csv",
        ("model", "generator", "sample_id", "class_index", "class_name", "logit", "peak_row", "peak_col", "mean_heat"),
        [
            (c["model"], rows[i].generator, c["sample_id"], c["class_index"], c["class_name"], c["logit"],
             c["peak_row"], c["peak_col"], c["mean_heat"])
            for c, i in zip(payload["cells"], result.samples * len(result.models), strict=True)
        ],
    )  # fmt: skip
    figure = plot_heatmaps(result, rows, out, fmt)
    json_path = write_json(out / f"{STEM}.json", payload)
    return AnalysisFiles(figure=figure, csv=(csv_path,), json=json_path)
