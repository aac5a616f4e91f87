"""The interface every architecture implements: features -> two experts (the paper's Section IV-B rule).

Trainer, evaluate, predictor, Grad-CAM, model folders and model-info see only :class:`Detector`;
GazeCLIP and the baselines differ in how they turn images (and gaze) into one feature vector.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class DetectorOutput:
    """What one forward pass returns (tensors on the model's device)."""

    attribution_logits: torch.Tensor | None  # (B, x); None without the attribution expert (Fig. 9)
    detection_logits: torch.Tensor | None  # (B, 2); None without the detection expert
    visual_features: torch.Tensor  # the features both experts read, (B, F); I_v_g for GazeCLIP
    gaze: torch.Tensor | None  # (pitch, yaw) used, (B, 2); None for a model without gaze
    text_features: torch.Tensor | None = (
        None  # T_l_g of each distinct prompt set in the batch, (U, s); train only
    )
    text_sets: torch.Tensor | None = None  # prompt-set index of each text_features row, (U,)
    image_sets: torch.Tensor | None = None  # prompt-set index of each image, (B,): its positive text


@dataclass(frozen=True)
class CamLayer:
    """Where Grad-CAM looks: a module whose forward output is captured, and how to read it as a map.

    ``to_map`` turns the captured output of one image, or its gradient (same shape), into a
    (C, h, w) channel map on the image's spatial grid.
    """

    module: nn.Module
    to_map: Callable[[torch.Tensor], torch.Tensor]


ParameterGroups = list[tuple[str, Callable[[str], bool]]]


class Detector(nn.Module, metaclass=abc.ABCMeta):
    """Base of every architecture: ``features`` then an attribution and a detection expert.

    Subclasses set ``cfg``, ``attribution_expert`` (F -> x) and ``detection_expert`` (F -> 2)
    and implement :meth:`features`. Inputs: images (B, 3, H, H) in [0, 1] (each model applies
    its own normalisation); gaze patches (B, 3, 224, 224) or angles (B, 2) only where
    :attr:`uses_gaze`.
    """

    cfg: object
    attribution_expert: nn.Linear | None  # None for a model trained without it (the paper's Fig. 9)
    detection_expert: nn.Linear | None
    logit_scale: nn.Parameter | None  # contrastive temperature (a text tower), else None
    pretrained_files: dict[str, Path]  # weight name -> file the pretrained tensors came from

    @property
    @abc.abstractmethod
    def uses_gaze(self) -> bool:
        """Whether the model reads gaze patches or angles (the predictor prepares them only then)."""

    @property
    def gaze_estimator(self) -> nn.Module | None:
        """The (B, 3, 224, 224) -> (B, 2) estimator the model runs, or None (cached angles must come from it)."""
        return None

    @property
    def experts(self) -> tuple[str, ...]:
        """The experts the model has: ("attribution", "detection"), or one of them alone."""
        heads = (("attribution", self.attribution_expert), ("detection", self.detection_expert))
        return tuple(name for name, module in heads if module is not None)

    @property
    def uses_text(self) -> bool:
        """Whether the train path encodes class prompts (a contrastive loss term)."""
        return False

    @abc.abstractmethod
    def features(
        self,
        images: torch.Tensor,
        gaze_patches: torch.Tensor | None = None,
        gaze: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, H, H) -> (features (B, F), gaze angles (B, 2) or None)."""

    def attach_text(self, out: DetectorOutput, attribution_labels: torch.Tensor) -> None:
        """Fill ``out``'s text features for the batch's labels (train path); only where :attr:`uses_text`."""
        raise RuntimeError(f"{type(self).__name__} has no text tower")

    def frozen_pretrained_keys(self) -> set[str]:
        """State-dict names of frozen tensors that come unchanged from named weight files.

        A model folder leaves them out and records the files' SHA-256 instead.
        """
        return set()

    @abc.abstractmethod
    def parameter_groups(self) -> ParameterGroups:
        """(label, predicate on a parameter name) pairs for model-info; the first match wins."""

    def cam_layer(self) -> CamLayer | None:
        """Where Grad-CAM looks, or None when the model has no spatial map to explain."""
        return None

    def forward(
        self,
        images: torch.Tensor,
        gaze_patches: torch.Tensor | None = None,
        gaze: torch.Tensor | None = None,
        attribution_labels: torch.Tensor | None = None,
    ) -> DetectorOutput:
        """Test path when ``attribution_labels`` is None; otherwise also the text of each distinct prompt set."""
        visual, gaze = self.features(images, gaze_patches, gaze)  # (B, F), (B, 2) or None
        out = DetectorOutput(
            attribution_logits=self.attribution_expert(visual)
            if self.attribution_expert is not None
            else None,
            detection_logits=self.detection_expert(visual) if self.detection_expert is not None else None,
            visual_features=visual,
            gaze=gaze,
        )
        if attribution_labels is not None and self.uses_text:
            self.attach_text(out, attribution_labels)
        return out
