"""Baselines on timm backbones: pooled backbone features -> attribution and detection experts.

Input: images (B, 3, H, H) in [0, 1]; the model applies the backbone's own mean/std.
Output: :class:`~gazeclip_cli.core.model.detector.DetectorOutput` with features (B, F),
F = the backbone's ``num_features``. timm is imported only when such a model is built.
"""

from __future__ import annotations

import torch
from torch import nn

from gazeclip_cli.core.model.config import TimmConfig
from gazeclip_cli.core.model.detector import CamLayer, Detector, ParameterGroups


class TimmDetector(Detector):
    """A timm backbone without its classifier, fine-tuned, and the two experts.

    Args:
        cfg: the configuration the backbone was built from.
        backbone: a timm model built with ``num_classes=0`` (its forward gives pooled features).
    """

    def __init__(self, cfg: TimmConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        width = int(backbone.num_features)
        self.feature_map = nn.Identity()  # the backbone's last feature map passes here (Grad-CAM's hook)
        self.attribution_expert = nn.Linear(width, cfg.num_classes) if "attribution" in cfg.experts else None
        self.detection_expert = nn.Linear(width, 2) if "detection" in cfg.experts else None
        self.logit_scale = None
        self.pretrained_files = {}
        self._nchw: bool | None = None  # whether forward_features gives (B, C, h, w); probed once
        self.register_buffer("pixel_mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    @property
    def uses_gaze(self) -> bool:
        return False

    def features(
        self,
        images: torch.Tensor,
        gaze_patches: torch.Tensor | None = None,
        gaze: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        """(B, 3, H, H) in [0, 1] -> pooled features (B, F); gaze inputs are ignored."""
        x = (images - self.pixel_mean) / self.pixel_std
        fmap = self.feature_map(self.backbone.forward_features(x))  # (B, C, h, w), or tokens (B, N, C)
        return self.backbone.forward_head(fmap, pre_logits=True), None  # (B, F)

    def parameter_groups(self) -> ParameterGroups:
        return [
            (f"backbone (timm {self.cfg.model_name}, fine-tuned)", lambda n: n.startswith("backbone.")),
            (
                "experts (attribution, detection)",
                lambda n: n.startswith(("attribution_expert.", "detection_expert.")),
            ),
        ]

    def cam_layer(self) -> CamLayer | None:
        """A ViT's patch tokens entering its last block; a CNN's last feature map.

        A ViT pools its class token (or the tokens after the last block), so, as for GazeCLIP's
        tower, the tokens the last block receives are the ones whose gradient is informative. A
        CNN's last feature map is Grad-CAM's usual layer. Other layouts (channels-last maps of
        some hierarchical transformers) have no map here.
        """
        blocks = getattr(self.backbone, "blocks", None)
        grid = getattr(getattr(self.backbone, "patch_embed", None), "grid_size", None)
        if isinstance(blocks, nn.Sequential) and grid is not None and hasattr(blocks[-1], "norm1"):
            grid_h, grid_w = (int(g) for g in grid)
            m = grid_h * grid_w

            def tokens_to_map(t: torch.Tensor) -> torch.Tensor:
                return t[0, -m:].T.reshape(-1, grid_h, grid_w)  # (1, prefix + m, C) -> (C, h, w)

            return CamLayer(blocks[-1].norm1, tokens_to_map)
        if self._map_is_nchw():
            return CamLayer(self.feature_map, lambda t: t[0])  # (1, C, h, w) -> (C, h, w)
        return None

    def _map_is_nchw(self) -> bool:
        """Whether forward_features gives (B, C, h, w): its channels equal num_features (timm's CNNs)."""
        if self._nchw is not None:
            return self._nchw
        size = self.cfg.image_size
        probe = torch.zeros(1, 3, size, size, device=self.pixel_mean.device)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            fmap = self.backbone.forward_features(probe)
        self.train(was_training)
        self._nchw = fmap.ndim == 4 and fmap.shape[1] == self.backbone.num_features
        return self._nchw


def build_timm_backbone(
    cfg: TimmConfig, state: dict[str, torch.Tensor] | None = None, source: str = ""
) -> nn.Module:
    """The timm backbone of ``cfg`` without its classifier; with ``state`` (upstream key layout) loaded.

    ``state`` goes through timm's own loader (its checkpoint filters, e.g. a ViT's position
    grid resized to ``image_size``), strictly: the classifier is kept for the load when the
    file has one and dropped after, so every other key must match. ``source`` names the file
    in errors. Nothing is downloaded: timm is given the tensors, never a location.
    """
    import timm

    from gazeclip_cli.core.errors import ConfigError, WeightsError
    from gazeclip_cli.core.model.config import timm_pretrained_cfg

    if not timm.is_model(cfg.model_name):
        raise ConfigError(f"unknown timm model '{cfg.model_name}' (see timm.list_models())")
    pretrained = timm_pretrained_cfg(cfg.model_name, cfg.pretrained_tag)
    kwargs = dict(cfg.model_args)
    if pretrained.fixed_input_size:
        kwargs["img_size"] = cfg.image_size  # ViT-like models are built for one input size
    if state is None:
        return timm.create_model(cfg.model_name, pretrained=False, num_classes=0, **kwargs)
    heads = (
        (pretrained.classifier,) if isinstance(pretrained.classifier, str) else (pretrained.classifier or ())
    )
    with_head = bool(heads) and all(f"{h}.weight" in state for h in heads)
    num_classes = int(pretrained.num_classes) if with_head else 0
    overlay = {"state_dict": dict(state), "source": "", "num_classes": num_classes}
    try:
        model = timm.create_model(
            cfg.model_name,
            pretrained=True,
            pretrained_cfg=cfg.pretrained_tag or None,
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            **kwargs,
        )
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise WeightsError(f"{source}: does not fit timm model {cfg.model_name}: {detail}") from None
    model.reset_classifier(0)
    return model
