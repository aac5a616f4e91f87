"""The preprocessing cache contract: its files and columns, its settings record, the writer's helpers, the reader.

``preprocess`` writes a cache (the run itself is scheduled in ``core/data/preprocess.py``);
``train``, ``evaluate`` and the analyses read it here. docs/DATA.md describes every file.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gazeclip_cli.core.config_io import from_dict, to_dict
from gazeclip_cli.core.data.faces import CROP_MARGIN, CROP_SIZE, FACE_POLICIES, resize_crop
from gazeclip_cli.core.data.frame_sampling import DEFAULT_FRAMES_PER_VIDEO
from gazeclip_cli.core.data.gaze_normalization import CameraIntrinsics, NormalisationSettings
from gazeclip_cli.core.data.images import MAX_PIXELS
from gazeclip_cli.core.data.manifest import MANIFEST_COLUMNS
from gazeclip_cli.core.errors import ConfigError, DataError, GazeclipError, ModelFolderError
from gazeclip_cli.core.model.gaze_estimator import GAZE_ESTIMATORS
from gazeclip_cli.core.weights.locate import sha256_file

CACHE_VERSION = 1  # enters every sample id: a new version recomputes every sample
PREPROCESSED_FILE = "preprocessed.csv"
FAILURES_FILE = "failures.csv"
SETTINGS_FILE = "preprocessing.json"
SETTINGS_FORMAT = "gazeclip-preprocessing/1"
STATE_DIR = ".state"
PREPROCESSED_COLUMNS: tuple[str, ...] = (
    *MANIFEST_COLUMNS,
    "sample_id",
    "crop_path",
    "patch_path",
    "gaze_pitch",
    "gaze_yaw",
    "face_box",
    "face_score",
)
FAILURE_COLUMNS = ("path", "reason")
# The bookkeeping in .state/: every sample ever made here, samples known to give none, content hashes.
SAMPLE_COLUMNS = (
    "sample_id",
    "crop_path",
    "patch_path",
    "gaze_pitch",
    "gaze_yaw",
    "gaze_estimator",
    "face_box",
    "face_score",
)
FAILED_COLUMNS = ("sample_id", "kind", "reason")
HASH_COLUMNS = ("path", "size", "mtime_ns", "sha256")
REQUIRED = ("crop_path", "patch_path", "split", "dfd_label", "dfa_label", "generator")


# --- the settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that decides what ``preprocess`` produces; all but video sampling enter the cache key."""

    aligned: bool = False  # inputs are aligned face crops: no detection, template landmarks
    face_policy: str = "largest"  # largest, score or all (see gazeclip_cli.core.data.faces)
    crop_size: int = CROP_SIZE  # side of the network's input crop
    crop_margin: float = CROP_MARGIN  # crop side = longer face-box side * (1 + 2 * margin)
    patch: NormalisationSettings = NormalisationSettings()  # the ETH-XGaze virtual camera
    camera: CameraIntrinsics | None = None  # None: focal = image width, centre = image centre
    frames_per_video: int | None = None  # N frames evenly per video (default 10 when no stride)
    frame_stride: int | None = None  # or every K-th frame
    min_face_size: int = 20  # MTCNN's smallest face, pixels
    aligned_template: tuple[tuple[float, float], ...] | None = (
        None  # 5 landmarks; None = faces.aligned_template
    )
    template_size: int = CROP_SIZE  # side of the square the template is given for
    max_pixels: int = MAX_PIXELS  # larger images are refused before decoding

    def __post_init__(self) -> None:
        if self.face_policy not in FACE_POLICIES:
            raise ConfigError(f"unknown face policy '{self.face_policy}' (known: {', '.join(FACE_POLICIES)})")
        if self.frames_per_video is not None and self.frame_stride is not None:
            raise ConfigError("give either frames per video or a frame stride, not both")
        if self.frames_per_video is not None and self.frames_per_video < 1:
            raise ConfigError(f"frames per video must be at least 1, got {self.frames_per_video}")
        if self.frame_stride is not None and self.frame_stride < 1:
            raise ConfigError(f"frame stride must be at least 1, got {self.frame_stride}")
        if self.crop_size < 8 or self.patch.size < 8:
            raise ConfigError("crop and patch sizes must be at least 8 pixels")
        if not 0 <= self.crop_margin <= 2:
            raise ConfigError(f"crop margin must be between 0 and 2, got {self.crop_margin}")
        if self.aligned_template is not None and np.asarray(self.aligned_template).shape != (5, 2):
            raise ConfigError("an aligned template needs 5 (x, y) landmarks")

    def video_sampling(self) -> dict[str, int | None]:
        """Keyword arguments for :func:`~gazeclip_cli.core.data.images.frame_indices`."""
        if self.frame_stride is not None:
            return {"frames_per_video": None, "frame_stride": self.frame_stride}
        return {"frames_per_video": self.frames_per_video or DEFAULT_FRAMES_PER_VIDEO, "frame_stride": None}

    def cache_key(self) -> str:
        """Hash of the settings that change a sample's crop or patch."""
        key: dict[str, Any] = {
            "version": CACHE_VERSION,
            "aligned": self.aligned,
            "crop_size": self.crop_size,
            "crop_margin": self.crop_margin,
            "patch": dataclasses.asdict(self.patch),
            "camera": None if self.camera is None else dataclasses.asdict(self.camera),
            "max_pixels": self.max_pixels,  # decides which images are refused, a cached failure
        }
        if self.aligned:
            key["template"] = (
                None if self.aligned_template is None else [list(p) for p in self.aligned_template]
            )
            key["template_size"] = self.template_size
        else:
            key["face_policy"] = self.face_policy
            key["min_face_size"] = self.min_face_size
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def preparation(self) -> dict[str, Any]:
        """The settings that decide the pixels of a face's crop and patch: what a model must see again.

        Face policy and video sampling choose *which* faces and frames are prepared, not how,
        and the pixel limit only refuses files; they are left out.
        """
        fields = ["aligned", "crop_size", "patch", "camera"]
        fields += ["aligned_template", "template_size"] if self.aligned else ["crop_margin", "min_face_size"]
        record = self.record()
        return {name: record[name] for name in fields}

    def record(self) -> dict[str, Any]:
        """Every setting as JSON-able values; :meth:`from_record` reads it back to equal settings."""
        return to_dict(self)

    @classmethod
    def from_record(cls, data: Mapping[str, Any], where: str) -> PreprocessSettings:
        """Settings from :meth:`record`'s dict; ``where`` names the source in errors.

        Raises:
            ConfigError: unknown keys, wrong types or values out of range.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a table of preprocessing settings")
        return from_dict(cls, dict(data), where)


def preparation_differences(a: PreprocessSettings, b: PreprocessSettings) -> list[tuple[str, Any, Any]]:
    """``(setting, value in a, value in b)`` for each setting of :meth:`~PreprocessSettings.preparation` that differs."""
    pa, pb = a.preparation(), b.preparation()
    return [(k, pa.get(k), pb.get(k)) for k in dict.fromkeys([*pa, *pb]) if pa.get(k) != pb.get(k)]


def estimator_fingerprint(estimator: torch.nn.Module) -> str:
    """Identity of a gaze estimator: its class and a hash of its weights and buffers."""
    h = hashlib.sha256(f"{type(estimator).__module__}.{type(estimator).__qualname__}".encode())
    for name, tensor in sorted(estimator.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def estimator_name(estimator: torch.nn.Module) -> str:
    """The registry name of a gaze estimator's class (``eth-xgaze``, ``small-cnn``), else its class name."""
    for name, factory in GAZE_ESTIMATORS.items():
        if type(estimator) is factory:
            return name
    return f"{type(estimator).__module__}.{type(estimator).__qualname__}"


@dataclass(frozen=True)
class CacheSettings:
    """The settings record of a cache (``preprocessing.json``): how its rows were made.

    A model folder keeps a copy (``meta.json``, key ``preprocessing.cache``), so ``attribute``,
    ``scan`` and ``evaluate`` prepare faces as the training cache did.
    """

    settings: PreprocessSettings
    gaze_estimator: str = ""  # registry name of the estimator whose angles the rows hold; "" = none
    gaze_estimator_fingerprint: str = ""  # estimator_fingerprint() of that estimator
    version: int = CACHE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SETTINGS_FORMAT,
            "cache_version": self.version,
            "settings_key": self.settings.cache_key(),
            "settings": self.settings.record(),
            "gaze_estimator": {"name": self.gaze_estimator, "fingerprint": self.gaze_estimator_fingerprint}
            if self.gaze_estimator_fingerprint
            else None,
        }

    @classmethod
    def from_dict(
        cls,
        data: Any,
        where: str,
        error: type[GazeclipError] = DataError,
        fix: str = "re-run `gazeclip preprocess`",
    ) -> CacheSettings:
        """Read :meth:`to_dict`'s dict back; a malformed record is ``error`` naming ``where`` and ``fix``."""
        if not isinstance(data, Mapping) or data.get("format") != SETTINGS_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise error(
                f"{where}: preprocessing record format {found!r}, expected {SETTINGS_FORMAT!r}; {fix}"
            )
        try:
            settings = PreprocessSettings.from_record(data["settings"], f"{where}: settings")
            gaze = data.get("gaze_estimator") or {}
            record = cls(
                settings=settings,
                gaze_estimator=str(gaze.get("name", "")),
                gaze_estimator_fingerprint=str(gaze.get("fingerprint", "")),
                version=int(data["cache_version"]),
            )
        except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise error(f"{where}: malformed preprocessing record ({exc}); {fix}") from None
        return record


def write_settings(folder: Path, record: CacheSettings) -> None:
    """Write ``preprocessing.json`` atomically."""
    text = json.dumps(record.to_dict(), indent=2) + "\n"
    tmp = folder / f".{SETTINGS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / SETTINGS_FILE)


def read_settings(folder: str | Path) -> CacheSettings | None:
    """A cache's settings record; ``None`` for a cache written before caches recorded their settings."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); re-run `gazeclip preprocess`") from None
    return CacheSettings.from_dict(data, str(path))


def settings_of_model(meta: Mapping[str, Any], folder: str | os.PathLike[str]) -> CacheSettings | None:
    """The training cache's settings record a model folder's ``meta.json`` keeps (``preprocessing.cache``).

    ``None`` for a folder without one: format 1, or trained on a cache written before caches
    recorded their settings.

    Raises:
        ModelFolderError: the record is there but malformed.
    """
    block = meta.get("preprocessing")
    if not isinstance(block, Mapping) or block.get("cache") is None:
        return None
    return CacheSettings.from_dict(
        block["cache"],
        f"{Path(folder) / 'meta.json'}: preprocessing.cache",
        error=ModelFolderError,
        fix="the folder was edited or written by an incompatible gazeclip; restore the original folder",
    )


def cached_gaze_fits(record: CacheSettings | None, estimator: torch.nn.Module | None) -> bool:
    """Whether a cache's stored angles are what ``estimator`` gives: the same estimator made them.

    A cache without a settings record says nothing about its estimator; its angles are trusted
    as they always were.
    """
    if record is None or estimator is None:
        return True
    return record.gaze_estimator_fingerprint == estimator_fingerprint(estimator)


def check_cached_gaze(
    cache: Cache, estimator: torch.nn.Module | None, *sets: CacheDataset | None, also: str = ""
) -> None:
    """Refuse cached angles another estimator computed than ``estimator``, the model's (Table V runs).

    Nothing to check when the model has no gaze estimator or none of ``sets`` reads cached
    angles. ``also`` is a second way out the caller offers (e.g. training without cached gaze).

    Raises:
        DataError: which estimator made the cache's angles, and the command that recomputes them.
    """
    if estimator is None or not any(s is not None and s.cached and s.with_gaze for s in sets):
        return
    if cached_gaze_fits(cache.settings, estimator):
        return
    record = cache.settings
    assert record is not None  # cached_gaze_fits trusts a cache without a record
    name, ours = estimator_name(estimator), estimator_fingerprint(estimator)
    made_by = (
        f"{record.gaze_estimator or 'an unnamed estimator'} (fingerprint {record.gaze_estimator_fingerprint})"
        if record.gaze_estimator_fingerprint
        else "no recorded estimator"
    )
    weights = " --gaze-weights FILE (this model's weight file)" if record.gaze_estimator == name else ""
    raise DataError(
        f"{cache.folder}: its gaze angles come from {made_by} ({SETTINGS_FILE}), not from this model's "
        f"gaze estimator {name} (fingerprint {ours}); recompute them with `gazeclip preprocess SOURCE "
        f"--out {cache.folder} --gaze-estimator {name}{weights}` (SOURCE and options as before: only the "
        f"angles are recomputed){f' {also}' if also else ''}"
    )


# --- writing ------------------------------------------------------------------------------------


def crop_path(sample_id: str) -> str:
    """Where a sample's 256 crop lies, relative to the cache folder."""
    return f"crops/{sample_id[:2]}/{sample_id}.png"


def patch_path(sample_id: str) -> str:
    """Where a sample's normalised gaze patch lies, relative to the cache folder."""
    return f"patches/{sample_id[:2]}/{sample_id}.png"


def read_csv(path: Path, columns: Sequence[str]) -> Iterator[dict[str, str]]:
    """Rows of one of the cache's own CSV files; a torn last line (a kill mid-write) is skipped."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != tuple(columns):
            return
        for fields in reader:
            if len(fields) == len(columns) and fields[0]:
                yield dict(zip(columns, fields, strict=True))


class Appender:
    """A CSV file we append to and flush row by row, so a kill loses at most the row in flight."""

    def __init__(self, path: Path, columns: Sequence[str], *, truncate: bool) -> None:
        self.path = path
        self.columns = tuple(columns)
        exists = path.is_file() and path.stat().st_size > 0
        if exists and not truncate:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            if torn or _read_header(path) != self.columns:
                # Rewrite without the torn line (or the wrong header) before appending.
                rows = list(read_csv(path, columns))
                write_csv(path, columns, rows)
        self.fh = open(path, "w" if truncate else "a", encoding="utf-8", errors="surrogateescape", newline="")
        self.writer = csv.writer(self.fh, lineterminator="\n")
        if truncate or not exists:
            self.writer.writerow(self.columns)
            self.fh.flush()

    def write(self, rows: Sequence[dict[str, str]]) -> None:
        if rows:
            # One write() per batch: a kill leaves whole rows or a torn last line, never interleaving.
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows([[r[c] for c in self.columns] for r in rows])
            self.fh.write(buf.getvalue())
            self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _read_header(path: Path) -> tuple[str, ...]:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        return tuple(next(csv.reader(fh), ()))


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, str]]) -> None:
    """Write a whole CSV file atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[r[c] for c in columns] for r in rows])
    os.replace(tmp, path)


def encode_png(rgb: np.ndarray) -> bytes:
    """A lossless RGB PNG (what every cached crop and patch is), as bytes."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise DataError(f"cannot encode a PNG of an array of shape {rgb.shape}")
    return data.tobytes()


def write_png(path: Path, png: bytes) -> None:
    """Write :func:`encode_png`'s bytes atomically (a kill leaves the old file or none, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    os.replace(tmp, path)


# --- reading ------------------------------------------------------------------------------------


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
    file: Path | None = None  # the source image or video; None when the row names none
    sample_id: str = ""
    source: str = ""  # the manifest's source dataset (DF40, Celeb-DF++...), "" when not given
    frame_index: int | None = None  # frame number within the video; None for a still image
    prompt_name: str = ""  # the generator as the level-4 prompt names it (caches before it: the generator)


@dataclass(frozen=True)
class Cache:
    """A cache read from disk: its rows in file order and its settings record."""

    folder: Path
    rows: list[CacheRow]
    settings: CacheSettings | None  # None: a cache written before caches recorded their settings

    def split(self, name: str) -> list[CacheRow]:
        """The rows of one split (``train``, ``val``, ``test``), in file order."""
        return [r for r in self.rows if r.split == name]


def read_cache(folder: str | Path) -> Cache:
    """A preprocessing cache: every row of ``preprocessed.csv`` and the settings record.

    Raises:
        DataError: no ``preprocessed.csv``, missing columns, a malformed row or settings record.
    """
    folder = Path(folder)
    index = folder / PREPROCESSED_FILE
    if not index.is_file():
        raise DataError(
            f"{folder}: no {PREPROCESSED_FILE} here; run `gazeclip preprocess` with --out {folder} first"
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
                        file=folder / r["path"] if r.get("path") else None,
                        sample_id=r.get("sample_id", ""),
                        source=r.get("source", ""),
                        frame_index=int(r["frame_index"]) if r.get("frame_index") else None,
                    )
                )
            except (KeyError, ValueError) as exc:
                raise DataError(f"{index}: line {n}: malformed row ({exc})") from None
    return Cache(folder=folder, rows=rows, settings=read_settings(folder))


def cache_fingerprint(folder: str | Path) -> str:
    """``sha256:`` + the SHA-256 of the cache index: what a model was trained on."""
    return "sha256:" + sha256_file(Path(folder) / PREPROCESSED_FILE)


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
        with_gaze: False for a model without gaze: neither angles nor patches are read.
    """

    def __init__(
        self, rows: list[CacheRow], image_size: int, use_cached_gaze: bool = True, with_gaze: bool = True
    ) -> None:
        self.rows = rows
        self.image_size = image_size
        self.with_gaze = with_gaze
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
        if not self.with_gaze:
            return item
        if self.cached:
            item["gaze"] = torch.tensor(r.gaze, dtype=torch.float32)
        else:
            item["patch"] = load_rgb(r.patch, 224)
        return item
