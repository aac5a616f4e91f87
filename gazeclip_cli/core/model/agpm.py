"""AGPM: appearance encoder (stacked convs) + appearance-gaze transformer, pooled at the class token.

Input: images (B, 3, H, H), gaze token (B, a) or None. Output: I_ag_g (B, a).
"""

from __future__ import annotations

import torch
from torch import nn

from gazeclip_cli.core.model.config import AGPMConfig


def _conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    # One stride-2 conv per stage: the appearance encoder only has to reach 512 x 7 x 7; a second
    # full-resolution conv per stage would cost as much compute as the whole ResNet-50 gaze estimator.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class AppearanceEncoder(nn.Module):
    """Stride-2 conv stages then adaptive pooling: (B, 3, H, H) -> (B, c, h, w) = (B, 512, 7, 7)."""

    def __init__(self, channels: tuple[int, ...], grid: int) -> None:
        super().__init__()
        stages, c_in = [], 3
        for c_out in channels:
            stages.append(_conv_stage(c_in, c_out))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(grid)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(images))


class AGPM(nn.Module):
    """Appearance-gaze perception module.

    Tokens are [cls || h*w appearance tokens || gaze token] (n + 2), plus a learnable
    position embedding, through E pre-norm transformer blocks; the output is the class token.

    Args:
        cfg: sizes (c from the last conv stage, h = w = grid, a = token_dim, E = layers).
    """

    def __init__(self, cfg: AGPMConfig) -> None:
        super().__init__()
        a = cfg.token_dim
        self.encoder = AppearanceEncoder(cfg.conv_channels, cfg.grid)
        self.proj = nn.Linear(cfg.conv_channels[-1], a)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, a))
        self.gaze_token = cfg.gaze_token
        n_tokens = cfg.grid * cfg.grid + 1 + (1 if cfg.gaze_token else 0)
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, a) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=a,
            nhead=cfg.heads,
            dim_feedforward=int(a * cfg.mlp_ratio),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers=cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(a)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, images: torch.Tensor, gaze_token: torch.Tensor | None) -> torch.Tensor:
        fmap = self.encoder(images)  # (B, 3, H, H) -> (B, c, h, w)
        tokens = self.proj(fmap.flatten(2).transpose(1, 2))  # (B, c, h*w) -> (B, h*w, a)
        parts = [self.cls_token.expand(tokens.shape[0], -1, -1), tokens]
        if self.gaze_token:
            if gaze_token is None:
                raise ValueError("this AGPM was built with a gaze token; pass the gaze token")
            parts.append(gaze_token.unsqueeze(1))  # (B, a) -> (B, 1, a)
        x = torch.cat(parts, dim=1) + self.pos_embed  # (B, n + 2, a)
        x = self.blocks(x)
        return self.norm(x[:, 0])  # (B, n + 2, a) -> (B, a)
