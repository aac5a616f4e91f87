"""Fixtures of the analysis tests: the demo's synthetic benchmark preprocessed, tiny model folders,
and hand-built caches whose gaze angles are chosen so the numbers can be worked out by hand."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from gazeclip_cli.core.data.cache import PREPROCESSED_COLUMNS
from gazeclip_cli.core.data.preprocess import PreprocessSettings, preprocess
from gazeclip_cli.core.demo.synthetic import SyntheticBenchmarkConfig, write_synthetic_benchmark
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.folder import save_model_folder
from gazeclip_cli.core.model.gaze_estimator import SmallGazeCNN

# 9 classes x 4 test images (5 seen classes also 1 train image each), 64 x 64.
BENCH = SyntheticBenchmarkConfig(seed=1, size=64, train_per_class=1, val_per_class=0, test_per_class=4)


def small_estimator(seed: int = 0) -> SmallGazeCNN:
    """A SmallGazeCNN with seeded random weights whose outputs vary from face to face."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        est = SmallGazeCNN()
        with torch.no_grad():
            est.head.weight.mul_(20.0)  # spread the (otherwise near-constant) angles over a few degrees
    return est.eval()


@dataclass(frozen=True)
class SyntheticSetup:
    root: Path
    bench: Path  # the benchmark folder (manifest.csv, images/)
    cache: Path
    weights: Path  # a weights folder holding small-cnn.safetensors (the estimator the cache used)
    model: Path  # tiny-test with LRE and AWS
    model_no_aws: Path  # tiny-test, aws = false
    model_no_lre: Path  # tiny-test, use_lre = false
    model_no_gie: Path  # tiny-test, use_gie = false


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> SyntheticSetup:
    root = tmp_path_factory.mktemp("analyze")
    bench = write_synthetic_benchmark(root / "bench", BENCH)
    estimator = small_estimator()
    weights = root / "weights"
    weights.mkdir()
    save_file(
        {k: v.contiguous() for k, v in estimator.state_dict().items()}, str(weights / "small-cnn.safetensors")
    )
    preprocess(
        bench.manifest, root / "cache", PreprocessSettings(aligned=True), gaze_estimator=estimator, workers=1
    )
    folders = {}
    for name, overrides in (
        ("model", {}),
        ("model-no-aws", {"aws": False}),
        ("model-no-lre", {"use_lre": False}),
        ("model-no-gie", {"use_gie": False}),
    ):
        model = build_gazeclip(
            load_architecture("tiny-test", **overrides), WeightSources(pretrained=False), seed=3
        )
        folders[name] = save_model_folder(model, root / name)
    return SyntheticSetup(
        root=root,
        bench=bench.root,
        cache=root / "cache",
        weights=weights,
        model=folders["model"],
        model_no_aws=folders["model-no-aws"],
        model_no_lre=folders["model-no-lre"],
        model_no_gie=folders["model-no-gie"],
    )


def write_cache(folder: Path, rows: list[dict], seed: int = 0) -> Path:
    """A cache in preprocess's format from row specs (keys: generator, dfd, and optionally gaze=(pitch, yaw),
    forgery_type, path, source, video_id, frame_index, split); small random crops and patches."""
    rng = np.random.default_rng(seed)
    out = []
    for n, spec in enumerate(rows):
        sid = f"r{n:04d}"
        for kind in ("crops", "patches"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(
                folder / kind / f"{sid}.png"
            )
        gaze = spec.get("gaze")
        real = spec["dfd"] == 0
        out.append(
            {
                "path": spec.get("path", f"src/{sid}.png"),
                "split": spec.get("split", "test"),
                "dfd_label": spec["dfd"],
                "dfa_label": -1,
                "generator": spec["generator"],
                "forgery_type": spec.get("forgery_type", "Real" if real else "FS"),
                "architecture": "Real" if real else "GAN",
                "source": spec.get("source", "test"),
                "video_id": spec.get("video_id", ""),
                "frame_index": spec.get("frame_index", ""),
                "sample_id": sid,
                "crop_path": f"crops/{sid}.png",
                "patch_path": f"patches/{sid}.png",
                "gaze_pitch": "" if gaze is None else repr(float(gaze[0])),
                "gaze_yaw": "" if gaze is None else repr(float(gaze[1])),
                "face_box": "0 0 32 32",
                "face_score": "",
            }
        )
    with open(folder / "preprocessed.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PREPROCESSED_COLUMNS))
        writer.writeheader()
        writer.writerows(out)
    return folder
