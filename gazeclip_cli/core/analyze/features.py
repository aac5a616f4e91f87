"""Fig. 10: t-SNE of the visual features I_v_g of N samples per class, one panel per model folder.

The features are the model's own ``features()`` output (I_v_g for GazeCLIP), read as ``evaluate``
reads its inputs (cached gaze angles when the model's estimator made them, else the patches).
Each panel is coloured by generator and marked by forgery type; the silhouette of the features
(cosine) by generator and by forgery type measures the clustering the figure shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

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
from gazeclip_cli.core.data.cache import CacheDataset, CacheRow, CacheSettings, cached_gaze_fits
from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.evaluate.tables import Table
from gazeclip_cli.core.figures import colours, new_figure, save_figure
from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.folder import ModelFolder

STEM = "features"
# Marker per forgery type, as Fig. 10 marks them; colours are per generator.
FORGERY_MARKERS = {"Real": "o", "EFS": "s", "FS": "^", "AM": "D", "FR": "v", "TF": "P"}
MIN_TSNE_SAMPLES = 5


@torch.inference_mode()
def visual_features(
    model: Detector,
    rows: Sequence[CacheRow],
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: ProgressFn | None = None,
    stage: str = "features",
    settings: Sequence[CacheSettings | None] = (),
) -> np.ndarray:
    """The features both experts read (I_v_g for GazeCLIP) of every row, (N, F) float32, in row order.

    The caches' gaze angles are used only when every cache's settings record says this model's
    estimator made them (``evaluate``'s rule); otherwise the model's estimator reads the patches.
    """
    model.eval()
    cached = all(cached_gaze_fits(record, model.gaze_estimator) for record in settings)
    dataset = CacheDataset(list(rows), model.cfg.image_size, cached, model.uses_gaze)
    out, done = [], 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        features, _ = model.features(batch["image"], gaze_patches=batch.get("patch"), gaze=batch.get("gaze"))
        out.append(features.float().cpu().numpy())  # (B, s)
        done += len(batch["index"])
        tell(progress, stage, done, len(rows))
    return np.concatenate(out) if out else np.zeros((0, model.cfg.clip.embed_dim), np.float32)


def silhouette(features: np.ndarray, labels: Sequence[str]) -> float | None:
    """Mean silhouette of ``features`` under ``labels``, cosine distance; None where it is undefined
    (fewer than 2 labels, or as many labels as samples)."""
    from sklearn.metrics import silhouette_score

    names = sorted(set(labels))
    if not 2 <= len(names) <= len(labels) - 1:
        return None
    return float(silhouette_score(features, np.asarray(labels), metric="cosine"))


def tsne(features: np.ndarray, perplexity: float, seed: int) -> tuple[np.ndarray, float, float]:
    """2-D t-SNE (scikit-learn, PCA start, seeded): the embedding, the perplexity used and the final KL divergence.

    The perplexity is capped at (N - 1) / 3, which scikit-learn's neighbour search needs. The
    Barnes-Hut gradient runs on one OpenMP thread: on a busy 2-core machine its thread team spun
    at barriers and took 47-58 s for 400 points against 4.3 s on one thread (docs/DECISIONS.md).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    used = float(min(perplexity, (len(features) - 1) / 3.0))
    model = TSNE(n_components=2, perplexity=used, init="pca", random_state=seed, learning_rate="auto")
    with threadpool_limits(limits=1, user_api="openmp"):
        embedding = model.fit_transform(np.asarray(features, dtype=np.float64))
    return embedding, used, float(model.kl_divergence_)


@dataclass
class FeaturePanel:
    """One model folder's panel."""

    label: str
    features: np.ndarray = field(repr=False)  # (N, s) the t-SNE's input rows, I_v_g
    embedding: np.ndarray = field(repr=False)  # (N, 2)
    perplexity: float
    kl_divergence: float
    silhouette_generator: float | None
    silhouette_forgery_type: float | None


@dataclass
class FeatureMapResult:
    """Fig. 10's samples (the same for every panel) and panels."""

    samples: list[int]  # row indices, grouped by generator
    panels: list[FeaturePanel]
    per_class: int | None
    seed: int
    perplexity: float  # asked for
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, rows: Sequence[CacheRow]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for i in self.samples:
            counts[rows[i].generator] = counts.get(rows[i].generator, 0) + 1
        return {
            "analysis": "features",
            "figure": "Fig. 10",
            "inputs": self.inputs,
            "per_class": self.per_class,
            "seed": self.seed,
            "perplexity_asked": self.perplexity,
            "samples_per_generator": counts,
            "panels": [
                {
                    "model": p.label,
                    "n": len(p.features),
                    "feature_dim": int(p.features.shape[1]),
                    "perplexity": p.perplexity,
                    "kl_divergence": p.kl_divergence,
                    "silhouette_generator": p.silhouette_generator,
                    "silhouette_forgery_type": p.silhouette_forgery_type,
                }
                for p in self.panels
            ],
        }

    def table(self) -> Table:
        return Table(
            key="features",
            title="t-SNE of the visual features I_v_g, Fig. 10",
            columns=("Model", "samples", "silhouette (generator)", "silhouette (forgery type)", "KL"),
            rows=tuple(
                (p.label, len(p.features), p.silhouette_generator, p.silhouette_forgery_type, p.kl_divergence)
                for p in self.panels
            ),
            notes=(
                "Silhouette of the features (cosine distance), -1..1: higher means tighter, better separated groups.",
            ),
        )


def feature_map(
    folders: Sequence[tuple[ModelFolder, str]],
    rows: Sequence[CacheRow],
    *,
    per_class: int | None = 500,
    perplexity: float = 30.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    settings: Sequence[CacheSettings | None] = (),
    where: str = "cache",
    progress: ProgressFn | None = None,
) -> FeatureMapResult:
    """I_v_g of ``per_class`` seeded samples of every generator, for each model, and their t-SNE.

    ``settings``: the settings records of the caches the rows come from (see :func:`visual_features`).

    Raises:
        DataError: a generator has fewer rows than ``per_class``, or fewer than 5 samples in all.
        ConfigError: ``perplexity`` not positive.
    """
    if perplexity <= 0:
        raise ConfigError(f"--perplexity {perplexity}: must be positive")
    chosen = draw_per_group(group_rows(rows), per_class, seed, where=where, what="rows", flag="--per-class")
    samples = [i for idx in chosen.values() for i in idx]
    if len(samples) < MIN_TSNE_SAMPLES:
        raise DataError(f"{where}: {len(samples)} samples; t-SNE needs at least {MIN_TSNE_SAMPLES}")
    picked = [rows[i] for i in samples]
    generators = [r.generator for r in picked]
    types = [r.forgery_type or "?" for r in picked]
    panels = []
    for k, (folder, label) in enumerate(folders):
        feats = visual_features(
            folder.model, picked, device, batch_size, progress, stage=f"features ({label})", settings=settings
        )
        tell(progress, "t-SNE", k, len(folders))
        embedding, used, kl = tsne(feats, perplexity, seed)
        tell(progress, "t-SNE", k + 1, len(folders))
        panels.append(
            FeaturePanel(
                label=label,
                features=feats,
                embedding=embedding,
                perplexity=used,
                kl_divergence=kl,
                silhouette_generator=silhouette(feats, generators),
                silhouette_forgery_type=silhouette(feats, types),
            )
        )
    return FeatureMapResult(
        samples=samples, panels=panels, per_class=per_class, seed=seed, perplexity=perplexity
    )


def plot_features(
    result: FeatureMapResult, rows: Sequence[CacheRow], out_dir: Path, fmt: str = "png"
) -> Path:
    """One t-SNE panel per model; colour = generator, marker = forgery type; one shared legend."""
    from matplotlib.lines import Line2D

    picked = [rows[i] for i in result.samples]
    gens = list(dict.fromkeys(r.generator for r in picked))
    palette = dict(zip(gens, colours(len(gens)), strict=True))
    types = list(dict.fromkeys(r.forgery_type or "?" for r in picked))
    n = len(result.panels)
    fig = new_figure(4.2 * n + 1.8, 4.2)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, panel in zip(axes, result.panels, strict=True):
        for t in types:
            for g in gens:
                idx = [j for j, r in enumerate(picked) if r.generator == g and (r.forgery_type or "?") == t]
                if idx:
                    ax.scatter(panel.embedding[idx, 0], panel.embedding[idx, 1], s=10, color=palette[g],
                               marker=FORGERY_MARKERS.get(t, "X"), alpha=0.75, linewidths=0)  # fmt: skip
        sil = panel.silhouette_generator
        ax.set_title(
            f"{panel.label}" + ("" if sil is None else f"\nsilhouette (generator) {sil:.2f}"), fontsize=8
        )
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker="o", ls="", color=palette[g], label=g) for g in gens]
    handles += [
        Line2D([], [], marker=FORGERY_MARKERS.get(t, "X"), ls="", color="0.4", label=t) for t in types
    ]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False)
    return save_figure(fig, out_dir, STEM, fmt)


def write_features(
    result: FeatureMapResult, rows: Sequence[CacheRow], out_dir: str | Path, fmt: str = "png"
) -> AnalysisFiles:
    """``features.{png,svg}``, ``features.csv`` (the 2-D points), ``features-summary.csv``, ``features.json``
    and ``features.npz`` (the t-SNE input rows: ``features_<k>`` per panel, ``sample_id``)."""
    out = prepare_out(out_dir)
    picked = [rows[i] for i in result.samples]
    points = write_csv(
        out / f"{STEM}.csv",
        ("model", "sample_id", "generator", "forgery_type", "architecture", "split", "x", "y"),
        [
            (p.label, r.sample_id, r.generator, r.forgery_type, r.architecture, r.split, float(x), float(y))
            for p in result.panels
            for r, (x, y) in zip(picked, p.embedding, strict=True)
        ],
    )
    summary = write_csv(
        out / f"{STEM}-summary.csv",
        ("model", "n", "feature_dim", "perplexity", "kl_divergence", "silhouette_generator", "silhouette_forgery_type"),
        [
            (p.label, len(p.features), p.features.shape[1], p.perplexity, p.kl_divergence, p.silhouette_generator,
             p.silhouette_forgery_type)
            for p in result.panels
        ],
    )  # fmt: skip
    npz = out / f"{STEM}.npz"
    try:
        np.savez_compressed(
            npz,
            sample_id=np.array([r.sample_id for r in picked]),
            models=np.array([p.label for p in result.panels]),
            **{f"features_{k}": p.features for k, p in enumerate(result.panels)},
        )
    except OSError as exc:
        raise DataError(f"{npz}: cannot write ({exc.strerror}); check the folder") from None
    figure = plot_features(result, rows, out, fmt)
    json_path = write_json(out / f"{STEM}.json", result.to_dict(rows))
    return AnalysisFiles(figure=figure, csv=(points, summary), json=json_path, extra=(npz,))
