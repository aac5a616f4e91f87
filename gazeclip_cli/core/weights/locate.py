"""Where named weight files live, and the message that says what to put where when they do not.

A weight named ``N`` is looked for in the weights folder (``--weights-dir``,
``$GAZECLIP_WEIGHTS_DIR``, or ``models/weights`` under the current folder) as
``N.safetensors``, ``N.pt``, ``N.pth``, ``N.bin``, ``N.pth.tar``, ``N.pkl``, or a folder
``N/`` holding one weight file (or an upstream file name: open_clip's ``local-dir`` files,
a Hugging Face timm snapshot's ``model.safetensors``, ETH-XGaze's ``epoch_24_ckpt.pth.tar``,
L2CS-Net's ``L2CSNet_gaze360.pkl``). Weights of timm backbones are named
``timm-<model>.<tag>`` after timm's own names.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from gazeclip_cli.core.errors import WeightsError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".pth.tar", ".pkl")
DEFAULT_WEIGHTS_DIR = Path("models") / "weights"


@dataclass
class WeightSources:
    """Where pretrained weights come from. ``pretrained=False`` builds with random towers.

    Defined here, beside the lookup it parameterises, so that code which only names weight
    sources (the predictor, the ONNX runtime) does not import the network builder.
    """

    pretrained: bool = True  # load the weight files the config names (an error if one is missing)
    directory: str | Path | None = None  # weights folder (default: $GAZECLIP_WEIGHTS_DIR or models/weights)
    overrides: dict[str, str | Path] = field(default_factory=dict)  # weight name -> explicit file


@dataclass(frozen=True)
class WeightSpec:
    """A pretrained weight file the tool can use."""

    name: str  # the name configs refer to
    description: str  # what it is
    how_to_get: str  # where it comes from, for the missing-file message
    fetchable: bool  # `gazeclip weights fetch` can download it
    source: str  # the upstream page that publishes it
    put_at: str  # where a hand-fetched file goes, relative to the weights folder
    timm_name: str = ""  # timm "<model>.<tag>" whose pretrained weights these are ("" = not timm's)


def _by_hand(name: str, description: str, download: str, source: str, put_at: str) -> WeightSpec:
    """A checkpoint no registry hosts: the user downloads it from its upstream page."""
    how = f"{download} (no registry hosts it) and copy it there"
    return WeightSpec(name, description, how, fetchable=False, source=source, put_at=put_at)


TIMM_WEIGHT_PREFIX = "timm-"


def timm_weight_spec(name: str) -> WeightSpec:
    """The spec of weight ``timm-<model>.<tag>``: timm's pretrained weights of that model and tag."""
    timm_name = name[len(TIMM_WEIGHT_PREFIX) :]
    return WeightSpec(
        name=name,
        description=f"timm {timm_name} backbone (timm's key layout)",
        how_to_get=(
            f"run `gazeclip weights fetch {name}` on a machine with internet (through timm), or copy the file "
            f"timm downloads for {timm_name} (its Hugging Face model.safetensors, or the .pth at its URL) there"
        ),
        fetchable=True,
        source=f"huggingface.co/timm/{timm_name} (through timm)",
        put_at=f"{name}.safetensors",
        timm_name=timm_name,
    )


KNOWN_WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="clip-vit-b-32",
            description="OpenAI CLIP ViT-B/32 (image and text towers), 224-pixel weights; resized to 256 on load",
            how_to_get=(
                "run `gazeclip weights fetch clip-vit-b-32` on a machine with internet, or copy OpenAI's "
                "ViT-B-32.pt or an open_clip ViT-B-32 (quickgelu, openai) checkpoint there"
            ),
            fetchable=True,
            source="github.com/openai/CLIP (through open_clip)",
            put_at="clip-vit-b-32.safetensors",
        ),
        _by_hand(
            "eth-xgaze",
            "ETH-XGaze baseline gaze estimator (ResNet-50, 224x224 normalised face -> pitch, yaw)",
            "download the pre-trained model 'epoch_24_ckpt.pth.tar' linked from the README of "
            "github.com/xucong-zhang/ETH-XGaze",
            source="github.com/xucong-zhang/ETH-XGaze",
            put_at="eth-xgaze/epoch_24_ckpt.pth.tar",
        ),
        _by_hand(
            "puregaze",
            "PureGaze gaze estimator (ResNet-50 trained on ETH-XGaze, 224x224 normalised face, BGR)",
            "download the Res50 PureGaze model trained on ETH-XGaze (a state dict with feature.*, gazeEs.*, "
            "deconv.*) that the README of github.com/yihuacheng/PureGaze links",
            source="github.com/yihuacheng/PureGaze",
            put_at="puregaze.pt",
        ),
        _by_hand(
            "l2cs-gaze360",
            "L2CS-Net gaze estimator (ResNet-50 trained on Gaze360, 448x448 face, 90 bins of 4 deg)",
            "download 'L2CSNet_gaze360.pkl' from the Google Drive folder linked in the README of "
            "github.com/Ahmednull/L2CS-Net",
            source="github.com/Ahmednull/L2CS-Net",
            put_at="l2cs-gaze360/L2CSNet_gaze360.pkl",
        ),
        # The baselines' backbones (gazeclip_cli/core/architectures/{resnet-18,xception,vit-b-16}.toml).
        timm_weight_spec("timm-resnet18.tv_in1k"),
        timm_weight_spec("timm-legacy_xception.tf_in1k"),
        timm_weight_spec("timm-vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    )
}


def weight_spec(name: str) -> WeightSpec | None:
    """A known weight's spec, one derived for any ``timm-<model>.<tag>`` name, or None."""
    if name in KNOWN_WEIGHTS:
        return KNOWN_WEIGHTS[name]
    if name.startswith(TIMM_WEIGHT_PREFIX) and len(name) > len(TIMM_WEIGHT_PREFIX):
        return timm_weight_spec(name)
    return None


def weights_dir(explicit: str | Path | None = None) -> Path:
    """The weights folder: the explicit one, else $GAZECLIP_WEIGHTS_DIR, else models/weights."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("GAZECLIP_WEIGHTS_DIR")
    return Path(env) if env else DEFAULT_WEIGHTS_DIR


def _is_weight_file(p: Path) -> bool:
    return p.is_file() and any(p.name.endswith(s) for s in WEIGHT_SUFFIXES)


def find_weight(name: str, directory: Path) -> Path | None:
    """The file that holds weight ``name`` in ``directory``, or None."""
    for suffix in WEIGHT_SUFFIXES:
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    folder = directory / name
    if folder.is_dir():
        for preferred in (
            "open_clip_model.safetensors",
            "open_clip_pytorch_model.bin",
            "model.safetensors",  # a Hugging Face timm snapshot (it also holds pytorch_model.bin)
            "epoch_24_ckpt.pth.tar",
            "L2CSNet_gaze360.pkl",
        ):
            if (folder / preferred).is_file():
                return folder / preferred
        files = sorted(p for p in folder.iterdir() if _is_weight_file(p))
        if len(files) == 1:
            return files[0]
    return None


def present_timm_weights(directory: Path) -> list[str]:
    """Names of ``timm-*`` weights in ``directory`` (files or folders), known or not."""
    if not directory.is_dir():
        return []
    names = set()
    for p in directory.iterdir():
        if not p.name.startswith(TIMM_WEIGHT_PREFIX):
            continue
        suffix = next((s for s in WEIGHT_SUFFIXES if p.is_file() and p.name.endswith(s)), None)
        if suffix:
            names.add(p.name[: -len(suffix)])
        elif p.is_dir():
            names.add(p.name)
    return sorted(n for n in names if find_weight(n, directory) is not None)


def missing_message(name: str, directory: Path) -> str:
    spec = weight_spec(name)
    where = (
        f"{directory / name}.safetensors (or .pt/.pth/.bin/.pth.tar/.pkl, or a folder {directory / name}/)"
    )
    how = f": {spec.how_to_get}" if spec else ""
    return f"weight '{name}' not found; put it at {where}{how}. See `gazeclip weights`."


def resolve_weight(name: str, directory: Path, explicit: str | Path | None = None) -> Path:
    """Path of weight ``name``; ``explicit`` (a file or folder the user gave) wins. Raises WeightsError."""
    if explicit:
        p = Path(explicit)
        if p.is_dir():
            found = find_weight(p.name, p.parent) or next(
                (f for f in sorted(p.iterdir()) if _is_weight_file(f)), None
            )
            if found is None:
                raise WeightsError(f"{p}: folder holds no weight file ({', '.join(WEIGHT_SUFFIXES)})")
            return found
        if not p.is_file():
            raise WeightsError(f"{p}: weight file not found (given for '{name}')")
        return p
    found = find_weight(name, directory)
    if found is None:
        raise WeightsError(missing_message(name, directory))
    return found


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
