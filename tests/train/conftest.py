"""A tiny preprocessing cache in the documented format, made in the test."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gazeclip_cli.core.data.cache import PREPROCESSED_COLUMNS

COLUMNS = list(PREPROCESSED_COLUMNS)  # the cache format preprocess writes
CLASSES = [("Real", 0, "Real", "Real"), ("GenA", 1, "EFS", "GAN"), ("GenB", 1, "FS", "Diffusion")]


UNSEEN = [("GenU", 1, "FR", "Flow"), ("RealU", 0, "Real", "Real")]


def make_cache(
    folder: Path,
    per_class: dict[str, int],
    seed: int = 0,
    with_gaze: bool = True,
    unseen_test: int = 0,
    unseen_val: int = 0,
) -> Path:
    """Crops whose class is visible (a per-class tint and stripe period) so a tiny model can learn.

    ``unseen_test`` (``unseen_val``) adds that many test (val) rows for an unseen generator and
    an unseen real set (DFA -1).
    """
    rng = np.random.default_rng(seed)
    (folder / "crops").mkdir(parents=True, exist_ok=True)
    (folder / "patches").mkdir(exist_ok=True)
    rows = []
    n = 0
    plan = [
        (split, label, spec, count)
        for split, count in per_class.items()
        for label, spec in enumerate(CLASSES)
    ]
    plan += [("test", -1, spec, unseen_test) for spec in UNSEEN if unseen_test]
    plan += [("val", -1, spec, unseen_val) for spec in UNSEEN if unseen_val]
    for split, label, (name, dfd, ftype, arch), count in plan:
        if True:
            for _ in range(count):
                base = rng.integers(60, 200, size=(64, 64, 3)).astype(np.float32)
                base[..., label % 3] += 50
                base[:, :: 2 + 2 * (label % 5)] -= 40
                crop = np.clip(base, 0, 255).astype(np.uint8)
                patch = rng.integers(0, 255, size=(224, 224, 3), dtype=np.uint8)
                cid = f"s{n:04d}"
                Image.fromarray(crop).save(folder / "crops" / f"{cid}.png")
                Image.fromarray(patch).save(folder / "patches" / f"{cid}.png")
                rows.append(
                    {
                        "path": f"src/{cid}.png",
                        "split": split,
                        "dfd_label": dfd,
                        "dfa_label": label,
                        "generator": name,
                        "forgery_type": ftype,
                        "architecture": arch,
                        "source": "test",
                        "video_id": "",
                        "frame_index": "",
                        "sample_id": cid,
                        "crop_path": f"crops/{cid}.png",
                        "patch_path": f"patches/{cid}.png",
                        "gaze_pitch": f"{rng.normal(0, 0.2):.6f}" if with_gaze else "",
                        "gaze_yaw": f"{rng.normal(0, 0.2):.6f}" if with_gaze else "",
                        "face_box": "0 0 64 64",
                        "face_score": "1.0",
                    }
                )
                n += 1
    with open(folder / "preprocessed.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture
def tiny_cache(tmp_path):
    return make_cache(tmp_path / "cache", {"train": 4, "val": 2})
