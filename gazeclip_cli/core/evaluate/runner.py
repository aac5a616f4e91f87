"""`gazeclip evaluate`: run a model folder over the test split of a cache and compute the paper's tables.

Predictions stream in batches (only the probabilities are kept, N x (x + 2) floats), so
memory is bounded by the batch whatever the test-set size. Robustness applies each
corruption to both inputs of a face, the 256 crop and the normalised gaze patch, and
re-estimates the gaze from the corrupted patch with the model's frozen estimator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.corruptions import CORRUPTION_NAMES, corrupt
from gazeclip_cli.core.evaluate.metrics import (
    EvaluationReport,
    SetPredictions,
    evaluate_sets,
    robustness_from_reports,
)
from gazeclip_cli.core.evaluate.tables import WrittenTables, write_report, write_robustness
from gazeclip_cli.core.model.builder import WeightSources
from gazeclip_cli.core.model.folder import load_model_folder
from gazeclip_cli.core.model.gazeclip import GazeCLIP
from gazeclip_cli.core.model.info import model_info
from gazeclip_cli.core.train.dataset import CacheDataset, CacheRow, read_cache, read_cached_rgb, to_chw_float
from gazeclip_cli.core.train.trainer import pick_device

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class EfficiencyResult:
    """The paper's Table VII columns for this model on this machine."""

    params_m: float
    gflops_test_path: float  # a multiply-add counted as 2 FLOPs
    gmacs_test_path: float  # the same count in multiply-adds (the convention Table VII most likely uses)
    seconds_per_image_batch1: float
    seconds_per_image_batched: float
    batch_size: int
    device: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class EvaluateResult:
    report: EvaluationReport
    written: WrittenTables
    robustness: WrittenTables | None = None
    efficiency: EfficiencyResult | None = None


class CorruptedDataset(Dataset):
    """A cache split with one corruption applied to crop and patch (gaze re-estimated from the patch)."""

    def __init__(self, base: CacheDataset, name: str, severity: int, seed: int = 0) -> None:
        self.base, self.name, self.severity, self.seed = base, name, severity, seed

    def __len__(self) -> int:
        return len(self.base)

    def _load(self, path: Path, size: int, i: int) -> torch.Tensor:
        clean = read_cached_rgb(path, size)  # as CacheDataset reads it
        return to_chw_float(corrupt(clean, self.name, self.severity, seed=self.seed + i))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = self.base.rows[i]
        return {
            "image": self._load(r.crop, self.base.image_size, i),
            "patch": self._load(r.patch, 224, i),
            "dfa": torch.tensor(r.dfa),
            "dfd": torch.tensor(r.dfd),
            "index": torch.tensor(i),
        }


@torch.no_grad()
def run_predictions(
    model: GazeCLIP,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    workers: int,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax attribution (N, x) and detection (N, 2) probabilities, in dataset order.

    An expert the model does not have (``experts``, the paper's Fig. 9) gives None.
    """
    model.eval()
    has_att, has_det = "attribution" in model.cfg.experts, "detection" in model.cfg.experts
    att, det = [], []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    done = 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch["image"], gaze_patches=batch.get("patch"), gaze=batch.get("gaze"))
        if has_att:
            att.append(out.attribution_logits.float().softmax(-1).cpu().numpy())
        if has_det:
            det.append(out.detection_logits.float().softmax(-1).cpu().numpy())
        done += len(batch["dfa"])
        if progress:
            progress("predict", {"done": done, "total": len(dataset)})
    width = model.cfg.num_classes
    return (
        (np.concatenate(att) if att else np.zeros((0, width))) if has_att else None,
        (np.concatenate(det) if det else np.zeros((0, 2))) if has_det else None,
    )


def _sets(rows: list[CacheRow], att: np.ndarray | None, det: np.ndarray | None) -> dict[str, SetPredictions]:
    """One set per generator (and per real source), in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.generator, []).append(i)
    out = {}
    for name, idx in groups.items():
        ix = np.array(idx)
        videos = [rows[i].video_id for i in idx]
        out[name] = SetPredictions(
            attribution_probs=None if att is None else att[ix],
            detection_probs=None if det is None else det[ix],
            dfa_labels=np.array([rows[i].dfa for i in idx]),
            dfd_labels=np.array([rows[i].dfd for i in idx]),
            video_ids=np.array(videos) if any(videos) else None,
        )
    return out


def real_pairing(rows: list[CacheRow]) -> dict[str, str]:
    """Pair all-fake seen sets with the seen real set, all-fake unseen sets with the unseen real set."""
    seen_real = next((r.generator for r in rows if r.dfd == 0 and r.dfa >= 0), None)
    unseen_real = next((r.generator for r in rows if r.dfd == 0 and r.dfa < 0), None)
    pairing = {}
    for r in rows:
        if r.dfd == 1 and r.generator not in pairing:
            partner = unseen_real if r.dfa < 0 else seen_real
            partner = partner or seen_real or unseen_real
            if partner:
                pairing[r.generator] = partner
    return pairing


def _check_classes(model: GazeCLIP, rows: list[CacheRow]) -> None:
    names = [c.name for c in model.cfg.classes]
    for r in rows:
        if r.dfa >= 0 and (r.dfa >= len(names) or names[r.dfa] != r.generator):
            expected = names[r.dfa] if r.dfa < len(names) else "nothing"
            raise DataError(
                f"test row '{r.generator}' has DFA label {r.dfa}, which this model calls {expected!r}; "
                "evaluate with the protocol the model was trained on"
            )


def measure_efficiency(
    model: GazeCLIP, device: torch.device, batch_size: int = 32, repeats: int = 3
) -> EfficiencyResult:
    """Parameters, test-path FLOPs and seconds per image at batch 1 and batched (best of ``repeats``)."""
    info = model_info(model)
    size = model.cfg.clip.vision.image_size

    def per_image(b: int) -> float:
        images = torch.rand(b, 3, size, size, device=device)
        patches = torch.rand(b, 3, 224, 224, device=device)
        best = float("inf")
        with torch.inference_mode():
            model(images, patches)
            for _ in range(repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(images, patches)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
        return best / b

    model.eval()
    return EfficiencyResult(
        params_m=info.total / 1e6,
        gflops_test_path=info.test_path_flops / 1e9,
        gmacs_test_path=info.test_path_flops / 2 / 1e9,
        seconds_per_image_batch1=per_image(1),
        seconds_per_image_batched=per_image(batch_size),
        batch_size=batch_size,
        device=str(device),
    )


def evaluate_model(
    model_dir: str | Path,
    cache_dir: str | Path,
    out_dir: str | Path,
    *,
    tau: float = 0.9,
    split: str = "test",
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
    robustness: bool = False,
    corruptions: tuple[str, ...] = CORRUPTION_NAMES,
    severities: tuple[int, ...] = (1, 2, 3, 4, 5),
    efficiency: bool = False,
    weights: WeightSources | None = None,
    progress: Progress | None = None,
) -> EvaluateResult:
    """The paper's evaluation of one model folder on one cache split; tables written to ``out_dir``."""
    dev = pick_device(device)
    folder = load_model_folder(model_dir, weights, device=dev, with_text=False)
    model = folder.model
    rows = [r for r in read_cache(cache_dir) if r.split == split]
    if not rows:
        raise DataError(f"{cache_dir}: the cache has no rows in the '{split}' split")
    _check_classes(model, rows)
    dataset = CacheDataset(rows, model.cfg.clip.vision.image_size, model.cfg.accepts_cached_gaze)
    att, det = run_predictions(model, dataset, dev, batch_size, workers, progress)
    pairing = real_pairing(rows)
    report = evaluate_sets(_sets(rows, att, det), tau=tau, pair_reals=pairing)
    out_dir = Path(out_dir)
    written = write_report(report, out_dir)
    result = EvaluateResult(report=report, written=written)
    if robustness:
        corrupted = {}
        for name in corruptions:
            for severity in severities:
                if progress:
                    progress("corruption", {"name": name, "severity": severity})
                a, d = run_predictions(
                    model, CorruptedDataset(dataset, name, severity), dev, batch_size, workers
                )
                corrupted[(name, severity)] = evaluate_sets(_sets(rows, a, d), tau=tau, pair_reals=pairing)
        # Fig. 6 plots attribution ACC; a detection-only model (Fig. 9) gets its detection ACC.
        metric = "unseen.open_set_acc" if "attribution" in model.cfg.experts else "unseen.detection_acc"
        result.robustness = write_robustness(robustness_from_reports(report, corrupted, metric), out_dir)
    if efficiency:
        result.efficiency = measure_efficiency(model, dev, batch_size)
    return result
