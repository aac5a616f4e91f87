"""GazeCLIP: VPE (gaze encoder + AGPM) and GIE on the test path; LRE added on the train path.

The model receives already-built parts (see ``builder.py``). Inputs are described in
``docs/ARCHITECTURE.md``: images (B, 3, H, H) in [0, 1]; gaze patches (B, 3, 224, 224) in
[0, 1] or cached gaze angles (B, 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gazeclip_cli.core.model.agpm import AGPM
from gazeclip_cli.core.model.config import GazeCLIPConfig
from gazeclip_cli.core.model.gaze_encoder import GazeEncoder
from gazeclip_cli.core.model.image_encoder import GazeAwareImageEncoder
from gazeclip_cli.core.model.text_encoder import LanguageRefinementEncoder

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class GazeCLIPOutput:
    """What one forward pass returns (tensors on the model's device)."""

    attribution_logits: torch.Tensor | None  # (B, x); None without the attribution expert
    detection_logits: torch.Tensor | None  # (B, 2); None without the detection expert
    visual_features: torch.Tensor  # I_v_g, (B, s)
    gaze: torch.Tensor | None  # (pitch, yaw) used, (B, 2); None without a gaze encoder
    text_features: torch.Tensor | None = (
        None  # T_l_g of each distinct prompt set in the batch, (U, s); train only
    )
    text_sets: torch.Tensor | None = None  # prompt-set index of each text_features row, (U,)
    image_sets: torch.Tensor | None = None  # prompt-set index of each image, (B,); its positive text


class GazeCLIP(nn.Module):
    """The whole network; parts are None where an ablation switches them off.

    Args:
        cfg: the configuration the parts were built from.
        gaze_encoder: GE, or None (``use_gaze_encoder = false``).
        agpm: AGPM, or None.
        gie: GIE, or None.
        lre: LRE, or None (then there is no contrastive loss).
        prompts: (P, t) token ids of the distinct prompt sets and (x,) each class's set (train path only).
    """

    def __init__(
        self,
        cfg: GazeCLIPConfig,
        gaze_encoder: GazeEncoder | None,
        agpm: AGPM | None,
        gie: GazeAwareImageEncoder | None,
        lre: LanguageRefinementEncoder | None,
        prompts: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        s = cfg.clip.embed_dim
        d = cfg.clip.vision.width
        a = cfg.agpm.token_dim
        self.gaze_encoder = gaze_encoder
        self.agpm = agpm
        self.gie = gie
        self.lre = lre
        self.gaze_to_agpm = (
            nn.Linear(d, a)
            if (agpm is not None and gaze_encoder is not None and cfg.agpm.gaze_token)
            else None
        )
        self.fuse_ig = nn.Linear(d, s, bias=False) if gie is not None else None  # W_ig
        self.fuse_ag = nn.Linear(a, s, bias=False) if agpm is not None else None  # W_ag
        experts = cfg.experts
        self.attribution_expert = nn.Linear(s, cfg.num_classes) if "attribution" in experts else None
        self.detection_expert = nn.Linear(s, 2) if "detection" in experts else None
        self.logit_scale = (
            nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature_init))) if lre is not None else None
        )
        if prompts is not None:
            self.register_buffer("prompt_tokens", prompts[0], persistent=False)  # (P, t)
            self.register_buffer("class_prompt_set", prompts[1], persistent=False)  # (x,)
        else:
            self.prompt_tokens = self.class_prompt_set = None
        mean, std = (CLIP_MEAN, CLIP_STD) if cfg.pixel_norm == "clip" else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def visual(
        self,
        images: torch.Tensor,
        gaze_patches: torch.Tensor | None = None,
        gaze: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The test path up to I_v_g: returns (I_v_g (B, s), gaze angles (B, 2) or None)."""
        x = (images - self.pixel_mean) / self.pixel_std
        gaze_feat = None
        if self.gaze_encoder is not None:
            gaze, gaze_feat = self.gaze_encoder(gaze_patches, gaze)  # (B, 2), I_g_f (B, d)
        else:
            gaze = None
        fused = 0
        if self.agpm is not None:
            g_tok = (
                self.gaze_to_agpm(gaze_feat) if self.gaze_to_agpm is not None else None
            )  # (B, d) -> (B, a)
            fused = fused + self.fuse_ag(self.agpm(x, g_tok))  # I_ag_g (B, a) -> (B, s)
        if self.gie is not None:
            g_tokens = gaze_feat.unsqueeze(1) if gaze_feat is not None else None  # (B, d) -> (B, 1, d)
            fused = fused + self.fuse_ig(self.gie(x, g_tokens))  # I_ig_g (B, d) -> (B, s)
        return fused, gaze

    def encode_text(self, set_indices: torch.Tensor) -> torch.Tensor:
        """T_l_g of the given prompt sets, (U,) -> (U, s). Train path only."""
        if self.lre is None or self.prompt_tokens is None:
            raise RuntimeError("this model has no language refinement encoder")
        return self.lre(self.prompt_tokens[set_indices])

    def forward(
        self,
        images: torch.Tensor,
        gaze_patches: torch.Tensor | None = None,
        gaze: torch.Tensor | None = None,
        attribution_labels: torch.Tensor | None = None,
    ) -> GazeCLIPOutput:
        """Test path when ``attribution_labels`` is None; otherwise also the text of each distinct prompt set."""
        visual, gaze = self.visual(images, gaze_patches, gaze)
        out = GazeCLIPOutput(
            attribution_logits=self.attribution_expert(visual)
            if self.attribution_expert is not None
            else None,
            detection_logits=self.detection_expert(visual) if self.detection_expert is not None else None,
            visual_features=visual,
            gaze=gaze,
        )
        if attribution_labels is not None and self.lre is not None:
            # One text pass per distinct prompt set in the batch, never one per sample or class.
            out.image_sets = self.class_prompt_set[attribution_labels]  # (B,)
            out.text_sets = torch.unique(out.image_sets)  # (U,)
            out.text_features = self.encode_text(out.text_sets)
        return out
