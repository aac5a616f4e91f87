"""Gaze estimators side by side (the estimators of Table V, the rows of Fig. 7).

Every registered estimator whose weights are present is run on the cached gaze patches; each
one's angles go through the same gaze-distance (Fig. 1) and gaze-agreement (Fig. 7) analyses.
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
    Selection,
    prepare_out,
    write_csv,
    write_json,
)
from gazeclip_cli.core.analyze.gaze_agreement import GazeAgreementResult, gaze_agreement
from gazeclip_cli.core.analyze.gaze_distance import GazeDistanceResult, gaze_distance
from gazeclip_cli.core.analyze.gaze_source import estimate_angles, load_estimator, present_estimators
from gazeclip_cli.core.analyze.pairs import Pairing
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.tables import Table
from gazeclip_cli.core.figures import colours, new_figure, save_figure
from gazeclip_cli.core.model.builder import WeightSources

STEM = "estimators"


@dataclass
class EstimatorsResult:
    """Per estimator: its gaze-distance result and, where pairs exist, its gaze-agreement result."""

    estimators: list[str]
    skipped: dict[str, str]  # estimator -> why it was left out
    distances: dict[str, GazeDistanceResult]
    agreements: dict[str, GazeAgreementResult]  # empty without pairs
    agreement_note: str | None  # why there is no agreement panel
    inputs: dict[str, Any] = field(default_factory=dict)

    def generators(self) -> list[str]:
        names: dict[str, None] = {}
        for result in self.distances.values():
            names.update((g.generator, None) for g in result.generators)
        for result in self.agreements.values():
            names.update((g.generator, None) for g in result.generators)
        return list(names)

    def _cells(self, estimator: str, generator: str) -> tuple[float | None, float | None]:
        d = next((g.distance for g in self.distances[estimator].generators if g.generator == generator), None)
        a = self.agreements.get(estimator)
        c = (
            None
            if a is None
            else next((g.mean_cosine for g in a.generators if g.generator == generator), None)
        )
        return d, c

    def to_dict(self) -> dict[str, Any]:
        return {
            "analysis": "estimators",
            "figure": "Table V estimators, Fig. 7 rows",
            "inputs": self.inputs,
            "estimators": self.estimators,
            "skipped": self.skipped,
            "agreement_note": self.agreement_note,
            "gaze_distance": {name: r.to_dict() for name, r in self.distances.items()},
            "gaze_agreement": {name: r.to_dict() for name, r in self.agreements.items()},
        }

    def table(self) -> Table:
        columns = ["Generator"]
        for name in self.estimators:
            columns.append(f"{name} FD (deg²)")
            if self.agreements:
                columns.append(f"{name} cos")
        rows = []
        for generator in self.generators():
            cells: list[Any] = [generator]
            for name in self.estimators:
                d, c = self._cells(name, generator)
                cells.append(d)
                if self.agreements:
                    cells.append(c)
            rows.append(tuple(cells))
        notes = [f"left out: {name} ({why})" for name, why in self.skipped.items()]
        if self.agreement_note:
            notes.append(self.agreement_note)
        return Table(
            key="estimators",
            title="Gaze estimators side by side: distance to the reals (Fig. 1) and agreement with targets (Fig. 7)",
            columns=tuple(columns),
            rows=tuple(rows),
            notes=tuple(notes),
        )


def compare_estimators(
    selection: Selection,
    pairing: Pairing | None,
    *,
    weights: WeightSources,
    names: Sequence[str] | None = None,
    real: Sequence[str] | None = None,
    samples: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> EstimatorsResult:
    """Gaze distance (and agreement, with pairs) of the selected rows for every present estimator.

    Raises:
        DataError: no estimator has its weights; the analyses' own refusals.
    """
    present, skipped = present_estimators(weights, names)
    if not present:
        first = next(iter(skipped.items()), ("", "none registered"))
        raise DataError(f"no gaze estimator has its weights here ({first[0]}: {first[1]})")
    distances, agreements = {}, {}
    note = None
    if pairing is None or not pairing.pairs:
        note = "no fake/target pairs found: gaze agreement left out (docs/DATA.md, pairs for Fig. 7)"
    for name in present:
        estimator, path = load_estimator(name, weights)
        angles = estimate_angles(
            selection.rows, estimator, name, path, torch.device(device), batch_size, progress
        )
        distances[name] = gaze_distance(
            selection.rows, angles.angles, gaze=angles.describe(), real=real, samples=samples,
            bootstrap=bootstrap, seed=seed, where=selection.where, progress=progress,
        )  # fmt: skip
        if note is None:
            agreements[name] = gaze_agreement(
                selection.rows, angles.angles, pairing, gaze=angles.describe(), samples=samples,
                bootstrap=bootstrap, seed=seed, where=selection.where, progress=progress,
            )  # fmt: skip
    return EstimatorsResult(
        estimators=present, skipped=skipped, distances=distances, agreements=agreements, agreement_note=note
    )


def _grouped(ax: Any, generators: list[str], series: dict[str, list[float | None]], ylabel: str) -> None:
    width = 0.8 / max(1, len(series))
    xs = np.arange(len(generators))
    for k, ((name, values), colour) in enumerate(zip(series.items(), colours(len(series)), strict=True)):
        ys = [np.nan if v is None else v for v in values]
        ax.bar(xs + (k - (len(series) - 1) / 2) * width, ys, width, label=name, color=colour)
    ax.set_xticks(xs, generators, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7, frameon=False)


def plot_estimators(result: EstimatorsResult, out_dir: Path, fmt: str = "png") -> Path:
    """Grouped bars per generator: Fréchet distance per estimator and, with pairs, mean cosine per estimator."""
    gens = result.generators()
    panels = 2 if result.agreements else 1
    fig = new_figure(max(6.0, 0.7 * len(gens) * max(1, len(result.estimators)) / 2 + 2), 3.4 * panels)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    what = (("Fréchet distance (deg²)", "gaze distance to the reals per estimator (Fig. 1)"),
            ("mean cosine", "gaze agreement with the target per estimator (Fig. 7)"))  # fmt: skip
    for k, (ax, (ylabel, title)) in enumerate(zip(axes, what, strict=False)):
        _grouped(ax, gens, {n: [result._cells(n, g)[k] for g in gens] for n in result.estimators}, ylabel)
        ax.set_title(title, fontsize=9)
    return save_figure(fig, out_dir, STEM, fmt)


def write_estimators(result: EstimatorsResult, out_dir: str | Path, fmt: str = "png") -> AnalysisFiles:
    """``estimators.{png,svg}``, ``estimators.csv`` (estimator x generator) and ``estimators.json``."""
    out = prepare_out(out_dir)
    rows = []
    for name in result.estimators:
        agreement = (
            {g.generator: g for g in result.agreements[name].generators} if name in result.agreements else {}
        )
        for g in result.distances[name].generators:
            a = agreement.get(g.generator)
            rows.append(
                (name, g.generator, g.forgery_type, g.n, g.distance, g.ci_low, g.ci_high,
                 a.pairs if a else None, a.mean_cosine if a else None, a.ci_low if a else None,
                 a.ci_high if a else None)
            )  # fmt: skip
    csv_path = write_csv(
        out / f"{STEM}.csv",
        ("estimator", "generator", "forgery_type", "n", "frechet_distance_deg2", "ci_low", "ci_high", "pairs",
         "mean_cosine", "cosine_ci_low", "cosine_ci_high"),
        rows,
    )  # fmt: skip
    figure = plot_estimators(result, out, fmt)
    json_path = write_json(out / f"{STEM}.json", result.to_dict())
    return AnalysisFiles(figure=figure, csv=(csv_path,), json=json_path)
