"""Grad-CAM on the gaze-aware image encoder (GIE): where the model looked, as the paper's Fig. 8.

The target is one attribution logit (by default the predicted class). The activations
are the patch tokens entering the last GIE block, the output of its first LayerNorm:
after the last block only the class token reaches the heads, so the patch tokens that
block receives are the last ones whose gradient is informative (the usual choice for
ViTs, e.g. ``blocks[-1].norm1`` in pytorch-grad-cam). Per channel, the weight is the mean
gradient over the patches; the map is ReLU(sum of weight x activation) per patch,
reshaped to the patch grid, upsampled bilinearly to the crop and scaled to [0, 1].

Shapes: image (1, 3, H, H), gaze patch (1, 3, 224, 224) -> heatmap (H, H) float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.model.gazeclip import GazeCLIP


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM map and what it explains."""

    heatmap: np.ndarray  # (H, H) float32 in [0, 1], aligned with the crop the model saw
    class_index: int  # the attribution logit explained
    logit: float  # its value


def grad_cam(
    model: GazeCLIP,
    image: torch.Tensor,
    gaze_patch: torch.Tensor | None = None,
    class_index: int | None = None,
) -> GradCam:
    """Grad-CAM of one attribution logit over the GIE's patch grid.

    Args:
        model: a GazeCLIP with an image tower (``use_gie = true``), in eval mode.
        image: (1, 3, H, H) in [0, 1].
        gaze_patch: (1, 3, 224, 224) in [0, 1], or None for a model without a gaze encoder.
        class_index: the attribution class to explain; the predicted one when None.

    Raises:
        ConfigError: the model has no GIE (the ``use_gie = false`` ablation).
    """
    if model.gie is None:
        raise ConfigError("this model has no image tower (use_gie = false): Grad-CAM needs the GIE")
    visual = model.gie.visual
    grid_h, grid_w = visual.grid_size
    captured: list[torch.Tensor] = []
    hook = visual.transformer.resblocks[-1].ln_1.register_forward_hook(
        lambda _m, _i, out: captured.append(out)
    )
    try:
        with torch.enable_grad():
            # The tower is frozen; a leaf that needs a gradient makes every activation track one.
            x = image.detach().clone().requires_grad_(True)
            logits = model(x, gaze_patch).attribution_logits
            if logits is None:
                raise ConfigError(
                    "Grad-CAM explains an attribution logit; this model has no attribution expert"
                )
            logits = logits[0]  # (1, x) -> (x,)
            index = int(logits.argmax()) if class_index is None else int(class_index)
            if not 0 <= index < logits.shape[0]:
                raise ConfigError(f"class index {index}: the model has {logits.shape[0]} attribution classes")
            acts = captured[-1]  # (1, 1 + m, d)
            (grads,) = torch.autograd.grad(logits[index], acts)
    finally:
        hook.remove()
    m = grid_h * grid_w
    tokens, grad = acts[0, -m:].detach(), grads[0, -m:]  # (1 + m, d) -> (m, d): the patch tokens
    weights = grad.mean(dim=0)  # (d,)
    cam = torch.relu(tokens @ weights).reshape(1, 1, grid_h, grid_w)  # (m,) -> (1, 1, h, w)
    size = image.shape[-2:]
    cam = F.interpolate(cam.float(), size=size, mode="bilinear", align_corners=False)[0, 0]  # (H, H)
    peak = float(cam.max())
    heat = (cam / peak if peak > 0 else torch.zeros_like(cam)).cpu().numpy().astype(np.float32)
    return GradCam(heatmap=heat, class_index=index, logit=float(logits[index].detach()))
