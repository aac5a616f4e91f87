"""Table XI: classes with identical prompts are one text row and each other's positives, at every level."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import PAPER_CLASSES
from gazeclip_cli.core.model.loss import gazeclip_loss

# What the prompts of each level tell apart, from the label hierarchy (Fig. 11): L1 real or
# fake, L2 adds the forgery type, L3 the architecture, L4 the generator itself.
HIERARCHY = {
    (1,): lambda c: c.forgery_type == "Real",
    (1, 2): lambda c: c.forgery_type,
    (1, 2, 3): lambda c: (c.forgery_type, c.architecture),
    (1, 2, 3, 4): lambda c: c.name,
}
LABELS = [0, 1, 2, 3, 4, 6, 8, 9, 10, 3]  # the batch's classes (CelebA-HQ, DiffFace, ...), LatDiff twice


def expected_groups(levels) -> list[list[int]]:
    """Batch positions grouped by what the prompts say, first-seen order."""
    groups: dict[object, list[int]] = {}
    for i, label in enumerate(LABELS):
        groups.setdefault(HIERARCHY[levels](PAPER_CLASSES[label]), []).append(i)
    return list(groups.values())


@pytest.mark.parametrize("levels", list(HIERARCHY), ids=["L1", "L1+L2", "L1+L2+L3", "L1-L4"])
def test_identical_prompt_sets_are_one_positive(tiny_cfg, levels):
    cfg = replace(tiny_cfg, prompt_levels=levels)
    model = build_gazeclip(cfg, WeightSources(pretrained=False))
    distinct = {2: (1,), 4: (1, 2), 7: (1, 2, 3), 11: (1, 2, 3, 4)}
    assert distinct[model.prompt_tokens.shape[0]] == levels  # 2, 4, 7 and 11 distinct sets of the 11 classes
    size = cfg.clip.vision.image_size
    labels = torch.tensor(LABELS)
    b = len(LABELS)
    out = model(torch.rand(b, 3, size, size), torch.rand(b, 3, 224, 224), attribution_labels=labels)
    groups = expected_groups(levels)
    u = len(groups)
    assert out.text_features.shape[0] == u  # one text row per distinct prompt set in the batch
    by_set: dict[int, list[int]] = {}
    for i, k in enumerate(out.image_sets.tolist()):
        by_set.setdefault(k, []).append(i)
    assert sorted(by_set.values()) == sorted(groups)

    # Hand-made features: text row j is the j-th unit vector, every image is its set's text.
    # Image -> text: each image's CE is log(1 + (U - 1) e^-S). Text -> image for a set with n
    # of the B images (target 1/n on each): log(n + (B - n) e^-S). L_cmc = the mean of the two.
    # With the sets keyed by class instead, U would be the number of classes in the batch.
    position = {k: j for j, k in enumerate(out.text_sets.tolist())}
    text = torch.eye(u)
    images = text[[position[k] for k in out.image_sets.tolist()]]
    scale = 3.0
    made = replace(out, visual_features=images, text_features=text)
    loss = gazeclip_loss(made, labels, (labels > 0).long(), torch.tensor(math.log(scale))).contrastive
    i2t = math.log(1 + (u - 1) * math.exp(-scale))
    t2i = sum(math.log(len(g) + (b - len(g)) * math.exp(-scale)) for g in groups) / u
    assert loss.item() == pytest.approx((i2t + t2i) / 2, abs=1e-5)


def test_l1_gives_every_fake_class_one_text_row(tiny_cfg):
    model = build_gazeclip(replace(tiny_cfg, prompt_levels=(1,)), WeightSources(pretrained=False))
    assert model.class_prompt_set.tolist() == [0] + [1] * (len(PAPER_CLASSES) - 1)
