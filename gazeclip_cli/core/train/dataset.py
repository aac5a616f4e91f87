"""The preprocessing cache as a torch Dataset: face crop, gaze (cached angles or patch), labels.

Reads ``preprocessed.csv`` in a preprocessing output folder (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gazeclip_cli.core.data.faces import resize_crop
from gazeclip_cli.core.data.preprocess import PREPROCESSED_FILE as CACHE_INDEX
from gazeclip_cli.core.errors import DataError

REQUIRED = ("crop_path", "patch_path", "split", "dfd_label", "dfa_label", "generator")


@dataclass(frozen=True)
class CacheRow:
    """One preprocessed face."""

    crop: Path
    patch: Path
    split: str
    dfd: int
    dfa: int
    generator: str
    forgery_type: str
    architecture: str
    video_id: str
    gaze: tuple[float, float] | None  # cached (pitch, yaw), or None
    prompt_name: str = ""  # the generator as the level-4 prompt names it (caches before it: the generator)


def read_cache(folder: str | Path) -> list[CacheRow]:
    """All rows of a preprocessing cache, in file order."""
    folder = Path(folder)
    index = folder / CACHE_INDEX
    if not index.is_file():
        raise DataError(
            f"{folder}: no {CACHE_INDEX} here; run `gazeclip preprocess` with --out {folder} first"
        )
    rows = []
    with open(index, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{index}: missing columns {', '.join(missing)}; re-run `gazeclip preprocess`")
        for n, r in enumerate(reader, start=2):
            try:
                pitch, yaw = r.get("gaze_pitch", ""), r.get("gaze_yaw", "")
                rows.append(
                    CacheRow(
                        crop=folder / r["crop_path"],
                        patch=folder / r["patch_path"],
                        split=r["split"],
                        dfd=int(r["dfd_label"]),
                        dfa=int(r["dfa_label"]),
                        generator=r["generator"],
                        forgery_type=r.get("forgery_type", ""),
                        architecture=r.get("architecture", ""),
                        video_id=r.get("video_id", ""),
                        prompt_name=r.get("prompt_name") or r["generator"],
                        gaze=(float(pitch), float(yaw))
                        if pitch not in ("", None) and yaw not in ("", None)
                        else None,
                    )
                )
            except (KeyError, ValueError) as exc:
                raise DataError(f"{index}: line {n}: malformed row ({exc})") from None
    return rows


def classes_of(rows: list[CacheRow]) -> list[dict[str, str]]:
    """Attribution classes from the training rows: DFA labels 0..x-1, each with its hierarchy."""
    by_label: dict[int, CacheRow] = {}
    for r in rows:
        if r.dfa < 0:
            continue
        seen = by_label.setdefault(r.dfa, r)
        if seen.generator != r.generator:
            raise DataError(f"DFA label {r.dfa} is used by both '{seen.generator}' and '{r.generator}'")
    labels = sorted(by_label)
    if labels != list(range(len(labels))) or len(labels) < 2:
        raise DataError(f"training DFA labels must be 0..x-1 with x >= 2, found {labels}")
    out = []
    for label in labels:
        r = by_label[label]
        real = r.dfd == 0
        out.append(
            {
                "name": r.generator,
                "forgery_type": "Real" if real else (r.forgery_type or "EFS"),
                "architecture": "Real" if real else (r.architecture or "GAN"),
                "prompt_name": r.prompt_name if r.prompt_name != r.generator else "",
            }
        )
    return out


def read_cached_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """(S, S, 3) writable uint8 RGB from a cached PNG, resized to ``size`` if given.

    The one reader of cached crops and patches (training, evaluation, robustness), resizing as
    ``attribute`` and ``scan`` do (:func:`~gazeclip_cli.core.data.faces.resize_crop`).
    """
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy, for torch
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cached image unreadable ({exc}); re-run `gazeclip preprocess`") from None
    return arr if size is None else resize_crop(arr, size)


def to_chw_float(arr: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)


def load_rgb(path: Path, size: int | None = None) -> torch.Tensor:
    """(3, S, S) float in [0, 1] from a cached PNG, resized to ``size`` if given."""
    return to_chw_float(read_cached_rgb(path, size))


class CacheDataset(Dataset):
    """Items: ``image`` (3, H, H), ``gaze`` (2,) or ``patch`` (3, 224, 224), ``dfa``, ``dfd``, ``index``.

    Args:
        rows: cache rows (one split).
        image_size: H of the model.
        use_cached_gaze: return cached angles when every row has them (else patches).
    """

    def __init__(self, rows: list[CacheRow], image_size: int, use_cached_gaze: bool = True) -> None:
        self.rows = rows
        self.image_size = image_size
        self.cached = use_cached_gaze and bool(rows) and all(r.gaze is not None for r in rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = self.rows[i]
        item = {
            "image": load_rgb(r.crop, self.image_size),
            "dfa": torch.tensor(r.dfa),
            "dfd": torch.tensor(r.dfd),
            "index": torch.tensor(i),
        }
        if self.cached:
            item["gaze"] = torch.tensor(r.gaze, dtype=torch.float32)
        else:
            item["patch"] = load_rgb(r.patch, 224)
        return item
