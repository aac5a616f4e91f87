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

from gazeclip_cli.core.data.cache import CacheDataset, CacheRow, read_cache, read_cached_rgb, to_chw_float
from gazeclip_cli.core.devices import resolve_device
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.corruptions import CORRUPTION_NAMES, CORRUPTIONS, corrupt
from gazeclip_cli.core.evaluate.metrics import (
    EvaluationReport,
    SetPredictions,
    evaluate_sets,
    robustness_from_reports,
)
from gazeclip_cli.core.evaluate.tables import WrittenTables, write_report, write_robustness
from gazeclip_cli.core.model.builder import WeightSources
from gazeclip_cli.core.model.folder import SYNTHETIC_NOTICE, load_model_folder, trained_on_synthetic
from gazeclip_cli.core.model.gazeclip import GazeCLIP
from gazeclip_cli.core.model.info import model_info


@dataclass(frozen=True)
class EvaluateProgress:
    """Reported after every batch of predictions, in every pass over the split."""

    pass_name: str  # "clean", or a corruption's title and severity, e.g. "JPEG compression, severity 2"
    pass_index: int  # 1-based: the clean pass, then each corruption x severity
    passes: int  # 1 + corruptions x severities
    done: int  # faces predicted in this pass
    total: int  # faces in the split


Progress = Callable[[EvaluateProgress], None]


@dataclass
class EfficiencyResult:
    """The paper's Table VII columns for this model on this machine."""

    params_m: float
    gflops_test_path: float
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
    split: str = "test"  # the cache split evaluated
    notice: str | None = None  # set when the model learned from the synthetic demo benchmark


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
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax attribution (N, x) and detection (N, 2) probabilities, in dataset order;
    ``progress(done, total)`` after each batch."""
    model.eval()
    att, det = [], []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    done = 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch["image"], gaze_patches=batch.get("patch"), gaze=batch.get("gaze"))
        att.append(out.attribution_logits.float().softmax(-1).cpu().numpy())
        det.append(out.detection_logits.float().softmax(-1).cpu().numpy())
        done += len(batch["dfa"])
        if progress:
            progress(done, len(dataset))
    width = model.cfg.num_classes
    return (np.concatenate(att) if att else np.zeros((0, width))), (
        np.concatenate(det) if det else np.zeros((0, 2))
    )


def _sets(rows: list[CacheRow], att: np.ndarray, det: np.ndarray) -> dict[str, SetPredictions]:
    """One set per generator (and per real source), in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.generator, []).append(i)
    out = {}
    for name, idx in groups.items():
        ix = np.array(idx)
        videos = [rows[i].video_id for i in idx]
        out[name] = SetPredictions(
            attribution_probs=att[ix],
            detection_probs=det[ix],
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
    """The paper's evaluation of one model folder on one cache split; tables written to ``out_dir``.

    Raises:
        DataError: the split is empty, its classes are not the model's, or ``robustness`` is asked
            for on a split without unseen sets (Fig. 6's metric is open-set ACC over unseen sets).
    """
    dev = resolve_device(device)
    rows = read_cache(cache_dir).split(split)
    if not rows:
        raise DataError(f"{cache_dir}: the cache has no rows in the '{split}' split")
    if robustness and not any(r.dfa < 0 for r in rows):
        raise DataError(
            f"{cache_dir}: the '{split}' split has no unseen sets (DFA label -1), and robustness measures "
            "open-set attribution ACC over unseen sets (Fig. 6); evaluate a split with unseen sets (test)"
        )
    folder = load_model_folder(model_dir, weights, device=dev, with_text=False)
    model = folder.model
    _check_classes(model, rows)
    passes = 1 + (len(corruptions) * len(severities) if robustness else 0)

    def reporter(name: str, index: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(EvaluateProgress(name, index, passes, done, total))

    dataset = CacheDataset(rows, model.cfg.clip.vision.image_size)
    att, det = run_predictions(model, dataset, dev, batch_size, workers, reporter("clean", 1))
    pairing = real_pairing(rows)
    report = evaluate_sets(_sets(rows, att, det), tau=tau, pair_reals=pairing)
    out_dir = Path(out_dir)
    written = write_report(report, out_dir, split=split)
    notice = SYNTHETIC_NOTICE if trained_on_synthetic(folder.meta) else None
    result = EvaluateResult(report=report, written=written, split=split, notice=notice)
    if robustness:
        corrupted = {}
        index = 1
        for name in corruptions:
            for severity in severities:
                index += 1
                a, d = run_predictions(
                    model,
                    CorruptedDataset(dataset, name, severity),
                    dev,
                    batch_size,
                    workers,
                    reporter(f"{CORRUPTIONS[name].title}, severity {severity}", index),
                )
                corrupted[(name, severity)] = evaluate_sets(_sets(rows, a, d), tau=tau, pair_reals=pairing)
        result.robustness = write_robustness(robustness_from_reports(report, corrupted), out_dir, split=split)
    if efficiency:
        result.efficiency = measure_efficiency(model, dev, batch_size)
    return result
