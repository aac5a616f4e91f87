"""Fig. 7: how well each generator keeps the gaze of the real face it was made from.

Per fake/target pair (``pairs.py``) the cosine similarity of the two 3-D gaze vectors (ETH-XGaze's
convention); per generator the mean over its pairs, with a seeded bootstrap interval, and the
mean angle between the two gazes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gazeclip_cli.core.analyze.common import (
    AnalysisFiles,
    ProgressFn,
    check_bootstrap,
    draw_per_group,
    error_bars,
    percentile_interval,
    prepare_out,
    seeded_rng,
    tell,
    write_csv,
    write_json,
)
from gazeclip_cli.core.analyze.pairs import Pair, Pairing
from gazeclip_cli.core.data.cache import CacheRow, read_cached_rgb
from gazeclip_cli.core.data.gaze_normalization import gaze_cosine
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.tables import Table
from gazeclip_cli.core.figures import colours, new_figure, save_figure

STEM = "gaze-agreement"


def mean_interval(
    values: np.ndarray, resamples: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    means = [values[rng.integers(0, len(values), size=len(values))].mean() for _ in range(resamples)]
    return percentile_interval(np.array(means), confidence)


@dataclass(frozen=True)
class GeneratorAgreement:
    """One generator's bar of Fig. 7."""

    generator: str
    forgery_type: str
    architecture: str
    pairs: int
    mean_cosine: float
    ci_low: float | None
    ci_high: float | None
    mean_angle_deg: float  # mean angle between fake and target gaze
    example: Pair  # the pair the figure shows


@dataclass
class GazeAgreementResult:
    """Fig. 7's numbers for one gaze source."""

    generators: tuple[GeneratorAgreement, ...]
    pairs: list[Pair]  # every pair used
    cosines: np.ndarray  # (P,) per pair, same order
    samples: int | None
    bootstrap: int
    confidence: float
    seed: int
    gaze: dict[str, Any]
    pairing: dict[str, Any]  # what the pair search found and missed
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "analysis": "gaze-agreement",
            "figure": "Fig. 7",
            "inputs": self.inputs,
            "gaze": self.gaze,
            "pairing": self.pairing,
            "pairs_per_generator": self.samples,
            "bootstrap_resamples": self.bootstrap,
            "confidence": self.confidence,
            "seed": self.seed,
            "generators": [
                {
                    "generator": g.generator,
                    "forgery_type": g.forgery_type,
                    "architecture": g.architecture,
                    "pairs": g.pairs,
                    "mean_cosine": g.mean_cosine,
                    "ci_low": g.ci_low,
                    "ci_high": g.ci_high,
                    "mean_angle_deg": g.mean_angle_deg,
                }
                for g in self.generators
            ],
        }

    def table(self) -> Table:
        pct = round(100 * self.confidence)
        return Table(
            key="gaze-agreement",
            title="Gaze agreement of fakes with their targets, Fig. 7",
            columns=(
                "Generator",
                "Type",
                "pairs",
                "mean cos",
                f"{pct}% low",
                f"{pct}% high",
                "mean angle (deg)",
            ),
            rows=tuple(
                (g.generator, g.forgery_type, g.pairs, g.mean_cosine, g.ci_low, g.ci_high, g.mean_angle_deg)
                for g in self.generators
            ),
            notes=(
                f"Cosine of the 3-D gaze vectors of each fake and its target; angles from "
                f"{self.gaze.get('label', 'the cache')}; {len(self.pairs)} pairs, seed {self.seed}.",
            ),
        )


def gaze_agreement(
    rows: Sequence[CacheRow],
    angles: np.ndarray,
    pairing: Pairing,
    *,
    gaze: dict[str, Any],
    samples: int | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    where: str = "cache",
    progress: ProgressFn | None = None,
) -> GazeAgreementResult:
    """Mean gaze cosine of every generator's fake/target pairs.

    Args:
        rows: the rows ``pairing`` indexes (fakes and reals of every cache).
        angles: (N, 2) (pitch, yaw) radians of ``rows``.
        pairing: from :func:`~gazeclip_cli.core.analyze.pairs.find_pairs`.
        samples: pairs per generator, drawn seeded; every pair when None.

    Raises:
        DataError: no pairs at all, or a generator with fewer pairs than ``samples``.
    """
    check_bootstrap(bootstrap, confidence)
    if not pairing.pairs:
        missed = sum(pairing.unmatched.values()) + sum(pairing.ambiguous.values())
        raise DataError(
            f"{where}: no fake/target pairs found ({missed} fakes had a target name but no single real row, "
            f"{len(pairing.csv_missing)} CSV lines named files in no cache); give a --pairs CSV or add the "
            "target reals' cache (docs/DATA.md, pairs for Fig. 7)"
        )
    by_generator: dict[str, list[int]] = {}
    for k, p in enumerate(pairing.pairs):
        by_generator.setdefault(rows[p.fake].generator, []).append(k)
    chosen = draw_per_group(by_generator, samples, seed, where=where, what="pairs", flag="--samples")
    angles = np.asarray(angles, dtype=np.float64)
    used = sorted(k for idx in chosen.values() for k in idx)
    pairs = [pairing.pairs[k] for k in used]
    fake_idx = np.array([p.fake for p in pairs])
    real_idx = np.array([p.real for p in pairs])
    cos = gaze_cosine(angles[fake_idx], angles[real_idx])  # (P,)
    position = {k: n for n, k in enumerate(used)}
    out = []
    for n, (name, idx) in enumerate(chosen.items()):
        values = cos[[position[k] for k in idx]]
        low = high = None
        if bootstrap:
            low, high = mean_interval(values, bootstrap, confidence, seeded_rng(seed, f"bootstrap/{name}"))
        first = rows[pairing.pairs[idx[0]].fake]
        out.append(
            GeneratorAgreement(
                generator=name,
                forgery_type=first.forgery_type,
                architecture=first.architecture,
                pairs=len(idx),
                mean_cosine=float(values.mean()),
                ci_low=low,
                ci_high=high,
                mean_angle_deg=float(np.degrees(np.arccos(values)).mean()),
                example=pairing.pairs[idx[0]],
            )
        )
        tell(progress, "gaze agreement", n + 1, len(chosen))
    return GazeAgreementResult(
        generators=tuple(out),
        pairs=pairs,
        cosines=cos,
        samples=samples,
        bootstrap=bootstrap,
        confidence=confidence,
        seed=seed,
        gaze=gaze,
        pairing=pairing.to_dict(),
    )


def _arrow(ax: Any, size: int, pitch: float, yaw: float, colour: str) -> None:
    """ETH-XGaze's ``draw_gaze`` arrow from the patch centre (the face centre of the normalised camera)."""
    from gazeclip_cli.core.inference.report_html import gaze_arrow

    (x0, y0), (x1, y1) = gaze_arrow((0, 0, size, size), pitch, yaw, length=size / 2)
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": colour, "lw": 2})


def plot_gaze_agreement(
    result: GazeAgreementResult, rows: Sequence[CacheRow], angles: np.ndarray, out_dir: Path, fmt: str = "png"
) -> Path:
    """Mean cosine per generator as bars, and one example pair per generator (fake above target, gaze arrows)."""
    gens = result.generators
    n = len(gens)
    fig = new_figure(max(6.0, 1.5 * n), 6.2)
    grid = fig.add_gridspec(3, n, height_ratios=[1.3, 1, 1])
    bars = fig.add_subplot(grid[0, :])
    palette = colours(n)
    xs = np.arange(n)
    err = error_bars([g.mean_cosine for g in gens], [g.ci_low for g in gens], [g.ci_high for g in gens])
    bars.bar(xs, [g.mean_cosine for g in gens], color=palette, yerr=err, capsize=2)
    bars.set_xticks(xs, [f"{g.generator}\n({g.pairs} pairs)" for g in gens], fontsize=7)
    bars.set_ylim(min(0.0, min(g.mean_cosine for g in gens) - 0.05), 1.0)
    bars.axhline(0.0, color="0.5", lw=0.5)
    bars.set_ylabel("mean cosine", fontsize=8)
    bars.set_title(f"gaze agreement with the target face ({result.gaze.get('label', 'cache')})", fontsize=9)
    for i, g in enumerate(gens):
        for row, (index, title) in enumerate(((g.example.fake, "fake"), (g.example.real, "target"))):
            ax = fig.add_subplot(grid[1 + row, i])
            patch = read_cached_rgb(rows[index].patch)
            ax.imshow(patch)
            pitch, yaw = angles[index]
            _arrow(ax, patch.shape[0], float(pitch), float(yaw), "yellow")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                cos = float(gaze_cosine(angles[[g.example.fake]], angles[[g.example.real]])[0])
                ax.set_title(f"{g.generator}\nCos = {cos:.2f}", fontsize=7)
            if i == 0:
                ax.set_ylabel(title, fontsize=8)
    return save_figure(fig, out_dir, STEM, fmt)


def write_gaze_agreement(
    result: GazeAgreementResult,
    rows: Sequence[CacheRow],
    angles: np.ndarray,
    out_dir: str | Path,
    fmt: str = "png",
) -> AnalysisFiles:
    """``gaze-agreement.{png,svg}``, ``gaze-agreement.csv`` (per generator), ``gaze-agreement-pairs.csv``, JSON."""
    out = prepare_out(out_dir)
    summary = write_csv(
        out / f"{STEM}.csv",
        (
            "generator",
            "forgery_type",
            "architecture",
            "pairs",
            "mean_cosine",
            "ci_low",
            "ci_high",
            "mean_angle_deg",
        ),
        [
            (
                g.generator,
                g.forgery_type,
                g.architecture,
                g.pairs,
                g.mean_cosine,
                g.ci_low,
                g.ci_high,
                g.mean_angle_deg,
            )
            for g in result.generators
        ],
    )
    degrees = np.degrees(np.asarray(angles, dtype=np.float64))
    per_pair = write_csv(
        out / f"{STEM}-pairs.csv",
        ("generator", "rule", "fake", "fake_frame", "real", "real_frame", "frame_offset",
         "fake_pitch_deg", "fake_yaw_deg", "real_pitch_deg", "real_yaw_deg", "cosine"),
        [
            (rows[p.fake].generator, p.rule, rows[p.fake].file, rows[p.fake].frame_index, rows[p.real].file,
             rows[p.real].frame_index, p.frame_offset, *degrees[p.fake], *degrees[p.real], float(c))
            for p, c in zip(result.pairs, result.cosines, strict=True)
        ],
    )  # fmt: skip
    figure = plot_gaze_agreement(result, rows, angles, out, fmt)
    json_path = write_json(out / f"{STEM}.json", result.to_dict())
    return AnalysisFiles(figure=figure, csv=(summary, per_pair), json=json_path)
