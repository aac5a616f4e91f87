"""GazeCLIP: VPE (gaze encoder + AGPM) and GIE on the test path; LRE added on the train path.

The model receives already-built parts (see ``builder.py``). Inputs are described in
``docs/ARCHITECTURE.md``: images (B, 3, H, H) in [0, 1]; gaze patches (B, 3, 224, 224) in
[0, 1] or cached gaze angles (B, 2).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from gazeclip_cli.core.model.agpm import AGPM
from gazeclip_cli.core.model.config import GazeCLIPConfig
from gazeclip_cli.core.model.detector import CamLayer, Detector, DetectorOutput, ParameterGroups
from gazeclip_cli.core.model.gaze_encoder import GazeEncoder
from gazeclip_cli.core.model.image_encoder import GazeAwareImageEncoder

if TYPE_CHECKING:  # the text tower is imported only where one is built (train path)
    from gazeclip_cli.core.model.text_encoder import LanguageRefinementEncoder

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

GazeCLIPOutput = DetectorOutput  # the name the GazeCLIP code and its tests grew up with


class GazeCLIP(Detector):
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

    @property
    def uses_gaze(self) -> bool:
        return self.gaze_encoder is not None

    @property
    def gaze_estimator(self) -> nn.Module | None:
        return self.gaze_encoder.estimator if self.gaze_encoder is not None else None

    @property
    def uses_text(self) -> bool:
        return self.lre is not None

    def features(
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

    def attach_text(self, out: DetectorOutput, attribution_labels: torch.Tensor) -> None:
        """T_l_g of each distinct prompt set in the batch into ``out``: one text pass per set, never per sample or class."""
        out.image_sets = self.class_prompt_set[attribution_labels]  # (B,)
        out.text_sets = torch.unique(out.image_sets)  # (U,)
        out.text_features = self.encode_text(out.text_sets)

    def frozen_pretrained_keys(self) -> set[str]:
        cfg = self.cfg
        keys: set[str] = set()
        names = dict(self.named_parameters())
        state = self.state_dict()
        if cfg.clip.weights and cfg.clip.weights in self.pretrained_files:
            prefixes = []
            if self.gie is not None:
                prefixes.append("gie.visual.")
            if self.lre is not None:
                prefixes += [
                    "lre.token_embedding.",
                    "lre.transformer.",
                    "lre.ln_final.",
                    "lre.text_projection",
                ]
            for k in state:
                if (
                    k.startswith(tuple(prefixes))
                    and "lora_" not in k
                    and not (k in names and names[k].requires_grad)
                ):
                    keys.add(k)
        if cfg.gaze.weights and cfg.gaze.weights in self.pretrained_files and not cfg.finetune_gaze_estimator:
            keys |= {k for k in state if k.startswith("gaze_encoder.estimator.")}
        return keys

    def parameter_groups(self) -> ParameterGroups:
        """Parameters grouped by the paper's modules."""
        return [
            ("gaze estimator (GE, frozen)", lambda n: n.startswith("gaze_encoder.estimator.")),
            ("gaze adapter (GE)", lambda n: n.startswith("gaze_encoder.adapter.")),
            ("AGPM appearance encoder", lambda n: n.startswith("agpm.encoder.")),
            ("AGPM transformer + tokens", lambda n: n.startswith("agpm.") or n.startswith("gaze_to_agpm.")),
            ("GIE gaze injectors", lambda n: n.startswith("gie.injectors.")),
            ("GIE LoRA", lambda n: n.startswith("gie.") and "lora_" in n),
            (
                "GIE class token + position embedding",
                lambda n: n in ("gie.visual.class_embedding", "gie.visual.positional_embedding"),
            ),
            ("GIE CLIP image tower (frozen)", lambda n: n.startswith("gie.")),
            ("LRE word selectors (AWS)", lambda n: n.startswith("lre.selectors.")),
            ("LRE LoRA", lambda n: n.startswith("lre.") and "lora_" in n),
            ("LRE position embedding + LP", lambda n: n in ("lre.positional_embedding", "lre.learnable")),
            ("LRE CLIP text tower (frozen)", lambda n: n.startswith("lre.")),
            ("fusion (W_ig, W_ag)", lambda n: n.startswith("fuse_")),
            (
                "experts (attribution, detection)",
                lambda n: n.startswith(("attribution_expert.", "detection_expert.")),
            ),
            ("temperature", lambda n: n == "logit_scale"),
        ]

    def cam_layer(self) -> CamLayer | None:
        """The patch tokens entering the last GIE block, after its first LayerNorm.

        After the last block only the class token reaches the experts, so the tokens that block
        receives are the last ones whose gradient is informative (the usual choice for ViTs,
        ``blocks[-1].norm1`` in pytorch-grad-cam).
        """
        if self.gie is None:
            return None
        visual = self.gie.visual
        grid_h, grid_w = visual.grid_size
        m = grid_h * grid_w

        def to_map(t: torch.Tensor) -> torch.Tensor:
            return t[0, -m:].T.reshape(-1, grid_h, grid_w)  # (1, 1 + m, d) -> (d, h, w)

        return CamLayer(visual.transformer.resblocks[-1].ln_1, to_map)
