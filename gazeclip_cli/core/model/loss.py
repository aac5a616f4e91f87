"""The training loss: L = CE(attribution) + CE(detection) + L_cmc, each term only where its part exists.

L_cmc is CLIP's symmetric contrastive loss between I_v_g and T_l_g. The batch's text
features are one row per distinct prompt set (classes with identical prompts share one),
so images with one prompt set share one positive and identical prompts are never each
other's negatives: image -> text is a cross-entropy over the distinct sets; text -> image
has several positives (every image of that set), with the target spread evenly over them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gazeclip_cli.core.model.gazeclip import GazeCLIPOutput


@dataclass
class LossBreakdown:
    total: torch.Tensor
    attribution: torch.Tensor | None  # None without the attribution expert
    detection: torch.Tensor | None  # None without the detection expert
    contrastive: torch.Tensor | None  # None without the LRE


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_sets: torch.Tensor,
    image_sets: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Multi-positive CLIP loss.

    Args:
        image_features: (B, s).
        text_features: (U, s), one per distinct prompt set.
        text_sets: (U,) the prompt set of each text row, all different.
        image_sets: (B,) the prompt set of each image; every one is in ``text_sets``.
        logit_scale: log of the inverse temperature. Not clamped here, which would cut its
            gradient above 100: like CLIP, the trainer clamps the parameter after each step.
    """
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    scale = logit_scale.float().exp()
    logits = scale * img @ txt.T  # (B, U)
    positives = (image_sets[:, None] == text_sets[None, :]).float()  # (B, U), one 1 per row
    loss_i2t = F.cross_entropy(logits, positives.argmax(dim=1))
    targets_t2i = positives.T / positives.T.sum(dim=1, keepdim=True)  # (U, B), rows sum to 1
    loss_t2i = -(targets_t2i * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def gazeclip_loss(
    out: GazeCLIPOutput,
    attribution_labels: torch.Tensor,
    detection_labels: torch.Tensor,
    logit_scale: torch.Tensor | None,
) -> LossBreakdown:
    """The paper's Eq. (7) over the terms that exist: an expert's CE only with that expert, L_cmc only with an LRE."""
    l_dfa = l_dfd = l_cmc = None
    if out.attribution_logits is not None:
        l_dfa = F.cross_entropy(out.attribution_logits.float(), attribution_labels)
    if out.detection_logits is not None:
        l_dfd = F.cross_entropy(out.detection_logits.float(), detection_labels)
    if out.text_features is not None and logit_scale is not None:
        l_cmc = contrastive_loss(
            out.visual_features, out.text_features, out.text_sets, out.image_sets, logit_scale
        )
    terms = [t for t in (l_dfa, l_dfd, l_cmc) if t is not None]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return LossBreakdown(total=total, attribution=l_dfa, detection=l_dfd, contrastive=l_cmc)
