"""Fig. 1: the Fréchet distance between the real set's and each generator's (pitch, yaw) distribution.

Each side is fitted by a Gaussian (mean, unbiased covariance) and compared as FID compares
Inception features; angles in degrees, so the distance is in square degrees. A seeded
bootstrap gives the interval; the figure shows each generator's angles over the reals'.
"""

from __future__ import annotations

import math
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
    group_rows,
    percentile_interval,
    prepare_out,
    seeded_rng,
    tell,
    write_csv,
    write_json,
)
from gazeclip_cli.core.data.cache import CacheRow
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.tables import Table
from gazeclip_cli.core.figures import colours, new_figure, save_figure

STEM = "gaze-distance"
BOOTSTRAP_CHUNK = 64  # resamples drawn at once: 64 x 10,000 x 2 floats, about 10 MB


@dataclass(frozen=True)
class GaussianFit:
    """A Gaussian fitted to (N, d) samples: mean (d,), unbiased covariance (d, d)."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


def fit_gaussian(x: np.ndarray) -> GaussianFit:
    """Mean and unbiased (N - 1) covariance of (N, d) samples, N >= 2."""
    x = np.asarray(x, dtype=np.float64)
    return GaussianFit(
        mean=x.mean(axis=0), cov=np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]), n=len(x)
    )


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` for one pair of Gaussians or a stack of them.

    ``Tr (S1 S2)^(1/2)`` is the sum of the square roots of the eigenvalues of ``S1 S2``, which are
    those of the symmetric ``A S2 A`` with ``A = S1^(1/2)`` (both covariances positive
    semi-definite), so only symmetric eigen-decompositions are needed; tiny negative
    eigenvalues from round-off count as zero.

    Shapes: means (..., d), covariances (..., d, d) -> (...).
    """
    mu1, mu2, s1, s2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, s1, s2))
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(v, -1, -2)  # S1^(1/2)
    middle = root1 @ s2 @ root1
    middle = (middle + np.swapaxes(middle, -1, -2)) / 2.0  # symmetric up to round-off
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum(axis=-1)
    diff = mu1 - mu2
    return (
        (diff * diff).sum(axis=-1)
        + np.trace(s1, axis1=-2, axis2=-1)
        + np.trace(s2, axis1=-2, axis2=-1)
        - 2.0 * tr_sqrt
    )


def _stacked_fits(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means (B, d) and unbiased covariances (B, d, d) of the B resamples ``x[idx]``, idx (B, n)."""
    s = x[idx]  # (B, n, d)
    mean = s.mean(axis=1)
    c = s - mean[:, None, :]
    cov = np.einsum("bni,bnj->bij", c, c) / (idx.shape[1] - 1)
    return mean, cov


def bootstrap_interval(
    real: np.ndarray, fake: np.ndarray, resamples: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of the Fréchet distance: both sides resampled with replacement."""
    values = []
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        b = min(BOOTSTRAP_CHUNK, resamples - start)
        mr, cr = _stacked_fits(real, rng.integers(0, len(real), size=(b, len(real))))
        mf, cf = _stacked_fits(fake, rng.integers(0, len(fake), size=(b, len(fake))))
        values.append(frechet_distance(mr, cr, mf, cf))
    return percentile_interval(np.concatenate(values), confidence)


@dataclass(frozen=True)
class GeneratorDistance:
    """One generator's row of Fig. 1."""

    generator: str
    forgery_type: str
    architecture: str
    n: int  # samples of this generator used
    distance: float  # square degrees
    ci_low: float | None  # bootstrap interval (None without a bootstrap)
    ci_high: float | None
    mean_deg: tuple[float, float]  # fitted mean (pitch, yaw), degrees
    cov_deg2: tuple[tuple[float, float], tuple[float, float]]  # fitted covariance, square degrees


@dataclass
class GazeDistanceResult:
    """Fig. 1's numbers and the angles behind its panels."""

    real_sets: tuple[str, ...]
    n_real: int
    real_mean_deg: tuple[float, float]
    real_cov_deg2: tuple[tuple[float, float], tuple[float, float]]
    generators: tuple[GeneratorDistance, ...]
    samples: int | None  # per side; None = every row
    bootstrap: int
    confidence: float
    seed: int
    gaze: dict[str, Any]  # where the angles came from
    inputs: dict[str, Any] = field(default_factory=dict)  # cache, splits, ... (filled by the caller)
    points_deg: dict[str, np.ndarray] = field(
        default_factory=dict, repr=False
    )  # set -> (n, 2), for the figure

    def to_dict(self) -> dict[str, Any]:
        return {
            "analysis": "gaze-distance",
            "figure": "Fig. 1",
            "units": "square degrees of (pitch, yaw)",
            "inputs": self.inputs,
            "gaze": self.gaze,
            "samples_per_side": self.samples,
            "bootstrap_resamples": self.bootstrap,
            "confidence": self.confidence,
            "seed": self.seed,
            "real": {
                "sets": list(self.real_sets),
                "n": self.n_real,
                "mean_deg": list(self.real_mean_deg),
                "cov_deg2": [list(r) for r in self.real_cov_deg2],
            },
            "generators": [
                {
                    "generator": g.generator,
                    "forgery_type": g.forgery_type,
                    "architecture": g.architecture,
                    "n": g.n,
                    "frechet_distance": g.distance,
                    "ci_low": g.ci_low,
                    "ci_high": g.ci_high,
                    "mean_deg": list(g.mean_deg),
                    "cov_deg2": [list(r) for r in g.cov_deg2],
                }
                for g in self.generators
            ],
        }

    def table(self) -> Table:
        pct = round(100 * self.confidence)
        rows = tuple(
            (g.generator, g.forgery_type, g.n, self.n_real, g.distance, g.ci_low, g.ci_high)
            for g in self.generators
        )
        return Table(
            key="gaze-distance",
            title=f"Gaze distribution distance to the reals ({', '.join(self.real_sets)}), Fig. 1",
            columns=("Generator", "Type", "n", "n real", "Fréchet (deg²)", f"{pct}% low", f"{pct}% high"),
            rows=rows,
            notes=(
                f"Gaussian fits of (pitch, yaw) in degrees; angles from {self.gaze.get('label', 'the cache')}; "
                f"{'all rows' if self.samples is None else f'{self.samples} per side'}, "
                f"{self.bootstrap} bootstrap resamples, seed {self.seed}.",
            ),
        )


def _as_pair(a: np.ndarray) -> tuple[float, float]:
    return (float(a[0]), float(a[1]))


def _as_matrix(c: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    return ((float(c[0, 0]), float(c[0, 1])), (float(c[1, 0]), float(c[1, 1])))


def gaze_distance(
    rows: Sequence[CacheRow],
    angles: np.ndarray,
    *,
    gaze: dict[str, Any],
    real: Sequence[str] | None = None,
    samples: int | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    where: str = "cache",
    progress: ProgressFn | None = None,
) -> GazeDistanceResult:
    """Fréchet distance of every generator's gaze to the reals', with a bootstrap interval.

    Args:
        rows: cache rows; fakes (DFD 1) are grouped by generator.
        angles: (N, 2) (pitch, yaw) radians of ``rows``.
        gaze: the record of where the angles came from (and its ``label``).
        real: the real sets (generator names) to pool; every real set (DFD 0) when None.
        samples: draw this many per side, seeded per set; every row when None.
        bootstrap: resamples for the interval (0: no interval).
        confidence: of the interval.
        where: names the input in refusals.

    Raises:
        DataError: no real or no fake rows, an unknown real set, fewer rows than ``samples``.
        ConfigError: ``bootstrap`` negative or ``confidence`` outside (0, 1).
    """
    check_bootstrap(bootstrap, confidence)
    angles_deg = np.degrees(np.asarray(angles, dtype=np.float64))
    groups = group_rows(rows)
    reals = [name for name, idx in groups.items() if rows[idx[0]].dfd == 0]
    if real:
        unknown = [name for name in real if name not in groups]
        if unknown:
            raise DataError(
                f"{where}: no rows of the real set {unknown[0]!r} (sets here: {', '.join(groups)})"
            )
        not_real = [name for name in real if name not in reals]
        if not_real:
            raise DataError(
                f"{where}: {not_real[0]!r} is not a real set (its rows are fakes); pass a real set to --real"
            )
        reals = list(real)
    if not reals:
        raise DataError(f"{where}: no real rows (DFD label 0) to compare the generators with")
    fakes = {name: idx for name, idx in groups.items() if rows[idx[0]].dfd == 1}
    if not fakes:
        raise DataError(f"{where}: no fake rows (DFD label 1) to compare with the reals")
    pooled_real = [i for name in reals for i in groups[name]]
    chosen = draw_per_group(
        {"real": sorted(pooled_real), **fakes}, samples, seed, where=where, what="rows", flag="--samples"
    )
    small = [name for name, idx in chosen.items() if len(idx) < 2]
    if small:
        raise DataError(f"{where}: {small[0]} has fewer than 2 rows; a covariance needs at least 2")
    real_points = angles_deg[chosen["real"]]
    real_fit = fit_gaussian(real_points)
    out = []
    names = list(fakes)
    for k, name in enumerate(names):
        idx = chosen[name]
        points = angles_deg[idx]
        fit = fit_gaussian(points)
        distance = float(frechet_distance(real_fit.mean, real_fit.cov, fit.mean, fit.cov))
        low = high = None
        if bootstrap:
            low, high = bootstrap_interval(
                real_points, points, bootstrap, confidence, seeded_rng(seed, f"bootstrap/{name}")
            )
        first = rows[idx[0]]
        out.append(
            GeneratorDistance(
                generator=name,
                forgery_type=first.forgery_type,
                architecture=first.architecture,
                n=len(idx),
                distance=distance,
                ci_low=low,
                ci_high=high,
                mean_deg=_as_pair(fit.mean),
                cov_deg2=_as_matrix(fit.cov),
            )
        )
        tell(progress, "Fréchet distance", k + 1, len(names))
    return GazeDistanceResult(
        real_sets=tuple(reals),
        n_real=len(chosen["real"]),
        real_mean_deg=_as_pair(real_fit.mean),
        real_cov_deg2=_as_matrix(real_fit.cov),
        generators=tuple(out),
        samples=samples,
        bootstrap=bootstrap,
        confidence=confidence,
        seed=seed,
        gaze=gaze,
        points_deg={"real": real_points, **{name: angles_deg[chosen[name]] for name in names}},
    )


def _ellipse(ax: Any, mean_py: Sequence[float], cov_py: np.ndarray, colour: Any, style: str) -> None:
    """The 2-sigma ellipse of a Gaussian over (pitch, yaw), drawn with yaw on x and pitch on y."""
    from matplotlib.patches import Ellipse

    c = np.asarray(cov_py)
    cov_xy = np.array([[c[1, 1], c[0, 1]], [c[0, 1], c[0, 0]]])  # (yaw, pitch) order
    w, v = np.linalg.eigh(cov_xy)  # ascending: v[:, 1] is the major axis
    w = np.sqrt(np.clip(w, 0.0, None))
    angle = math.degrees(math.atan2(v[1, 1], v[0, 1]))
    ax.add_patch(
        Ellipse((mean_py[1], mean_py[0]), 4 * w[1], 4 * w[0], angle=angle, fill=False, edgecolor=colour,
                linestyle=style, lw=1.2)
    )  # fmt: skip


def _dot(n: int) -> float:
    """Marker area for a scatter of ``n`` points: visible when few, unobtrusive when thousands."""
    return 12.0 if n < 200 else 4.0 if n < 5000 else 2.0


def plot_gaze_distance(result: GazeDistanceResult, out_dir: Path, fmt: str = "png") -> Path:
    """One panel per generator (its yaw/pitch over the reals', both 2-sigma ellipses), then the distances as bars."""
    n = len(result.generators)
    ncols = min(4, n + 1)
    nrows = math.ceil((n + 1) / ncols)
    fig = new_figure(3.0 * ncols, 2.9 * nrows)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n + 1 :]:
        ax.set_visible(False)
    real = result.points_deg["real"]
    real_cov = np.array(result.real_cov_deg2)
    every = np.concatenate(list(result.points_deg.values()))  # (n, 2) pitch, yaw
    low, high = np.percentile(every, 0.5, axis=0), np.percentile(every, 99.5, axis=0)
    centre, half = (low + high) / 2.0, max(0.5, 0.55 * float(np.max(high - low)))  # one square window for all
    palette = colours(n)
    for i, g in enumerate(result.generators):
        ax = axes[i]
        points = result.points_deg[g.generator]
        ax.scatter(real[:, 1], real[:, 0], s=_dot(len(real)), c="0.6", alpha=0.35, linewidths=0, label="real")
        ax.scatter(
            points[:, 1], points[:, 0], s=3, color=palette[i], alpha=0.5, linewidths=0, label=g.generator
        )
        _ellipse(ax, result.real_mean_deg, real_cov, "0.3", "--")
        _ellipse(ax, g.mean_deg, np.array(g.cov_deg2), palette[i], "-")
        interval = "" if g.ci_low is None else f" [{g.ci_low:.2f}, {g.ci_high:.2f}]"
        ax.set_title(f"{g.generator} ({g.forgery_type})\nFD {g.distance:.2f}{interval}", fontsize=8)
        ax.set_xlim(centre[1] - half, centre[1] + half)
        ax.set_ylim(centre[0] - half, centre[0] + half)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        ax.set_xlabel("yaw (deg)", fontsize=7)
        ax.set_ylabel("pitch (deg)", fontsize=7)
    bars = axes[n]
    xs = np.arange(n)
    values = [g.distance for g in result.generators]
    err = error_bars(values, [g.ci_low for g in result.generators], [g.ci_high for g in result.generators])
    bars.bar(xs, values, color=palette, yerr=err, capsize=2)
    bars.set_xticks(xs, [g.generator for g in result.generators], rotation=60, ha="right", fontsize=7)
    bars.set_ylabel("Fréchet distance (deg²)", fontsize=7)
    bars.tick_params(axis="y", labelsize=7)
    bars.set_title("distance to the reals", fontsize=8)
    return save_figure(fig, out_dir, STEM, fmt)


def write_gaze_distance(result: GazeDistanceResult, out_dir: str | Path, fmt: str = "png") -> AnalysisFiles:
    """``gaze-distance.{png,svg}``, ``gaze-distance.csv`` (one row per generator) and ``gaze-distance.json``."""
    out = prepare_out(out_dir)
    rows = [
        (g.generator, g.forgery_type, g.architecture, g.n, result.n_real, g.distance, g.ci_low, g.ci_high, *g.mean_deg,
         g.cov_deg2[0][0], g.cov_deg2[0][1], g.cov_deg2[1][1])
        for g in result.generators
    ]  # fmt: skip
    csv_path = write_csv(
        out / f"{STEM}.csv",
        ("generator", "forgery_type", "architecture", "n", "n_real", "frechet_distance_deg2", "ci_low", "ci_high",
         "mean_pitch_deg", "mean_yaw_deg", "var_pitch_deg2", "cov_pitch_yaw_deg2", "var_yaw_deg2"),
        rows,
    )  # fmt: skip
    figure = plot_gaze_distance(result, out, fmt)
    json_path = write_json(out / f"{STEM}.json", result.to_dict())
    return AnalysisFiles(figure=figure, csv=(csv_path,), json=json_path)
