"""Frozen gaze estimators behind one interface: a normalised face patch -> (pitch, yaw) in radians.

Registered by name in ``GAZE_ESTIMATORS`` (the paper's Table V is a config value); each
estimator's input, checkpoint layout and output convention are in docs/DATA.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
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
    """Interface: (B, 3, 224, 224) RGB patch in [0, 1] -> (B, 2) (pitch, yaw) in radians.

    The patch is the ETH-XGaze-normalised face every estimator sees; :meth:`normalise` turns
    it into what the upstream network was trained on (size, channel order, mean/std), and
    :meth:`predict` maps that to ETH-XGaze's (pitch, yaw) convention.
    """

    name: ClassVar[str] = ""  # key in GAZE_ESTIMATORS
    weights_name: ClassVar[str] = ""  # weight name of the released checkpoint ("" = none released)
    input_size: ClassVar[int | None] = None  # side the upstream network reads (resized to); None: as given
    bgr: ClassVar[bool] = False  # the upstream network reads OpenCV's BGR channel order

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, patch: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) RGB in [0, 1] -> (B, 3, S, S) as the upstream network reads it."""
        x = patch
        size = self.input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            # Upstream resizes its uint8 face image bilinearly (PIL); the same kernel in float.
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.bgr:
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean) / self.std

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.predict(self.normalise(patch))

    def predict(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must define predict()")

    @classmethod
    def from_release(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This module's state dict from its released checkpoint's (a state dict of ours passes unchanged)."""
        return state


class EthXGazeResNet50(GazeEstimator):
    """The ETH-XGaze baseline: ResNet-50 features (2048) -> Linear(2048, 2), RGB, ImageNet mean/std.

    Parameter names follow torchvision's ResNet-50 (``backbone.*``) and ``head.*``;
    :meth:`from_release` maps the official checkpoint (``model_state`` with
    ``gaze_network.module.*`` and ``gaze_fc.0.*``) onto them.
    """

    name = "eth-xgaze"
    weights_name = "eth-xgaze"
    feature_dim = 2048

    def __init__(self) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        self.backbone = torchvision.models.resnet50(weights=None)
        self.backbone.fc = nn.Identity()  # (B, 2048) pooled features
        self.head = nn.Linear(self.feature_dim, 2)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, 3, 224, 224) -> (B, 2048) -> (B, 2)

    @classmethod
    def from_release(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``gaze_network.[module.]<resnet>`` -> ``backbone.*``, ``gaze_fc.0.*`` -> ``head.*``.

        The release's unused ImageNet ``fc`` of the ResNet is dropped.
        """
        if not any(k.removeprefix("module.").startswith(("gaze_network.", "gaze_fc.")) for k in state):
            return state
        out = {}
        for key, value in state.items():
            k = key.removeprefix("module.")
            if k.startswith("gaze_network."):
                k = "backbone." + k.removeprefix("gaze_network.").removeprefix("module.")
                if k.startswith("backbone.fc."):
                    continue
            elif k.startswith("gaze_fc.0."):
                k = "head." + k.removeprefix("gaze_fc.0.")
            out[k] = value
        return out


class PureGazeResNet50(GazeEstimator):
    """PureGaze (Cheng et al., AAAI 2022), ResNet-50 version, trained on ETH-XGaze.

    BGR input in [0, 1] with no mean/std (its reader: ``cv2.imread`` then ``ToTensor``),
    224 x 224, ETH-XGaze's (pitch, yaw) in radians. Module names are the release's
    (``feature.*`` a ResNet-50 trunk, ``gazeEs.fc`` Linear(2048, 2)); the release's image
    reconstruction decoder (``deconv.*``, training only) is dropped on load.
    """

    name = "puregaze"
    weights_name = "puregaze"
    bgr = True
    feature_dim = 2048

    def __init__(self) -> None:
        super().__init__((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.feature = torchvision.models.resnet50(weights=None)
        self.feature.fc = nn.Identity()  # trunk + global average pool: (B, 2048)
        self.gazeEs = nn.ModuleDict({"fc": nn.Linear(self.feature_dim, 2)})

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.gazeEs["fc"](self.feature(x))  # (B, 3, 224, 224) -> (B, 2048) -> (B, 2)

    @classmethod
    def from_release(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in state.items() if not k.startswith("deconv.")}


class L2CSNetGaze360(GazeEstimator):
    """L2CS-Net (Abdelrahman et al., 2022), ResNet-50, trained on Gaze360.

    RGB face at 448 x 448 with ImageNet mean/std; two heads of 90 bins of 4 degrees, each
    read as the softmax expectation ``4 * E[bin] - 180`` degrees (upstream's formula).
    ``fc_yaw_gaze`` gives the yaw, ``fc_pitch_gaze`` the pitch, in the sign convention of
    ETH-XGaze; returned as (pitch, yaw) radians. Module names are the release's; its unused
    ``fc_finetune`` layer is dropped on load.
    """

    name = "l2cs-gaze360"
    weights_name = "l2cs-gaze360"
    input_size = 448
    feature_dim = 2048
    bins = 90
    bin_width_deg = 4.0
    first_bin_deg = -180.0

    def __init__(self) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        trunk = torchvision.models.resnet50(weights=None)
        # The release names the trunk's modules at the top level, as torchvision does.
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            trunk.layer1,
            trunk.layer2,
            trunk.layer3,
            trunk.layer4,
        )
        self.avgpool = trunk.avgpool
        self.fc_yaw_gaze = nn.Linear(self.feature_dim, self.bins)
        self.fc_pitch_gaze = nn.Linear(self.feature_dim, self.bins)
        self.register_buffer("bin_index", torch.arange(self.bins, dtype=torch.float32), persistent=False)

    def angle_rad(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, bins) logits -> (B,) radians: the softmax expectation of the bin index, in degrees, converted."""
        # Elementwise in float32: under bf16 autocast a matmul would round E[bin] to 1/4 bin (1 degree).
        expected = (logits.float().softmax(dim=1) * self.bin_index).sum(dim=1)  # (B,)
        return torch.deg2rad(expected * self.bin_width_deg + self.first_bin_deg)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 3, 448, 448) -> (B, 64, 112, 112)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # -> (B, 2048, 14, 14)
        features = torch.flatten(self.avgpool(x), 1)  # -> (B, 2048)
        pitch = self.angle_rad(self.fc_pitch_gaze(features))
        yaw = self.angle_rad(self.fc_yaw_gaze(features))
        return torch.stack([pitch, yaw], dim=1)  # (B, 2)

    @classmethod
    def from_release(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in state.items() if not k.startswith("fc_finetune.")}


class SmallGazeCNN(GazeEstimator):
    """A small convolutional gaze regressor, without released weights (tests and the demo).

    Used by the tiny test architecture and by the synthetic demo, which fits it on
    renders whose gaze is known (see ``gazeclip_cli.core.demo``).
    """

    name = "small-cnn"

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


GAZE_ESTIMATORS: dict[str, type[GazeEstimator]] = {
    cls.name: cls for cls in (EthXGazeResNet50, PureGazeResNet50, L2CSNetGaze360, SmallGazeCNN)
}


def release_weights_owner(weights: str) -> str | None:
    """The estimator whose released checkpoint the weight name ``weights`` is, or None."""
    return next(
        (n for n, cls in GAZE_ESTIMATORS.items() if cls.weights_name and cls.weights_name == weights), None
    )


def _check_known(name: str) -> type[GazeEstimator]:
    from gazeclip_cli.core.errors import ConfigError

    if name not in GAZE_ESTIMATORS:
        raise ConfigError(f"unknown gaze estimator '{name}' (known: {', '.join(sorted(GAZE_ESTIMATORS))})")
    return GAZE_ESTIMATORS[name]


def estimator_summary(name: str) -> str:
    """What a registered estimator is, in a line: the first line of its class's docstring."""
    return (_check_known(name).__doc__ or name).strip().splitlines()[0].rstrip(".")


def estimator_config(name: str) -> GazeEstimatorConfig:
    """The config of estimator ``name`` with its released weights (its own name where none is released)."""
    return GazeEstimatorConfig(name=name, weights=_check_known(name).weights_name or name)


def build_gaze_estimator(cfg: GazeEstimatorConfig) -> GazeEstimator:
    """Build (untrained, in eval mode) the estimator a config names; weights are loaded separately."""
    return _check_known(cfg.name)().eval()
