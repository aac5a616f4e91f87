"""Weight decay only on weight matrices; the temperature keeps its gradient and is clamped like CLIP's."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from gazeclip_cli.core.errors import GazeclipError
from gazeclip_cli.core.model.loss import contrastive_loss
from gazeclip_cli.core.train.optim import (
    MAX_LOGIT_SCALE,
    build_optimizer,
    clamp_temperature,
    parameter_groups,
)
from gazeclip_cli.core.train.run_config import RunConfig
from gazeclip_cli.core.train.trainer import train

NO_DECAY = (
    "logit_scale",
    "agpm.pos_embed",
    "agpm.cls_token",
    "lre.positional_embedding",
    "lre.selectors.0.diagonal",
    "gie.visual.class_embedding",
    "gie.visual.positional_embedding",
    "agpm.norm.weight",
    "agpm.norm.bias",
    "agpm.blocks.layers.0.norm1.weight",
    "agpm.encoder.stages.0.1.weight",  # BatchNorm scale
    "attribution_expert.bias",
    "gie.injectors.0.w_que.bias",
)
DECAY = (
    "attribution_expert.weight",
    "detection_expert.weight",
    "fuse_ig.weight",
    "gaze_encoder.adapter.weight",
    "gie.injectors.0.w_que.weight",
    "agpm.encoder.stages.0.0.weight",  # conv kernel
    "agpm.blocks.layers.0.linear1.weight",
    "agpm.blocks.layers.0.self_attn.in_proj_weight",
    "gie.visual.transformer.resblocks.2.attn.qkv.lora_A.default.weight",
    "lre.transformer.resblocks.1.mlp.c_fc.lora_A.default.weight",
)


def test_parameter_groups_decay_weight_matrices_only(tiny_model):
    decay, no_decay = parameter_groups(tiny_model, 1e-3)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-3, 0.0)
    ids = {id(p): n for n, p in tiny_model.named_parameters()}
    decayed = {ids[id(p)] for p in decay["params"]}
    kept = {ids[id(p)] for p in no_decay["params"]}
    assert set(NO_DECAY) <= kept and set(DECAY) <= decayed
    trainable = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert decayed | kept == trainable and not decayed & kept


def test_a_step_without_gradient_moves_only_the_decayed_parameters(tiny_model):
    optimizer = build_optimizer(tiny_model, lr=1e-2, weight_decay=1e-3)
    params = dict(tiny_model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
    for p in params.values():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)  # no loss gradient: only weight decay can move anything
    optimizer.step()
    for name in NO_DECAY:
        assert torch.equal(params[name], before[name]), name
    for name in DECAY:
        moved = params[name].detach() - before[name]
        # Adam with coupled decay, first step: gradient g = wd * p, step -lr * g / (|g| + eps), toward 0.
        g = 1e-3 * before[name]
        assert torch.allclose(moved, -1e-2 * g / (g.abs() + 1e-8), atol=1e-6), name
        assert moved.abs().max() > 1e-3, name


def test_the_contrastive_loss_keeps_the_temperature_gradient_above_100():
    img = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    txt = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    sets = torch.tensor([0, 1])
    scale = torch.tensor(math.log(150.0), requires_grad=True)  # e^scale = 150 > 100
    contrastive_loss(img, txt, sets, sets, scale).backward()
    assert scale.grad is not None and scale.grad.abs() > 0


def test_clamp_temperature_bounds_the_parameter(tiny_model):
    with torch.no_grad():
        tiny_model.logit_scale.fill_(math.log(1000.0))
    clamp_temperature(tiny_model)
    assert tiny_model.logit_scale.item() == pytest.approx(math.log(100.0))
    with torch.no_grad():
        tiny_model.logit_scale.fill_(-1.0)
    clamp_temperature(tiny_model)
    assert tiny_model.logit_scale.item() == 0.0


def test_the_trainer_clamps_the_temperature_after_each_step(tiny_cache, tmp_path):
    def hot(model):
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1000.0))

    run = RunConfig(
        architecture="tiny-test", workers=0, device="cpu", batch_size=4, epochs=1, max_steps_per_epoch=1
    )
    result = train(run, tiny_cache, tmp_path / "run", prepare_model=hot)
    from safetensors.torch import load_file

    saved = load_file(str(result.model_dir / "weights.safetensors"))["logit_scale"]
    assert saved.item() == pytest.approx(MAX_LOGIT_SCALE)

    # A checkpoint from before the two groups (one group of every parameter) is a clear error.
    ckpt_path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    groups = ckpt["optimizer"]["param_groups"]
    groups[0]["params"] = groups[0]["params"] + groups[1]["params"]
    del groups[1:]
    torch.save(ckpt, ckpt_path)
    with pytest.raises(GazeclipError, match="other parameter groups"):
        train(replace(run, epochs=2), tiny_cache, tmp_path / "run", resume=True)
