"""Tiny builder functions: config (+ weight files) -> parts -> a :class:`Detector` (GazeCLIP or a baseline)."""

from __future__ import annotations

from pathlib import Path

import torch

from gazeclip_cli.core.errors import ConfigError, WeightsError
from gazeclip_cli.core.model.agpm import AGPM
from gazeclip_cli.core.model.clip_towers import build_clip
from gazeclip_cli.core.model.config import DetectorConfig, GazeCLIPConfig, TimmConfig, load_architecture
from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.gaze_encoder import GazeEncoder
from gazeclip_cli.core.model.gaze_estimator import GazeEstimator, GazeEstimatorConfig, build_gaze_estimator
from gazeclip_cli.core.model.gazeclip import GazeCLIP
from gazeclip_cli.core.model.image_encoder import GazeAwareImageEncoder
from gazeclip_cli.core.weights.loading import load_clip_weights, load_gaze_weights, read_state_dict
from gazeclip_cli.core.weights.locate import (  # WeightSources: imported from builder by many callers
    KNOWN_WEIGHTS,
    WeightSources,
    resolve_weight,
    weight_spec,
    weights_dir,
)


def prompt_sets(cfg: GazeCLIPConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct prompt sets, (P, t) token ids (77 per prompt, concatenated), and each class's set, (x,).

    Classes whose prompts read alike (every fake class with L1 only) share one set: the text
    tower encodes it once and the contrastive loss counts them as one positive (Table XI).
    """
    from gazeclip_cli.core.model.openclip import SimpleTokenizer  # the text tower's modules: train path only
    from gazeclip_cli.core.model.prompts import class_prompts, load_templates

    if cfg.learnable_prompt_tokens and cfg.learnable_prompt_tokens > cfg.clip.text.context_length - 20:
        raise ValueError("learnable_prompt_tokens leaves no room for the prompt")
    templates = load_templates(cfg.prompt_templates)
    tokenizer = SimpleTokenizer(context_length=cfg.clip.text.context_length)
    filler = "X " * cfg.learnable_prompt_tokens  # word slots the learnable context vectors replace
    sets: dict[tuple[int, ...], int] = {}  # token ids -> set index, in first-seen class order
    rows, of_class = [], []
    for spec in cfg.classes:
        prompts = [filler + p for p in class_prompts(spec, cfg.prompt_levels, templates)]
        row = tokenizer(prompts).reshape(-1)  # (levels, 77) -> (t,)
        key = tuple(row.tolist())
        if key not in sets:
            sets[key] = len(rows)
            rows.append(row)
        of_class.append(sets[key])
    return torch.stack(rows), torch.tensor(of_class, dtype=torch.long)


def build_frozen_gaze_estimator(
    cfg: GazeEstimatorConfig, weights: WeightSources | None = None
) -> tuple[GazeEstimator, Path | None]:
    """The gaze estimator a config names, with its pretrained weights (eval mode), and the file they came from."""
    weights = weights or WeightSources()
    estimator = build_gaze_estimator(cfg)
    path = None
    if weights.pretrained and cfg.weights:
        path = resolve_weight(cfg.weights, weights_dir(weights.directory), weights.overrides.get(cfg.weights))
        load_gaze_weights(estimator, path)
    return estimator.eval(), path


def build_gazeclip(
    cfg: GazeCLIPConfig, weights: WeightSources | None = None, seed: int = 0, *, merged_lora: bool = False
) -> GazeCLIP:
    """Build the network; load the named pretrained weights unless ``weights.pretrained`` is False.

    ``merged_lora``: the image tower's LoRA blocks are plain Linear layers, for weights with the
    adapters merged in (the test path; see :func:`~gazeclip_cli.core.model.folder.merge_lora`).

    Random initialisation is deterministic in ``seed`` and does not touch the global RNG.
    Records ``model.pretrained_files`` (weight name -> file) for provenance and model folders.
    """
    weights = weights or WeightSources()
    directory = weights_dir(weights.directory)
    loaded: dict[str, Path] = {}
    uses_clip = cfg.use_gie or cfg.use_lre
    clip_path = None
    if uses_clip and weights.pretrained and cfg.clip.weights:  # a missing file fails before any building
        clip_path = resolve_weight(cfg.clip.weights, directory, weights.overrides.get(cfg.clip.weights))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = build_clip(cfg.clip) if uses_clip else None
        if clip is not None and clip_path is not None:
            load_clip_weights(clip, clip_path)
            loaded[cfg.clip.weights] = clip_path
        gaze_encoder = None
        if cfg.use_gaze_encoder:
            estimator, path = build_frozen_gaze_estimator(cfg.gaze, weights)
            if path is not None:
                loaded[cfg.gaze.weights] = path
            gaze_encoder = GazeEncoder(estimator, cfg.clip.vision.width, finetune=cfg.finetune_gaze_estimator)
        agpm = AGPM(cfg.agpm) if cfg.use_agpm else None
        if not cfg.use_gaze_encoder and agpm is not None and cfg.agpm.gaze_token:
            from dataclasses import replace

            agpm = AGPM(replace(cfg.agpm, gaze_token=False))
        gie = None
        if cfg.use_gie:
            gie = GazeAwareImageEncoder(
                clip.visual,
                gi_heads=cfg.gi_heads,
                gi_query=cfg.gi_query,
                use_gi=cfg.use_gi and cfg.use_gaze_encoder,
                lora_blocks=cfg.gie_lora_blocks,
                lora_rank=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                merged_lora=merged_lora,
            )
        lre, prompts = None, None
        if cfg.use_lre:
            from gazeclip_cli.core.model.text_encoder import LanguageRefinementEncoder  # train path only

            lre = LanguageRefinementEncoder(
                clip,
                num_prompts=len(cfg.prompt_levels),
                aws=cfg.aws,
                aws_placement=cfg.aws_placement,
                aws_init=cfg.aws_init,
                lora_blocks=cfg.lre_lora_blocks,
                lora_rank=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                learnable_tokens=cfg.learnable_prompt_tokens,
            )
            prompts = prompt_sets(cfg)
        model = GazeCLIP(cfg, gaze_encoder, agpm, gie, lre, prompts)
    model.pretrained_files = loaded
    return model


def build_timm_detector(cfg: TimmConfig, weights: WeightSources | None = None, seed: int = 0) -> Detector:
    """A timm backbone with the two experts; the named pretrained backbone weights unless ``weights.pretrained`` is False.

    Random initialisation is deterministic in ``seed`` and does not touch the global RNG.
    """
    from gazeclip_cli.core.model.timm_detector import TimmDetector, build_timm_backbone

    weights = weights or WeightSources()
    loaded: dict[str, Path] = {}
    state = None
    if weights.pretrained and cfg.weights:
        path = resolve_weight(cfg.weights, weights_dir(weights.directory), weights.overrides.get(cfg.weights))
        state = read_state_dict(path)
        loaded[cfg.weights] = path
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_timm_backbone(cfg, state, source=str(loaded.get(cfg.weights, "")))
        model = TimmDetector(cfg, backbone)
    model.pretrained_files = loaded
    return model


def build_model(
    cfg: DetectorConfig, weights: WeightSources | None = None, seed: int = 0, *, merged_lora: bool = False
) -> Detector:
    """The network of any architecture family, through its builder (``merged_lora``: GazeCLIP's test path)."""
    if isinstance(cfg, TimmConfig):
        return build_timm_detector(cfg, weights, seed)
    return build_gazeclip(cfg, weights, seed, merged_lora=merged_lora)


def weight_names(cfg: DetectorConfig) -> list[str]:
    """The named weight files a config loads (none for a test config with random towers)."""
    if isinstance(cfg, TimmConfig):
        return [cfg.weights] if cfg.weights else []
    used = ((cfg.clip.weights, cfg.use_gie or cfg.use_lre), (cfg.gaze.weights, cfg.use_gaze_encoder))
    return [name for name, needed in used if name and needed]


def resolve_weight_names(names: list[str]) -> list[str]:
    """Weight names from weight names or architecture names (an architecture gives the files it loads)."""
    out: list[str] = []
    for name in names:
        if weight_spec(name) is not None:
            wanted = [name]
        else:
            try:
                wanted = weight_names(load_architecture(name))
            except ConfigError:
                raise WeightsError(
                    f"unknown weight or architecture '{name}' (weights: {', '.join(KNOWN_WEIGHTS)}, "
                    "or timm-<model>.<tag>; or an architecture name)"
                ) from None
        out += [w for w in wanted if w not in out]
    return out
