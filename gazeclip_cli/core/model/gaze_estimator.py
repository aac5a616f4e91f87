"""Frozen gaze estimators behind one interface: a normalised face patch -> (pitch, yaw).

Every estimator takes a (B, 3, 224, 224) float patch in [0, 1], the output of the
ETH-XGaze data normalisation, applies its own input normalisation (ImageNet mean/std
for ETH-XGaze) and returns (B, 2) gaze angles (pitch, yaw) in radians.

Estimators are registered by name in ``GAZE_ESTIMATORS`` so the choice of estimator
(the paper's Table V) is a config value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH_SIZE = 224


@dataclass(frozen=True)
class GazeEstimatorConfig:
    """Which frozen gaze estimator the gaze encoder uses."""

    name: str = "eth-xgaze"  # key of GAZE_ESTIMATORS
    weights: str = "eth-xgaze"  # weight-file name resolved by gazeclip_cli.core.weights ("" = none needed)


class GazeEstimator(nn.Module):
    """Interface: (B, 3, 224, 224) patch in [0, 1] -> (B, 2) (pitch, yaw) in radians."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, patch: torch.Tensor) -> torch.Tensor:
        return (patch - self.mean) / self.std

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.predict(self.normalise(patch))

    def predict(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must define predict()")


class EthXGazeResNet50(GazeEstimator):
    """The ETH-XGaze baseline: ResNet-50 features (2048) -> Linear(2048, 2).

    Parameter names follow torchvision's ResNet-50 (``backbone.*``) and ``head.*``;
    :func:`gazeclip_cli.core.weights.gaze.load_eth_xgaze_state` maps the official
    checkpoint (``model_state`` with ``gaze_network.module.*`` and ``gaze_fc.0.*``) onto them.
    """

    feature_dim = 2048

    def __init__(self) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        self.backbone = torchvision.models.resnet50(weights=None)
        self.backbone.fc = nn.Identity()  # (B, 2048) pooled features
        self.head = nn.Linear(self.feature_dim, 2)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, 3, 224, 224) -> (B, 2048) -> (B, 2)


class SmallGazeCNN(GazeEstimator):
    """A small convolutional gaze regressor with the same interface.

    Used by the tiny test architecture and by the synthetic demo, which fits it on
    renders whose gaze is known (see ``gazeclip_cli.core.demo``).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, width * 2, width * 4, width * 4):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, 2)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, 3, 224, 224) -> (B, 4w) -> (B, 2)


GAZE_ESTIMATORS: dict[str, Callable[[], GazeEstimator]] = {
    "eth-xgaze": EthXGazeResNet50,
    "small-cnn": SmallGazeCNN,
}


def build_gaze_estimator(cfg: GazeEstimatorConfig) -> GazeEstimator:
    """Build (untrained, in eval mode) the estimator a config names; weights are loaded separately."""
    from gazeclip_cli.core.errors import ConfigError

    if cfg.name not in GAZE_ESTIMATORS:
        raise ConfigError(
            f"unknown gaze estimator '{cfg.name}' (known: {', '.join(sorted(GAZE_ESTIMATORS))})"
        )
    return GAZE_ESTIMATORS[cfg.name]().eval()
