"""GE: the frozen gaze estimator plus the trainable gaze adapter Linear(2, d).

Input: a normalised face patch (B, 3, 224, 224) in [0, 1], or a cached (pitch, yaw)
(B, 2) from the same estimator. Output: the gaze angles (B, 2) and I_g_f (B, d).
"""

from __future__ import annotations

import torch
from torch import nn

from gazeclip_cli.core.model.gaze_estimator import GazeEstimator


class GazeEncoder(nn.Module):
    """Gaze estimator (frozen unless ``finetune``) and gaze adapter.

    Args:
        estimator: any :class:`GazeEstimator`.
        width: d, the gaze forgery feature width.
        finetune: let the estimator train too (Table XIII ablation).
    """

    def __init__(self, estimator: GazeEstimator, width: int, finetune: bool = False) -> None:
        super().__init__()
        self.estimator = estimator
        self.finetune = finetune
        if not finetune:
            for p in estimator.parameters():
                p.requires_grad_(False)
        self.adapter = nn.Linear(2, width)

    def train(self, mode: bool = True) -> GazeEncoder:
        super().train(mode)
        if not self.finetune:
            self.estimator.eval()  # frozen: BatchNorm statistics must not move
        return self

    def estimate(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) in [0, 1] -> (B, 2) (pitch, yaw)."""
        if self.finetune:
            return self.estimator(patches)
        with torch.no_grad():
            return self.estimator(patches)

    def forward(self, patches: torch.Tensor | None = None, gaze: torch.Tensor | None = None):
        if self.finetune:
            # Cached angles come from the preprocessing estimator, not this one, and would leave
            # it without a gradient (an error under DDP): a fine-tuned estimator sees the patches.
            if patches is None:
                raise ValueError("a fine-tuned gaze estimator needs the gaze patches, not cached angles")
            gaze = self.estimate(patches)
        elif gaze is None:
            if patches is None:
                raise ValueError("give either gaze patches or cached gaze angles")
            gaze = self.estimate(patches)
        return gaze, self.adapter(gaze.to(self.adapter.weight.dtype))  # (B, 2), (B, d)
