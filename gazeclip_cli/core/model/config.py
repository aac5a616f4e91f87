"""Configuration dataclasses of every architecture, one comment per field.

Named architectures (``gazeclip_cli/core/architectures/*.toml``) are read into the config of
their ``family``: :class:`GazeCLIPConfig` (GazeCLIP, its ablations of Tables IV, VI and IX-XIII,
and the CLIP baselines) or :class:`TimmConfig` (a timm backbone with the two experts).
``timm:<model>`` names any timm backbone without a file.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from gazeclip_cli.core.config_io import from_dict, read_toml
from gazeclip_cli.core.errors import ConfigError, unknown_key_message
from gazeclip_cli.core.model.gaze_estimator import (
    GAZE_ESTIMATORS,
    GazeEstimatorConfig,
    release_weights_owner,
)


@dataclass(frozen=True)
class VisionTowerConfig:
    """The CLIP image tower (open_clip VisionTransformer)."""

    image_size: int = 256  # input side in pixels; 224-pixel weights get their position embedding resized
    patch_size: int = 32  # patch side; m = (image_size / patch_size)^2 patches
    width: int = 768  # d, token width
    layers: int = 12  # N, transformer blocks
    head_width: int = 64  # width of one attention head (heads = width / head_width)
    mlp_ratio: float = 4.0  # MLP hidden width / width


@dataclass(frozen=True)
class TextTowerConfig:
    """The CLIP text tower (open_clip CLIP text transformer)."""

    context_length: int = 77  # tokens of one prompt; the LRE concatenates one per prompt level
    vocab_size: int = 49408  # CLIP BPE vocabulary
    width: int = 512  # s, token width
    heads: int = 8  # attention heads
    layers: int = 12  # L, transformer blocks
    mlp_ratio: float = 4.0  # MLP hidden width / width


@dataclass(frozen=True)
class ClipConfig:
    """The frozen CLIP model both towers come from."""

    embed_dim: int = 512  # joint embedding width (text projection output)
    quick_gelu: bool = True  # OpenAI weights were trained with QuickGELU
    weights: str = (
        "clip-vit-b-32"  # weight name resolved by gazeclip_cli.core.weights; "" = random (test configs only)
    )
    open_clip_name: str = "ViT-B-32-quickgelu"  # open_clip model name used by `gazeclip weights fetch`
    open_clip_pretrained: str = "openai"  # open_clip pretrained tag used by `gazeclip weights fetch`
    vision: VisionTowerConfig = field(default_factory=VisionTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)


@dataclass(frozen=True)
class AGPMConfig:
    """Appearance-gaze perception module."""

    conv_channels: tuple[int, ...] = (32, 64, 128, 256, 512)  # stride-2 conv stages; the last is c
    grid: int = 7  # h = w of the appearance feature map (adaptive pooling)
    token_dim: int = 1024  # a, token width
    layers: int = 6  # E, transformer blocks
    heads: int = 8  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden width / token width
    gaze_token: bool = True  # append the gaze token (off = appearance-only AGPM)


@dataclass(frozen=True)
class ClassSpec:
    """One attribution class and its place in the label hierarchy (the paper's Fig. 11)."""

    name: str  # generator name as in the protocol, or the real source
    forgery_type: str  # EFS, FS, AM, FR, TF, or Real
    architecture: str  # GAN, Diffusion, Flow, or Real
    prompt_name: str = ""  # how the level-4 prompt names the generator ("" = name), e.g. "LatentDiffusion"

    @property
    def prompt_generator(self) -> str:
        return self.prompt_name or self.name


PAPER_CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("CelebA-HQ", "Real", "Real"),
    ClassSpec("DiffFace", "FS", "Diffusion"),
    ClassSpec("Diffae", "AM", "Diffusion", "DiffusionAutoencoders"),
    ClassSpec("LatDiff", "EFS", "Diffusion", "LatentDiffusion"),  # as in the paper's Fig. 11
    ClassSpec("CollDiff", "EFS", "Diffusion", "CollaborativeDiffusion"),
    ClassSpec("DDPM", "EFS", "Diffusion"),
    ClassSpec("FSLSD", "FS", "GAN"),
    ClassSpec("FaceSwapper", "FS", "GAN"),
    ClassSpec("LatTrans", "AM", "GAN", "LatentTransformer"),
    ClassSpec("StyleGAN2", "EFS", "GAN"),
    ClassSpec("StyleGAN3", "EFS", "GAN"),
)


EXPERTS = ("attribution", "detection")


class _Classified:
    """What every architecture config shares: attribution classes, and checks that raise the first failure."""

    classes: tuple[ClassSpec, ...]

    @property
    def num_classes(self) -> int:
        """x: attribution logits (real + seen generators)."""
        return len(self.classes)

    @property
    def accepts_cached_gaze(self) -> bool:
        """Whether cached (pitch, yaw) may stand for the model's own estimator (no estimator: moot)."""
        return True

    def _experts_check(self) -> tuple[bool, str]:
        experts = self.experts  # type: ignore[attr-defined]
        ok = len(experts) > 0 and list(experts) == [e for e in EXPERTS if e in experts]
        return ok, f"experts: one or both of {list(EXPERTS)}, in that order"

    @staticmethod
    def _check(checks: list[tuple[bool, str]]) -> None:
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


AWS_PLACEMENTS = ("before", "between", "after")
GI_QUERIES = ("cls", "patch", "all")
PIXEL_NORMS = ("unit", "clip")


@dataclass(frozen=True)
class GazeCLIPConfig(_Classified):
    """The whole network. Defaults are the paper's (Section IV-A)."""

    name: str = "gazeclip-vit-b-32"  # architecture name
    family: str = "gazeclip"  # which config and model class (GazeCLIP and the CLIP baselines)
    clip: ClipConfig = field(default_factory=ClipConfig)
    gaze: GazeEstimatorConfig = field(default_factory=GazeEstimatorConfig)
    agpm: AGPMConfig = field(default_factory=AGPMConfig)
    classes: tuple[ClassSpec, ...] = PAPER_CLASSES  # attribution classes, index = DFA label (x = len)
    pixel_norm: str = "unit"  # "unit": pixels / 255 (the paper); "clip": CLIP mean/std as well
    # Gaze injector (GI)
    gi_heads: int = 8  # r, heads of the injector attention
    gi_query: str = "cls"  # which tokens query the gaze: cls (paper), patch, or all (Table X)
    # LoRA (Table XII)
    lora_rank: int = 8  # LoRA rank
    lora_alpha: int = 32  # LoRA alpha
    gie_lora_blocks: int = 2  # LoRA on the last K image blocks
    lre_lora_blocks: int = 1  # LoRA on the last K text blocks
    # Adaptive-enhanced word selector (Tables IV, IX)
    aws: bool = True  # use the AWS diagonal in every text block
    aws_placement: str = "before"  # before MHA (paper), between MHA and FF, or after FF
    aws_init: str = "normal"  # "normal": N(0, 1) as the paper says; "ones": start as identity
    # Prompts (Table XI)
    prompt_levels: tuple[int, ...] = (1, 2, 3, 4)  # hierarchical levels, t = 77 * len
    learnable_prompt_tokens: int = 0  # LP: learnable context tokens per prompt (0 = off)
    prompt_templates: str = ""  # path of a templates TOML; "" = the packaged templates
    # Module ablations (Tables VI, XIII)
    use_agpm: bool = True  # appearance-gaze perception module
    use_gaze_encoder: bool = True  # GE; off removes every gaze input (no gaze token, no GI)
    use_gie: bool = True  # gaze-aware CLIP image encoder
    use_lre: bool = True  # language refinement encoder and the contrastive loss (training only)
    use_gi: bool = True  # gaze injectors inside the GIE
    finetune_gaze_estimator: bool = False  # train the gaze estimator too (Table XIII "w/ finetuned GE")
    experts: tuple[str, ...] = EXPERTS  # experts built, each with its CE loss; one alone = Fig. 9's ablation
    temperature_init: float = 0.07  # initial contrastive temperature (learnable)

    def __post_init__(self) -> None:
        checks = [
            (self.family == "gazeclip", "family must be 'gazeclip' for this config"),
            (self.aws_placement in AWS_PLACEMENTS, f"aws_placement must be one of {AWS_PLACEMENTS}"),
            (self.aws_init in ("normal", "ones"), "aws_init must be 'normal' or 'ones'"),
            (self.gi_query in GI_QUERIES, f"gi_query must be one of {GI_QUERIES}"),
            (self.pixel_norm in PIXEL_NORMS, f"pixel_norm must be one of {PIXEL_NORMS}"),
            (self.use_agpm or self.use_gie, "at least one of use_agpm and use_gie must be on"),
            (
                0 <= self.gie_lora_blocks <= self.clip.vision.layers,
                "gie_lora_blocks must be in 0..vision layers",
            ),
            (0 <= self.lre_lora_blocks <= self.clip.text.layers, "lre_lora_blocks must be in 0..text layers"),
            (len(self.prompt_levels) > 0 and set(self.prompt_levels) <= {1, 2, 3, 4}, "prompt_levels: 1..4"),
            (list(self.prompt_levels) == sorted(set(self.prompt_levels)), "prompt_levels must be increasing"),
            (self.clip.vision.width % self.gi_heads == 0, "gi_heads must divide the vision width"),
            (self.agpm.token_dim % self.agpm.heads == 0, "agpm.heads must divide agpm.token_dim"),
            (len(self.classes) >= 2, "at least two attribution classes are needed"),
            (self.gaze.name in GAZE_ESTIMATORS, f"gaze.name must be one of {sorted(GAZE_ESTIMATORS)}"),
            self._experts_check(),
        ]
        self._check(checks)
        owner = release_weights_owner(self.gaze.weights)
        if owner is not None and owner != self.gaze.name:
            own = GAZE_ESTIMATORS[self.gaze.name].weights_name
            fix = f"set gaze.weights = '{own}'" if own else "give it a weight file of its own"
            raise ValueError(
                f"gaze.weights '{self.gaze.weights}' is the {owner} estimator's checkpoint; "
                f"with gaze.name = '{self.gaze.name}' {fix}"
            )

    @property
    def uses_gaze(self) -> bool:
        return self.use_gaze_encoder

    @property
    def image_size(self) -> int:
        """H of the network's input images."""
        return self.clip.vision.image_size

    @property
    def accepts_cached_gaze(self) -> bool:
        """Cached (pitch, yaw) stand for the estimator's output only while the estimator is frozen."""
        return not self.finetune_gaze_estimator

    @property
    def text_length(self) -> int:
        """t: tokens of the concatenated prompts."""
        return self.clip.text.context_length * len(self.prompt_levels)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TimmConfig(_Classified):
    """A timm backbone, fine-tuned, with the attribution and detection experts on its pooled features.

    The paper's rule (Section IV-B) for a detection model: add the attribution expert, so every
    method does DFAD with the same two heads. No gaze, no text.
    """

    name: str = "resnet-18"  # architecture name
    family: str = "timm"  # which config and model class
    model_name: str = "resnet18"  # timm model name (one of timm.list_models())
    pretrained_tag: str = "tv_in1k"  # timm pretrained tag: the weights `gazeclip weights fetch` downloads
    weights: str = (
        "timm-resnet18.tv_in1k"  # weight name in the weights folder; "" = random (test configs only)
    )
    image_size: int = 224  # input side; the cache's 256 crops are resized to it (resize_crop)
    mean: tuple[float, ...] = (
        IMAGENET_MEAN  # per-channel mean applied to pixels / 255 (timm's pretrained_cfg)
    )
    std: tuple[float, ...] = IMAGENET_STD  # per-channel std (timm's pretrained_cfg)
    model_args: dict[str, Any] = field(
        default_factory=dict
    )  # extra timm.create_model arguments (tiny variants)
    classes: tuple[ClassSpec, ...] = PAPER_CLASSES  # attribution classes, index = DFA label (x = len)
    experts: tuple[str, ...] = EXPERTS  # experts built, each with its CE loss; one alone = Fig. 9's ablation

    def __post_init__(self) -> None:
        checks = [
            (self.family == "timm", "family must be 'timm' for this config"),
            self._experts_check(),
            (bool(self.model_name), "model_name must name a timm model"),
            (self.image_size >= 16, "image_size must be at least 16"),
            (len(self.mean) == 3 and len(self.std) == 3, "mean and std need three values (RGB)"),
            (all(v > 0 for v in self.std), "std values must be positive"),
            (len(self.classes) >= 2, "at least two attribution classes are needed"),
            (
                not {"num_classes", "pretrained", "img_size"} & set(self.model_args),
                "model_args cannot set num_classes, pretrained or img_size (the config sets them)",
            ),
        ]
        self._check(checks)

    @property
    def uses_gaze(self) -> bool:
        return False


DetectorConfig = GazeCLIPConfig | TimmConfig
FAMILIES: dict[str, type] = {"gazeclip": GazeCLIPConfig, "timm": TimmConfig}
TIMM_PREFIX = "timm:"
RECIPE_TABLE = "train"  # an architecture file's own run settings (core/train/run_config.py reads them)

ARCHITECTURES_PACKAGE = "gazeclip_cli.core.architectures"


def list_architectures() -> list[str]:
    """Names of the architectures shipped inside the package."""
    files = resources.files(ARCHITECTURES_PACKAGE).iterdir()
    return sorted(f.name[: -len(".toml")] for f in files if f.name.endswith(".toml"))


def architecture_summary(name: str) -> str:
    """What a named architecture is, in a line: its file's leading comment up to the first colon
    (or the end of its first sentence)."""
    text = (resources.files(ARCHITECTURES_PACKAGE) / f"{name}.toml").read_text(encoding="utf-8")
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    words = " ".join(comment)
    first = re.split(r"(?<=\.)\s+(?=[A-Z])", words, maxsplit=1)[0]
    return first.split(": ", 1)[0].rstrip(".")


def config_from_toml_data(data: dict[str, Any], where: str) -> DetectorConfig:
    """The config of the table's ``family`` (``gazeclip`` when absent, as in folders written before families)."""
    family = data.get("family", "gazeclip")
    if family not in FAMILIES:
        raise ConfigError(unknown_key_message(str(family), FAMILIES, f"{where}: family"))
    return from_dict(FAMILIES[family], data, where)


def timm_pretrained_cfg(model_name: str, tag: str = "") -> Any:
    """timm's pretrained config of ``model_name.tag`` (the default tag when empty); ConfigError if unknown."""
    import timm

    try:
        pretrained = timm.models.get_pretrained_cfg(f"{model_name}.{tag}" if tag else model_name)
    except RuntimeError:
        pretrained = None
    if pretrained is None:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{model_name}.*")]
        raise ConfigError(
            f"timm model '{model_name}' has no pretrained tag '{tag}' (known: {', '.join(tags) or 'none'})"
        )
    return pretrained


def timm_architecture_data(spec: str) -> dict[str, Any]:
    """The architecture table of ``timm:<model>[.<tag>]``: timm's default input size and normalisation.

    Reads timm's model registry only (no network). The weight name is ``timm-<model>.<tag>``.
    """
    import timm

    model_name, _, tag = spec.partition(".")
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see timm.list_models())"
        raise ConfigError(f"unknown timm model '{model_name}'{hint}")
    pretrained = timm_pretrained_cfg(model_name, tag)
    tag = tag or pretrained.tag or ""
    return {
        "family": "timm",
        "name": f"{TIMM_PREFIX}{model_name}" + (f".{tag}" if tag else ""),
        "model_name": model_name,
        "pretrained_tag": tag,
        "weights": f"timm-{model_name}" + (f".{tag}" if tag else ""),
        "image_size": int(pretrained.input_size[-1]),
        "mean": list(pretrained.mean),
        "std": list(pretrained.std),
    }


def architecture_data(name_or_path: str | Path) -> dict[str, Any]:
    """The raw TOML table of a named architecture, a ``timm:<model>`` name, or a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return read_toml(path)
    name = str(name_or_path)
    if name.startswith(TIMM_PREFIX):
        return timm_architecture_data(name[len(TIMM_PREFIX) :])
    if name not in list_architectures():
        raise ConfigError(
            f"unknown architecture '{name}' (known: {', '.join(list_architectures())}; "
            "or timm:<model name>, or a .toml path)"
        )
    res = resources.files(ARCHITECTURES_PACKAGE) / f"{name}.toml"
    return tomllib.loads(res.read_text(encoding="utf-8"))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, nested tables merged key by key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_architecture(name_or_path: str | Path, **overrides: Any) -> DetectorConfig:
    """A named architecture, ``timm:<model>``, or a TOML file path, with optional top-level field overrides."""
    data = architecture_data(name_or_path)
    data.pop(RECIPE_TABLE, None)
    cfg = config_from_toml_data(data, f"architecture {name_or_path}")
    try:
        return replace(cfg, **overrides) if overrides else cfg
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"architecture override: {exc}") from None
