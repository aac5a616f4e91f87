"""A trained model is a folder: load it with nothing else.

Contents:
- ``config.toml``: the :class:`GazeCLIPConfig` (classes included);
- ``weights.safetensors``: every tensor except the frozen pretrained tower weights, which
  come from the named weight files whose SHA-256 is recorded (a folder built on random
  towers, like the tiny demo model, holds every tensor);
- ``meta.json``: format version, tool version, class names, preprocessing, weight-file
  checksums, what it was trained on, and free-form training metadata.

Nothing is unpickled: config and meta are text, weights are safetensors.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from gazeclip_cli import __version__
from gazeclip_cli.core.config_io import dumps_toml, read_toml, to_dict
from gazeclip_cli.core.errors import GazeclipError, ModelFolderError
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import GazeCLIPConfig, config_from_toml_data
from gazeclip_cli.core.model.gazeclip import GazeCLIP
from gazeclip_cli.core.model.image_encoder import TRAINABLE_EMBEDDINGS
from gazeclip_cli.core.weights.locate import sha256_file

FORMAT_VERSION = 1
TEXT_ONLY_PREFIXES = ("lre.", "logit_scale")  # train-path tensors the test path never reads
CONFIG_FILE = "config.toml"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "meta.json"


@dataclass
class ModelFolder:
    """A loaded model folder."""

    path: Path
    model: GazeCLIP
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.model.cfg.classes]


def preprocessing_of(cfg: GazeCLIPConfig) -> dict[str, Any]:
    """What the model expects its inputs to look like."""
    return {
        "image_size": cfg.clip.vision.image_size,
        "pixel_scale": "pixels / 255",
        "pixel_norm": cfg.pixel_norm,
        "gaze_patch_size": 224,
        "gaze_normalisation": "ETH-XGaze (focal 960, distance 600)",
        "gaze_estimator": cfg.gaze.name,
    }


def pretrained_keys(model: GazeCLIP) -> set[str]:
    """State-dict names of frozen tensors that come unchanged from named weight files."""
    cfg = model.cfg
    keys: set[str] = set()
    names = dict(model.named_parameters())
    state = model.state_dict()
    if cfg.clip.weights and cfg.clip.weights in model.pretrained_files:
        prefixes = []
        if model.gie is not None:
            prefixes.append("gie.visual.")
        if model.lre is not None:
            prefixes += ["lre.token_embedding.", "lre.transformer.", "lre.ln_final.", "lre.text_projection"]
        for k in state:
            if (
                k.startswith(tuple(prefixes))
                and "lora_" not in k
                and not (k in names and names[k].requires_grad)
            ):
                keys.add(k)
    if cfg.gaze.weights and cfg.gaze.weights in model.pretrained_files and not cfg.finetune_gaze_estimator:
        keys |= {k for k in state if k.startswith("gaze_encoder.estimator.")}
    return keys


def save_model_folder(
    model: GazeCLIP,
    folder: str | Path,
    *,
    trained_on: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a model folder (atomically per file); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    skip = pretrained_keys(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in skip}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / WEIGHTS_FILE)
    cfg_text = dumps_toml(to_dict(model.cfg))
    _atomic_write(folder / CONFIG_FILE, cfg_text)
    meta = {
        "format": FORMAT_VERSION,
        "tool_version": __version__,
        "architecture": model.cfg.name,
        "class_names": [c.name for c in model.cfg.classes],
        "preprocessing": preprocessing_of(model.cfg),
        "weight_files": {
            name: {"file": Path(path).name, "sha256": sha256_file(Path(path))}
            for name, path in sorted(model.pretrained_files.items())
        },
        "weights_sha256": sha256_file(folder / WEIGHTS_FILE),
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
    if meta.get("format") != FORMAT_VERSION:
        raise ModelFolderError(
            f"{folder}: model folder format {meta.get('format')!r} was written by an incompatible gazeclip "
            f"(version {meta.get('tool_version', '?')}); this version reads format {FORMAT_VERSION}"
        )
    return meta


def load_model_folder(
    folder: str | Path,
    weights: WeightSources | None = None,
    device: str | torch.device = "cpu",
    verify_checksums: bool = True,
    with_text: bool = True,
) -> ModelFolder:
    """Load a model folder; the frozen towers come from the recorded weight files, checked by SHA-256.

    ``with_text=False`` leaves out the language refinement encoder, which the test path never
    runs (attribute, scan, evaluate): a smaller, faster-loading model with the same outputs.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    try:
        cfg = config_from_toml_data(read_toml(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
    except GazeclipError as exc:
        raise ModelFolderError(f"{folder}: config does not fit this version: {exc}") from None
    recorded = meta.get("weight_files", {})
    sources = weights or WeightSources()
    sources = WeightSources(
        pretrained=bool(recorded), directory=sources.directory, overrides=sources.overrides
    )
    model = build_gazeclip(cfg if with_text else replace(cfg, use_lre=False), sources)
    if verify_checksums:
        for name, info in recorded.items():
            path = model.pretrained_files.get(name)
            if path is not None and sha256_file(Path(path)) != info["sha256"]:
                raise ModelFolderError(
                    f"{path}: SHA-256 differs from the '{name}' file this model was trained with "
                    f"({info['file']}, {info['sha256'][:12]}...); put that exact file there"
                )
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelFolderError(f"{folder / WEIGHTS_FILE}: unreadable ({exc})") from None
    if not with_text and cfg.use_lre:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(TEXT_ONLY_PREFIXES)}
    expected = set(model.state_dict()) - pretrained_keys(model)
    missing, unexpected = expected - set(tensors), set(tensors) - set(model.state_dict())
    if model.pretrained_files.get(cfg.clip.weights):
        # Folders written while the GIE's class token and position embedding were frozen hold
        # neither: their pretrained values, just loaded with the tower, are the trained ones.
        missing -= {f"gie.visual.{name}" for name in TRAINABLE_EMBEDDINGS}
    if missing or unexpected:
        example = sorted(missing or unexpected)[0]
        raise ModelFolderError(
            f"{folder / WEIGHTS_FILE}: does not fit its config ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"e.g. {example}); the folder was written by an incompatible version or edited"
        )
    model.load_state_dict(tensors, strict=False)
    model.to(device).eval()
    return ModelFolder(path=folder, model=model, meta=meta)
