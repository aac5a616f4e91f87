"""A trained model is a folder: load it with nothing else.

Contents:
- ``config.toml``: the architecture's config (its ``family`` says which; classes included);
- ``weights.safetensors``: every tensor except the frozen pretrained tower weights, which
  come from the named weight files whose SHA-256 is recorded (a folder built on random
  towers, like the tiny demo model, holds every tensor);
- ``meta.json``: format version, tool version, class names, preprocessing (the model's
  input facts and the training cache's settings record, ``preprocessing.cache``, from which
  ``attribute``, ``scan`` and ``evaluate`` prepare faces), weight-file checksums (and which of
  those files loading needs), what it was trained on (``synthetic: true`` for the demo's renders), and free-form training metadata.

Format 2 added ``preprocessing.cache``; format 1 folders still load (their record is
missing, so readers state the defaults they assume).

Nothing is unpickled: config and meta are text, weights are safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from gazeclip_cli import __version__
from gazeclip_cli.core.config_io import dumps_toml, read_toml, to_dict
from gazeclip_cli.core.errors import DataError, GazeclipError, ModelFolderError
from gazeclip_cli.core.model.config import DetectorConfig, GazeCLIPConfig, config_from_toml_data
from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.weights.checksums import cached_sha256
from gazeclip_cli.core.weights.locate import WeightSources, sha256_file
from gazeclip_cli.core.weights.store import map_safetensors, save_safetensors

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: no preprocessing.cache record (the settings it implies are unknown)
TEXT_ONLY_PREFIXES = ("lre.", "logit_scale")  # train-path tensors the test path never reads
CONFIG_FILE = "config.toml"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "meta.json"
SYNTHETIC_KEY = "synthetic"  # meta.json: true when the model was trained on the synthetic demo benchmark
# Demo folders written before meta.json recorded SYNTHETIC_KEY are known by their architecture.
_SYNTHETIC_ARCHITECTURES = ("demo-small",)
SYNTHETIC_NOTICE = (
    "this model was trained on the synthetic demo benchmark (rendered faces, made-up generators): "
    "its verdicts say nothing about real photos"
)


def trained_on_synthetic(meta: dict[str, Any]) -> bool:
    """Whether a model folder's ``meta.json`` says it learned from the synthetic demo benchmark."""
    return meta.get(SYNTHETIC_KEY) is True or meta.get("architecture") in _SYNTHETIC_ARCHITECTURES


@dataclass
class ModelFolder:
    """A loaded model folder."""

    path: Path
    model: Detector
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.model.cfg.classes]


def preprocessing_record(cfg: DetectorConfig, cache: dict[str, Any] | None) -> dict[str, Any]:
    """``meta.json``'s ``preprocessing``: the model's input facts and the training cache's settings record.

    Args:
        cfg: the model's config (image size, pixel normalisation, gaze estimator).
        cache: the training cache's settings record
            (:meth:`~gazeclip_cli.core.data.cache.CacheSettings.to_dict`), or None when the
            cache recorded none.
    """
    if not isinstance(cfg, GazeCLIPConfig):
        return {
            "image_size": cfg.image_size,  # the 256 crops are resized to this
            "pixel_scale": "pixels / 255",
            "pixel_norm": {"mean": list(cfg.mean), "std": list(cfg.std)},
            "gaze": None,
            "cache": cache,
        }
    return {
        "image_size": cfg.image_size,  # the 256 crops are resized to this
        "pixel_scale": "pixels / 255",
        "pixel_norm": cfg.pixel_norm,
        "gaze_patch_size": 224,
        "gaze_estimator": cfg.gaze.name,
        "cache": cache,
    }


def pretrained_keys(model: Detector) -> set[str]:
    """State-dict names of frozen tensors that come unchanged from named weight files."""
    return model.frozen_pretrained_keys()


def save_model_folder(
    model: Detector,
    folder: str | Path,
    *,
    trained_on: str = "",
    preprocessing: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a model folder (atomically per file); returns the folder.

    ``preprocessing`` is the training cache's settings record (None: it recorded none).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    skip = pretrained_keys(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in skip}
    save_safetensors(tensors, folder / WEIGHTS_FILE)
    cfg_text = dumps_toml(to_dict(model.cfg))
    _atomic_write(folder / CONFIG_FILE, cfg_text)
    meta = {
        "format": FORMAT_VERSION,
        "tool_version": __version__,
        "architecture": model.cfg.name,
        "family": model.cfg.family,
        "class_names": [c.name for c in model.cfg.classes],
        "preprocessing": preprocessing_record(model.cfg, preprocessing),
        "weight_files": {
            name: {"file": Path(path).name, "sha256": cached_sha256(path)}
            for name, path in sorted(model.pretrained_files.items())
        },
        # Loading builds from every named file or from none: the files matter only when tensors were left out.
        "needs_weight_files": sorted(model.pretrained_files) if skip else [],
        "weights_sha256": cached_sha256(folder / WEIGHTS_FILE),  # remembered: the first load reads no file
        "trained_on": trained_on,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    _atomic_write(folder / META_FILE, json.dumps(meta, indent=2) + "\n")
    return folder


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def model_folder_sha256(folder: str | Path, meta: dict[str, Any], weights_sha256: str) -> str:
    """One hash of what decides a folder's outputs: its config, its weights and the weight files it names.

    ``weights_sha256`` is the SHA-256 of ``weights.safetensors`` (the caller has usually computed
    it already); meta.json's timestamps are left out, so re-saving the same model gives the same hash.
    """
    folder = Path(folder)
    parts = {
        CONFIG_FILE: sha256_file(folder / CONFIG_FILE),
        WEIGHTS_FILE: weights_sha256,
        "weight_files": {k: v.get("sha256", "") for k, v in sorted(meta.get("weight_files", {}).items())},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def read_meta(folder: str | Path) -> dict[str, Any]:
    """meta.json of a model folder, checked for presence and format version."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(
            f"{folder}: model folder not found (train one with `gazeclip train`, or pass --model)"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE, META_FILE):
        if not (folder / name).is_file():
            raise ModelFolderError(f"{folder}: not a model folder, {name} is missing")
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{folder / META_FILE}: unreadable ({exc})") from None
    if meta.get("format") not in READABLE_FORMATS:
        raise ModelFolderError(
            f"{folder}: model folder format {meta.get('format')!r} was written by an incompatible gazeclip "
            f"(version {meta.get('tool_version', '?')}); this version reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}"
        )
    return meta


def read_config(folder: str | Path) -> DetectorConfig:
    """The architecture config of a model folder (``config.toml``), without building the network.

    Raises:
        ModelFolderError: the config does not fit this version (unknown keys, bad values).
    """
    folder = Path(folder)
    try:
        return config_from_toml_data(read_toml(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
    except GazeclipError as exc:
        raise ModelFolderError(f"{folder}: config does not fit this version: {exc}") from None


@dataclass(frozen=True)
class FolderSummary:
    """What ``meta.json`` says about a model folder, read without loading it."""

    path: Path
    architecture: str | None
    classes: int | None  # attribution classes
    created: str | None  # when it was written (UTC)
    synthetic: bool  # trained on the synthetic demo benchmark
    problem: str | None  # why it cannot be loaded (incompatible format, missing file), or None


def find_model_folders(root: str | Path, depth: int = 3) -> list[FolderSummary]:
    """Model folders (a folder with ``meta.json``) at or below ``root``, at most ``depth`` levels down,
    in name order; a folder that cannot be loaded is listed with its problem."""
    root = Path(root)
    found: list[FolderSummary] = []

    def visit(folder: Path, level: int) -> None:
        if (folder / META_FILE).is_file():
            found.append(summarise_folder(folder))
            return
        if level >= depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            visit(child, level + 1)

    if root.is_dir():
        visit(root, 0)
    return found


def summarise_folder(folder: str | Path) -> FolderSummary:
    """A :class:`FolderSummary` of one folder; its problem when :func:`read_meta` refuses it."""
    folder = Path(folder)
    try:
        meta = read_meta(folder)
    except ModelFolderError as exc:
        return FolderSummary(folder, None, None, None, False, str(exc))
    return FolderSummary(
        path=folder,
        architecture=str(meta.get("architecture", "")) or None,
        classes=len(meta.get("class_names", [])) or None,
        created=meta.get("created"),
        synthetic=trained_on_synthetic(meta),
        problem=None,
    )


LORA_A, LORA_B = ".lora_A.default.weight", ".lora_B.default.weight"  # peft's names (adapter "default")


def merge_lora(
    tensors: dict[str, torch.Tensor], own: dict[str, torch.Tensor], scaling: float
) -> dict[str, torch.Tensor]:
    """A folder's tensors with each peft LoRA Linear merged into one: ``W + (B @ A) * scaling``.

    ``X.base_layer.weight`` / ``.bias`` and ``X.lora_A`` / ``X.lora_B`` become ``X.weight`` /
    ``X.bias``, the arithmetic ``optimize_for_inference`` merges a live peft layer with. A base
    left out of the folder (frozen, from a pretrained file) is the built model's (``own``, by
    the merged name). ``scaling`` is peft's ``lora_alpha / r``.
    """
    out = dict(tensors)
    for key in [k for k in tensors if k.endswith(LORA_A)]:
        prefix = key[: -len(LORA_A)]
        a, b = out.pop(key), out.pop(prefix + LORA_B)
        base = out.pop(prefix + ".base_layer.weight", None)
        weight = (own[prefix + ".weight"] if base is None else base).detach().clone()
        weight += (b @ a) * scaling
        out[prefix + ".weight"] = weight
        bias = out.pop(prefix + ".base_layer.bias", None)
        if bias is not None:
            out[prefix + ".bias"] = bias
    return out


def load_model_folder(
    folder: str | Path,
    weights: WeightSources | None = None,
    device: str | torch.device = "cpu",
    verify_checksums: bool = True,
    with_text: bool = True,
) -> ModelFolder:
    """Load a model folder; the frozen towers come from the recorded weight files, checked by SHA-256.

    ``with_text=False`` is the test path's model (attribute, scan, evaluate): without the
    language refinement encoder, which it never runs, and with the image tower's LoRA merged
    into its Linear layers (:func:`merge_lora`), so peft is not imported: a smaller,
    faster-loading model with the same outputs (to float rounding); it cannot be trained.
    """
    # The builder (open_clip, torchvision) is imported only here: reading a folder's meta.json and
    # config, as the ONNX runtime does, needs neither (docs/PERFORMANCE.md, "Cold start").
    from gazeclip_cli.core.model.builder import build_model
    from gazeclip_cli.core.model.image_encoder import TRAINABLE_EMBEDDINGS

    folder = Path(folder)
    meta = read_meta(folder)
    cfg = read_config(folder)
    recorded = meta.get("weight_files", {})
    needed = meta.get("needs_weight_files", sorted(recorded))  # folders before the key needed them all
    sources = weights or WeightSources()
    sources = WeightSources(pretrained=bool(needed), directory=sources.directory, overrides=sources.overrides)
    text_free = isinstance(cfg, GazeCLIPConfig) and not with_text
    model = build_model(replace(cfg, use_lre=False) if text_free else cfg, sources, merged_lora=text_free)
    if verify_checksums:
        for name, info in recorded.items():
            path = model.pretrained_files.get(name)
            if path is not None and cached_sha256(path) != info["sha256"]:
                raise ModelFolderError(
                    f"{path}: SHA-256 differs from the '{name}' file this model was trained with "
                    f"({info['file']}, {info['sha256'][:12]}...); put that exact file there"
                )
    try:
        # A memory map, not a read: the parameters below become views of the file's pages (no copy).
        tensors = map_safetensors(folder / WEIGHTS_FILE)
    except DataError as exc:
        raise ModelFolderError(f"{folder / WEIGHTS_FILE}: unreadable ({exc})") from None
    if text_free and cfg.use_lre:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(TEXT_ONLY_PREFIXES)}
    if text_free:
        tensors = merge_lora(
            tensors, model.state_dict(), cfg.lora_alpha / cfg.lora_rank if cfg.lora_rank else 0.0
        )
    expected = set(model.state_dict()) - pretrained_keys(model)
    missing, unexpected = expected - set(tensors), set(tensors) - set(model.state_dict())
    if isinstance(cfg, GazeCLIPConfig) and model.pretrained_files.get(cfg.clip.weights):
        # Folders written while the GIE's class token and position embedding were frozen hold
        # neither: their pretrained values, just loaded with the tower, are the trained ones.
        missing -= {f"gie.visual.{name}" for name in TRAINABLE_EMBEDDINGS}
    if missing or unexpected:
        example = sorted(missing or unexpected)[0]
        raise ModelFolderError(
            f"{folder / WEIGHTS_FILE}: does not fit its config ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"e.g. {example}); the folder was written by an incompatible version or edited"
        )
    model.load_state_dict(tensors, strict=False, assign=True)  # assign: keep the mapped tensors, copy nothing
    model.to(device).eval()
    return ModelFolder(path=folder, model=model, meta=meta)
