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
from torch.utils.data import Dataset

from gazeclip_cli.core.data.cache import (
    PREPROCESSED_FILE,
    CacheDataset,
    CacheSettings,
    check_cached_gaze,
    preparation_differences,
    read_cache,
    read_cached_rgb,
    settings_of_model,
    to_chw_float,
)
from gazeclip_cli.core.devices import resolve_device
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.corruptions import CORRUPTION_NAMES, CORRUPTIONS, corrupt
from gazeclip_cli.core.evaluate.metrics import EvaluationReport, robustness_from_reports
from gazeclip_cli.core.evaluate.predictions import check_classes, evaluate_rows, predict_dataset
from gazeclip_cli.core.evaluate.result_folder import write_efficiency, write_provenance
from gazeclip_cli.core.evaluate.tables import WrittenTables, write_report, write_robustness
from gazeclip_cli.core.model.builder import WeightSources
from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.folder import (
    SYNTHETIC_NOTICE,
    WEIGHTS_FILE,
    load_model_folder,
    model_folder_sha256,
    trained_on_synthetic,
)
from gazeclip_cli.core.model.info import model_info
from gazeclip_cli.core.weights.checksums import cached_sha256
from gazeclip_cli.core.weights.locate import sha256_file


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
    attribution_probs: np.ndarray  # (N, x) softmax of the split's rows, in cache order
    detection_probs: np.ndarray  # (N, 2)
    preprocessing_note: str | None = None  # set when the cache's preparation could not be checked
    robustness: WrittenTables | None = None
    efficiency: EfficiencyResult | None = None
    split: str = "test"  # the cache split evaluated
    notice: str | None = None  # set when the model learned from the synthetic demo benchmark


def check_preparation(
    trained: CacheSettings | None, cache: CacheSettings | None, model_dir: str | Path, cache_dir: str | Path
) -> str | None:
    """Refuse a cache prepared otherwise than the model's training cache; a note when either is unrecorded.

    Raises:
        DataError: both are recorded and a setting that decides the pixels differs.
    """
    if trained is None or cache is None:
        which = "the model folder" if trained is None else f"the cache {cache_dir}"
        return (
            f"{which} records no preprocessing settings (written by an older gazeclip): the evaluated faces are "
            "assumed to be prepared as the training faces were"
        )
    differences = preparation_differences(cache.settings, trained.settings)
    if differences:
        listed = "; ".join(
            f"{name} {here!r} here, {there!r} in training" for name, here, there in differences
        )
        raise DataError(
            f"{cache_dir}: prepared otherwise than the cache {model_dir} was trained on ({listed}); "
            "preprocess the test data with the model's settings (its meta.json, preprocessing.cache.settings)"
        )
    return None


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
        item = {
            "image": self._load(r.crop, self.base.image_size, i),
            "dfa": torch.tensor(r.dfa),
            "dfd": torch.tensor(r.dfd),
            "index": torch.tensor(i),
        }
        if self.base.with_gaze:
            item["patch"] = self._load(r.patch, 224, i)
        return item


def measure_efficiency(
    model: Detector, device: torch.device, batch_size: int = 32, repeats: int = 3
) -> EfficiencyResult:
    """Parameters, test-path FLOPs and seconds per image at batch 1 and batched (best of ``repeats``)."""
    info = model_info(model)
    size = model.cfg.image_size

    def per_image(b: int) -> float:
        images = torch.rand(b, 3, size, size, device=device)
        patches = torch.rand(b, 3, 224, 224, device=device) if model.uses_gaze else None
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
    """The paper's evaluation of one model folder on one cache split; tables written to ``out_dir``.

    Raises:
        DataError: the split is empty, its classes are not the model's, its faces were prepared
            otherwise than the training faces, or ``robustness`` is asked for on a split without
            unseen sets (Fig. 6's metric is open-set ACC over unseen sets).
    """
    dev = resolve_device(device)
    cache = read_cache(cache_dir)
    rows = cache.split(split)
    if not rows:
        raise DataError(f"{cache_dir}: the cache has no rows in the '{split}' split")
    if robustness and not any(r.dfa < 0 for r in rows):
        raise DataError(
            f"{cache_dir}: the '{split}' split has no unseen sets (DFA label -1), and robustness measures "
            "open-set attribution ACC over unseen sets (Fig. 6); evaluate a split with unseen sets (test)"
        )
    # LoRA kept unmerged: the efficiency table counts the network as trained (the paper's Table VII).
    folder = load_model_folder(model_dir, weights, device=dev, with_text=False, merge_lora_adapters=False)
    model = folder.model
    check_classes(folder.class_names, rows, split)
    note = check_preparation(
        settings_of_model(folder.meta, folder.path), cache.settings, model_dir, cache_dir
    )
    # Cached angles only from the estimator this model runs: another's are refused, with the fix.
    # A fine-tuned estimator is never stood in for by cached angles (Table XIII "w/ finetuned GE").
    dataset = CacheDataset(rows, model.cfg.image_size, model.cfg.accepts_cached_gaze, model.uses_gaze)
    check_cached_gaze(cache, model.gaze_estimator, dataset)
    passes = 1 + (len(corruptions) * len(severities) if robustness else 0)

    def reporter(name: str, index: int) -> Callable[[str, dict[str, Any]], None] | None:
        """predict_dataset's progress as this pass's :class:`EvaluateProgress`."""
        if progress is None:
            return None
        return lambda _kind, info: progress(
            EvaluateProgress(name, index, passes, info["done"], info["total"])
        )

    att, det = predict_dataset(model, dataset, dev, batch_size, workers, progress=reporter("clean", 1))
    report = evaluate_rows(rows, att, det, tau)
    out_dir = Path(out_dir)
    written = write_report(report, out_dir, split=split)
    notice = SYNTHETIC_NOTICE if trained_on_synthetic(folder.meta) else None
    result = EvaluateResult(report, written, att, det, preprocessing_note=note, split=split, notice=notice)
    if robustness:
        corrupted = {}
        index = 1
        for name in corruptions:
            for severity in severities:
                index += 1
                a, d = predict_dataset(
                    model,
                    CorruptedDataset(dataset, name, severity),
                    dev,
                    batch_size,
                    workers,
                    progress=reporter(f"{CORRUPTIONS[name].title}, severity {severity}", index),
                )
                corrupted[(name, severity)] = evaluate_rows(rows, a, d, tau)
        # Fig. 6 plots attribution ACC; a detection-only model (Fig. 9) gets its detection ACC.
        metric = "unseen.open_set_acc" if "attribution" in model.experts else "unseen.detection_acc"
        result.robustness = write_robustness(
            robustness_from_reports(report, corrupted, metric), out_dir, split=split
        )
    if efficiency:
        result.efficiency = measure_efficiency(model, dev, batch_size)
        write_efficiency(out_dir, result.efficiency.as_dict())
    weights_sha = cached_sha256(folder.path / WEIGHTS_FILE)
    write_provenance(
        out_dir,
        cfg=model.cfg,
        model_dir=folder.path,
        model_meta=folder.meta,
        model_sha256=model_folder_sha256(folder.path, folder.meta, weights_sha),
        weights_sha256=weights_sha,
        cache_dir=Path(cache_dir),
        cache_index_sha256=sha256_file(Path(cache_dir) / PREPROCESSED_FILE),
        split=split,
        set_sizes={s.name: s.num_samples for s in report.sets},
        tau=tau,
        device=str(dev),
        robustness={"corruptions": list(corruptions), "severities": list(severities)} if robustness else None,
    )
    return result
