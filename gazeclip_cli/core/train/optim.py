"""The optimiser: Adam with weight decay on weight matrices only, and CLIP's clamp of the temperature.

Which parameters decay and why: docs/DECISIONS.md ("Weight decay and the temperature").
"""

from __future__ import annotations

import math

import torch

from gazeclip_cli.core.model.gazeclip import GazeCLIP

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's bound on the inverse temperature
# Trainable tensors that are embeddings or scales, not weight matrices: decay would pull them to 0.
NO_DECAY_NAMES = (
    "logit_scale",
    "positional_embedding",
    "pos_embed",
    "cls_token",
    "class_embedding",
    "learnable",
)


def decays(name: str, param: torch.Tensor) -> bool:
    """Weight matrices and conv kernels decay; biases, norms, AWS diagonals, embeddings, tokens and the temperature do not."""
    return param.ndim >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters in two Adam groups: with ``weight_decay`` and without."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if decays(name, p) else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """The paper's Adam (coupled weight decay, as it says "Adam"), decaying weight matrices only."""
    return torch.optim.Adam(parameter_groups(model, weight_decay), lr=lr)


@torch.no_grad()
def clamp_temperature(model: GazeCLIP) -> None:
    """Keep the learnable log inverse temperature in [0, ln 100] (CLIP clamps the parameter, after each step)."""
    if model.logit_scale is not None:
        model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
