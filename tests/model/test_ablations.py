"""Every ablation switch changes the module structure as the paper's tables describe."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.loss import gazeclip_loss


def build(cfg):
    return build_gazeclip(cfg, WeightSources(pretrained=False), seed=0)


def n_trainable(model, contains: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and contains in n)


def run(model, cfg):
    size = cfg.clip.vision.image_size
    images, patches = torch.rand(2, 3, size, size), torch.rand(2, 3, 224, 224)
    dfa = torch.tensor([0, 2])
    out = model(images, patches, attribution_labels=dfa)
    loss = gazeclip_loss(out, dfa, (dfa > 0).long(), model.logit_scale)
    loss.total.backward()
    return out, loss


def test_without_agpm(tiny_cfg):
    cfg = replace(tiny_cfg, use_agpm=False)
    m = build(cfg)
    assert m.agpm is None and m.fuse_ag is None and m.gaze_to_agpm is None
    assert not any(n.startswith("agpm.") for n, _ in m.named_parameters())
    run(m, cfg)


def test_without_gaze_encoder_removes_every_gaze_input(tiny_cfg):
    cfg = replace(tiny_cfg, use_gaze_encoder=False)
    m = build(cfg)
    assert m.gaze_encoder is None and m.gie.injectors is None and m.gaze_to_agpm is None
    full = build(tiny_cfg)
    # AGPM tokens: cls + h*w (+ gaze): one position fewer without gaze
    assert m.agpm.pos_embed.shape[1] == full.agpm.pos_embed.shape[1] - 1
    out, _ = run(m, cfg)
    assert out.gaze is None


def test_without_gie(tiny_cfg):
    cfg = replace(tiny_cfg, use_gie=False)
    m = build(cfg)
    assert m.gie is None and m.fuse_ig is None
    run(m, cfg)


def test_without_lre_has_no_text_and_no_contrastive_loss(tiny_cfg):
    cfg = replace(tiny_cfg, use_lre=False)
    m = build(cfg)
    assert m.lre is None and m.logit_scale is None
    out, loss = run(m, cfg)
    assert out.text_features is None and loss.contrastive is None


def test_without_gi(tiny_cfg):
    m = build(replace(tiny_cfg, use_gi=False))
    assert m.gie.injectors is None and m.gaze_encoder is not None and m.gaze_to_agpm is not None


def test_agpm_without_gaze_token(tiny_cfg):
    cfg = replace(tiny_cfg, agpm=replace(tiny_cfg.agpm, gaze_token=False))
    m = build(cfg)
    assert m.gaze_to_agpm is None and m.gie.injectors is not None
    run(m, cfg)


def test_without_aws(tiny_cfg):
    m = build(replace(tiny_cfg, aws=False))
    assert m.lre.selectors is None
    assert n_trainable(build(tiny_cfg), "selectors") == tiny_cfg.clip.text.layers * tiny_cfg.text_length


@pytest.mark.parametrize("placement", ["before", "between", "after"])
def test_aws_placement_changes_the_text_features(tiny_cfg, placement):
    torch.manual_seed(0)
    tokens = torch.zeros(1, dtype=torch.long)
    ref = build(replace(tiny_cfg, aws=False)).encode_text(tokens)
    m = build(replace(tiny_cfg, aws_placement=placement))
    assert m.lre.aws_placement == placement
    assert not torch.allclose(m.encode_text(tokens), ref)


def test_aws_init_ones_is_the_identity(tiny_cfg):
    tokens = torch.arange(3)
    ref = build(replace(tiny_cfg, aws=False)).encode_text(tokens)
    ones = build(replace(tiny_cfg, aws_init="ones")).encode_text(tokens)
    assert torch.allclose(ones, ref, atol=1e-5)


@pytest.mark.parametrize("query", ["cls", "patch", "all"])
def test_gi_query(tiny_cfg, query):
    m = build(replace(tiny_cfg, gi_query=query))
    assert all(gi.query == query for gi in m.gie.injectors)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_gie_lora_count_changes_trainable_parameters_as_expected(tiny_cfg, k):
    cfg = replace(tiny_cfg, gie_lora_blocks=k)
    m = build(cfg)
    d, r = cfg.clip.vision.width, cfg.lora_rank
    hidden = int(d * cfg.clip.vision.mlp_ratio)
    # per block: qkv r(d + 3d), out_proj r(d + d), c_fc r(d + hidden), c_proj r(hidden + d)
    per_block = r * (4 * d + 2 * d + (d + hidden) + (hidden + d))
    tokens = (cfg.clip.vision.image_size // cfg.clip.vision.patch_size) ** 2 + 1
    embeddings = d + tokens * d  # the class token and the position embedding train too
    assert n_trainable(m, "gie.visual") == k * per_block + embeddings
    assert m.gie.lora_blocks == list(range(cfg.clip.vision.layers - k, cfg.clip.vision.layers))


@pytest.mark.parametrize("k", [1, 2])
def test_lre_lora_count(tiny_cfg, k):
    cfg = replace(tiny_cfg, lre_lora_blocks=k)
    s, r = cfg.clip.text.width, cfg.lora_rank
    per_block = r * (4 * s + 2 * s + 2 * (s + 4 * s))
    assert n_trainable(build(cfg), "lre.transformer") == k * per_block


@pytest.mark.parametrize("levels", [(1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)])
def test_prompt_levels_set_the_text_length(tiny_cfg, levels):
    cfg = replace(tiny_cfg, prompt_levels=levels)
    m = build(cfg)
    t = 77 * len(levels)
    assert m.lre.positional_embedding.shape[0] == t and m.prompt_tokens.shape[1] == t
    assert m.encode_text(torch.tensor([0, 1])).shape == (2, cfg.clip.embed_dim)


def test_learnable_prompt_tokens(tiny_cfg):
    cfg = replace(tiny_cfg, learnable_prompt_tokens=4)
    m = build(cfg)
    assert m.lre.learnable.shape == (4, cfg.clip.text.width) and m.lre.learnable.requires_grad
    run(m, cfg)
    assert m.lre.learnable.grad is not None and m.lre.learnable.grad.abs().sum() > 0


def test_gaze_estimator_choice(tiny_cfg):
    from gazeclip_cli.core.model.gaze_estimator import EthXGazeResNet50

    m = build(replace(tiny_cfg, gaze=replace(tiny_cfg.gaze, name="eth-xgaze")))
    assert isinstance(m.gaze_encoder.estimator, EthXGazeResNet50)


def test_finetuned_gaze_estimator_trains(tiny_cfg):
    m = build(replace(tiny_cfg, finetune_gaze_estimator=True))
    assert all(p.requires_grad for p in m.gaze_encoder.estimator.parameters())


def test_invalid_switches_are_config_errors():
    with pytest.raises(ConfigError, match="aws_placement"):
        load_architecture("tiny-test", aws_placement="inside")
    with pytest.raises(ConfigError, match="use_agpm"):
        load_architecture("tiny-test", use_agpm=False, use_gie=False)


def test_unknown_key_suggests_the_near_miss(tmp_path):
    path = tmp_path / "arch.toml"
    path.write_text('name = "x"\ngi_heds = 4\n')
    with pytest.raises(ConfigError, match="did you mean 'gi_heads'"):
        load_architecture(path)
