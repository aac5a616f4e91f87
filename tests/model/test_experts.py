"""Fig. 9: one expert alone. The loss adds exactly the active terms; a missing expert is absent, not faked."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.gazeclip import GazeCLIPOutput
from gazeclip_cli.core.model.loss import gazeclip_loss


def cross_entropy(logits: list[list[float]], labels: list[int]) -> float:
    """Mean of -log softmax(row)[label], written out."""
    total = 0.0
    for row, label in zip(logits, labels, strict=True):
        total += math.log(sum(math.exp(v) for v in row)) - row[label]
    return total / len(labels)


ATT = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
DET = [[1.0, -1.0], [0.0, 3.0]]
DFA, DFD = [0, 1], [0, 1]


def output(att, det) -> GazeCLIPOutput:
    return GazeCLIPOutput(
        attribution_logits=None if att is None else torch.tensor(att),
        detection_logits=None if det is None else torch.tensor(det),
        visual_features=torch.zeros(2, 4),
        gaze=None,
    )


@pytest.mark.parametrize(
    "att,det", [(ATT, DET), (ATT, None), (None, DET)], ids=["both", "attribution", "detection"]
)
def test_the_loss_adds_exactly_the_active_terms(att, det):
    loss = gazeclip_loss(output(att, det), torch.tensor(DFA), torch.tensor(DFD), None)
    expected_att = cross_entropy(ATT, DFA) if att is not None else None
    expected_det = cross_entropy(DET, DFD) if det is not None else None
    assert (loss.attribution is None) == (att is None) and (loss.detection is None) == (det is None)
    assert loss.total.item() == pytest.approx((expected_att or 0.0) + (expected_det or 0.0), abs=1e-6)
    if att is not None:
        assert loss.attribution.item() == pytest.approx(expected_att, abs=1e-6)
    if det is not None:
        assert loss.detection.item() == pytest.approx(expected_det, abs=1e-6)


@pytest.mark.parametrize("experts", [("attribution",), ("detection",)])
def test_one_expert_alone_builds_only_that_head_and_trains(tiny_cfg, tiny_batch, experts):
    model = build_gazeclip(replace(tiny_cfg, experts=experts), WeightSources(pretrained=False))
    assert (model.attribution_expert is not None) == ("attribution" in experts)
    assert (model.detection_expert is not None) == ("detection" in experts)
    images, patches, dfa, dfd = tiny_batch
    out = model(images, patches, attribution_labels=dfa)
    assert (out.attribution_logits is None) != (out.detection_logits is None)
    loss = gazeclip_loss(out, dfa, dfd, model.logit_scale)
    head = loss.attribution if experts == ("attribution",) else loss.detection
    assert torch.allclose(loss.total, head + loss.contrastive)
    loss.total.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_experts_must_be_known_and_not_empty():
    for bad in ([], ["detection", "attribution"], ["attribution", "segmentation"]):
        with pytest.raises(ConfigError, match="experts: one or both of"):
            load_architecture("tiny-test", experts=tuple(bad))
