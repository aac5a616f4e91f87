"""Tiny builder functions: config (+ weight files) -> parts -> :class:`GazeCLIP`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from open_clip.tokenizer import SimpleTokenizer

from gazeclip_cli.core.model.agpm import AGPM
from gazeclip_cli.core.model.clip_towers import build_clip
from gazeclip_cli.core.model.config import GazeCLIPConfig
from gazeclip_cli.core.model.gaze_encoder import GazeEncoder
from gazeclip_cli.core.model.gaze_estimator import GazeEstimator, GazeEstimatorConfig, build_gaze_estimator
from gazeclip_cli.core.model.gazeclip import GazeCLIP
from gazeclip_cli.core.model.image_encoder import GazeAwareImageEncoder
from gazeclip_cli.core.model.prompts import class_prompts, load_templates
from gazeclip_cli.core.model.text_encoder import LanguageRefinementEncoder
from gazeclip_cli.core.weights.loading import load_clip_weights, load_gaze_weights
from gazeclip_cli.core.weights.locate import resolve_weight, weights_dir


@dataclass
class WeightSources:
    """Where pretrained weights come from. ``pretrained=False`` builds with random towers."""

    pretrained: bool = True  # load the weight files the config names (an error if one is missing)
    directory: str | Path | None = None  # weights folder (default: $GAZECLIP_WEIGHTS_DIR or models/weights)
    overrides: dict[str, str | Path] = field(default_factory=dict)  # weight name -> explicit file


def prompt_sets(cfg: GazeCLIPConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct prompt sets, (P, t) token ids (77 per prompt, concatenated), and each class's set, (x,).

    Classes whose prompts read alike (every fake class with L1 only) share one set: the text
    tower encodes it once and the contrastive loss counts them as one positive (Table XI).
    """
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


def build_gazeclip(cfg: GazeCLIPConfig, weights: WeightSources | None = None, seed: int = 0) -> GazeCLIP:
    """Build the network; load the named pretrained weights unless ``weights.pretrained`` is False.

    Random initialisation is deterministic in ``seed`` and does not touch the global RNG.
    Records ``model.pretrained_files`` (weight name -> file) for provenance and model folders.
    """
    weights = weights or WeightSources()
    directory = weights_dir(weights.directory)
    loaded: dict[str, Path] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = build_clip(cfg.clip) if (cfg.use_gie or cfg.use_lre) else None
        if clip is not None and weights.pretrained and cfg.clip.weights:
            path = resolve_weight(cfg.clip.weights, directory, weights.overrides.get(cfg.clip.weights))
            load_clip_weights(clip, path)
            loaded[cfg.clip.weights] = path
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
            )
        lre, prompts = None, None
        if cfg.use_lre:
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
