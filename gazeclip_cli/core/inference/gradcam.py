"""Grad-CAM: where the model looked, as the paper's Fig. 8, for any architecture with a spatial map.

The target is one attribution logit (by default the predicted class). The activations are
the model's :class:`~gazeclip_cli.core.model.detector.CamLayer`: for GazeCLIP (and the CLIP
baselines) the patch tokens entering the last GIE block, for a timm ViT those entering its
last block, for a CNN its last feature map. Per channel, the weight is the mean gradient
over the map; the map is ReLU(sum of weight x activation), upsampled bilinearly to the crop
and scaled to [0, 1].

Shapes: image (1, 3, H, H), gaze patch (1, 3, 224, 224) or None -> heatmap (H, H) float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.model.detector import Detector


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM map and what it explains."""

    heatmap: np.ndarray  # (H, H) float32 in [0, 1], aligned with the crop the model saw
    class_index: int  # the attribution logit explained
    logit: float  # its value


def grad_cam(
    model: Detector,
    image: torch.Tensor,
    gaze_patch: torch.Tensor | None = None,
    class_index: int | None = None,
) -> GradCam:
    """Grad-CAM of one attribution logit over the model's spatial map.

    Args:
        model: a model whose :meth:`~Detector.cam_layer` is not None, in eval mode.
        image: (1, 3, H, H) in [0, 1].
        gaze_patch: (1, 3, 224, 224) in [0, 1], or None for a model without gaze.
        class_index: the attribution class to explain; the predicted one when None.

    Raises:
        ConfigError: the model has no spatial map (e.g. the ``use_gie = false`` ablation).
    """
    layer = model.cam_layer()
    if layer is None:
        raise ConfigError(
            f"architecture '{model.cfg.name}' has no spatial feature map: Grad-CAM needs the GIE "
            "(use_gie = true) or a backbone with one"
        )
    captured: list[torch.Tensor] = []
    hook = layer.module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            # Frozen towers: a leaf that needs a gradient makes every activation track one.
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
            acts = captured[-1]
            (grads,) = torch.autograd.grad(logits[index], acts)
    finally:
        hook.remove()
    act_map, grad_map = layer.to_map(acts.detach()), layer.to_map(grads)  # (C, h, w) each
    weights = grad_map.mean(dim=(1, 2))  # (C,)
    cam = torch.relu(torch.einsum("c,chw->hw", weights, act_map))[None, None]  # (1, 1, h, w)
    size = image.shape[-2:]
    cam = F.interpolate(cam.float(), size=size, mode="bilinear", align_corners=False)[0, 0]  # (H, H)
    peak = float(cam.max())
    heat = (cam / peak if peak > 0 else torch.zeros_like(cam)).cpu().numpy().astype(np.float32)
    return GradCam(heatmap=heat, class_index=index, logit=float(logits[index].detach()))
