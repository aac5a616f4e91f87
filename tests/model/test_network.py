"""The GazeCLIP network on the tiny configuration: shapes, what trains, test path, gaze paths."""

from __future__ import annotations

import math

import pytest
import torch
from open_clip.model import CLIP
from open_clip.transformer import ResidualAttentionBlock

from gazeclip_cli.core.model.clip_towers import FrozenSelfAttention
from gazeclip_cli.core.model.config import list_architectures, load_architecture
from gazeclip_cli.core.model.image_encoder import GazeInjector
from gazeclip_cli.core.model.loss import contrastive_loss, gazeclip_loss

TRAINABLE_PREFIXES = (
    "gie.injectors.",
    "gie.visual.class_embedding",
    "gie.visual.positional_embedding",
    "lre.selectors.",
    "lre.positional_embedding",
    "gaze_encoder.adapter.",
    "agpm.",
    "gaze_to_agpm.",
    "fuse_ig.",
    "fuse_ag.",
    "attribution_expert.",
    "detection_expert.",
    "logit_scale",
)


def test_named_architectures_ship_inside_the_package():
    assert {"gazeclip-vit-b-32", "tiny-test"} <= set(list_architectures())


def test_test_path_shapes(tiny_model, tiny_batch, tiny_cfg):
    images, patches, _, _ = tiny_batch
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(images, patches)
    assert out.attribution_logits.shape == (4, tiny_cfg.num_classes) == (4, 11)
    assert out.detection_logits.shape == (4, 2)
    assert out.visual_features.shape == (4, tiny_cfg.clip.embed_dim)
    assert out.gaze.shape == (4, 2)
    assert out.text_features is None


def test_train_path_forward_backward(tiny_model, tiny_batch, tiny_cfg):
    images, patches, dfa, dfd = tiny_batch
    tiny_model.train()
    out = tiny_model(images, patches, attribution_labels=dfa)
    # one text row per distinct prompt set in the batch; with all four levels every class has
    # its own: classes 0, 1, 3
    assert out.text_sets.tolist() == [0, 1, 3] and out.image_sets.tolist() == [0, 1, 1, 3]
    assert out.text_features.shape == (3, tiny_cfg.clip.embed_dim)
    loss = gazeclip_loss(out, dfa, dfd, tiny_model.logit_scale)
    assert loss.contrastive is not None and torch.isfinite(loss.total)
    loss.total.backward()
    grads = {n: p.grad for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]


def test_exactly_the_intended_parameters_train(tiny_model, tiny_batch):
    trainable = [n for n, p in tiny_model.named_parameters() if p.requires_grad]
    for name in trainable:
        assert name.startswith(TRAINABLE_PREFIXES) or "lora_" in name, name
    frozen = {n: p.detach().clone() for n, p in tiny_model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("gie.visual.") for n in frozen)
    assert any(n.startswith("lre.transformer.") for n in frozen)
    assert any(n.startswith("gaze_encoder.estimator.") for n in frozen)
    buffers = {
        n: b.detach().clone() for n, b in tiny_model.named_buffers() if "running_" in n and "estimator" in n
    }
    assert buffers
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters() if p.requires_grad}

    images, patches, dfa, dfd = tiny_batch
    opt = torch.optim.Adam(
        [p for p in tiny_model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-3
    )
    tiny_model.train()
    for _ in range(2):
        opt.zero_grad()
        out = tiny_model(images, patches, attribution_labels=dfa)
        gazeclip_loss(out, dfa, dfd, tiny_model.logit_scale).total.backward()
        opt.step()
    params = dict(tiny_model.named_parameters())
    for name, value in frozen.items():
        assert params[name].grad is None, name
        assert torch.equal(params[name], value), f"frozen {name} changed"
    named_buffers = dict(tiny_model.named_buffers())
    for name, value in buffers.items():
        assert torch.equal(named_buffers[name], value), f"frozen estimator statistic {name} changed"
    changed = [n for n, v in before.items() if not torch.equal(params[n], v)]
    assert len(changed) == len(before), sorted(set(before) - set(changed))


def test_test_path_never_runs_the_text_tower(tiny_model, tiny_batch):
    calls = []
    tiny_model.lre.register_forward_hook(lambda *a: calls.append(1))
    images, patches, dfa, _ = tiny_batch
    tiny_model.eval()
    with torch.no_grad():
        tiny_model(images, patches)
    assert calls == []
    tiny_model(images, patches, attribution_labels=dfa)
    assert calls == [1]  # once per batch, for all distinct classes together


def test_cached_gaze_equals_image_path(tiny_model, tiny_batch):
    images, patches, _, _ = tiny_batch
    tiny_model.eval()
    with torch.no_grad():
        cached = tiny_model.gaze_encoder.estimate(patches)
        from_image = tiny_model(images, gaze_patches=patches)
        from_cache = tiny_model(images, gaze=cached)
    assert torch.equal(from_image.gaze, cached)
    assert torch.equal(from_image.attribution_logits, from_cache.attribution_logits)
    assert torch.equal(from_image.detection_logits, from_cache.detection_logits)


def test_gaze_injector_reduces_to_value_projection_with_one_gaze_token():
    torch.manual_seed(0)
    gi = GazeInjector(width=16, heads=4, query="cls")
    torch.nn.init.normal_(gi.w_fc.weight)  # the zero init would make the check trivial
    x = torch.randn(3, 5, 16)
    g = torch.randn(3, 1, 16)
    out = gi(x, g)
    expected_cls = x[:, 0] + gi.w_fc(gi.w_val(g[:, 0]))
    assert torch.allclose(out[:, 0], expected_cls, atol=1e-5)
    assert torch.equal(out[:, 1:], x[:, 1:])
    # with two different gaze tokens the softmax is no longer trivial
    g2 = torch.randn(3, 2, 16)
    naive = x[:, 0] + gi.w_fc(gi.w_val(g2).mean(1))
    assert not torch.allclose(gi(x, g2)[:, 0], naive, atol=1e-4)


@pytest.mark.parametrize(
    "query,changed", [("cls", slice(0, 1)), ("patch", slice(1, None)), ("all", slice(0, None))]
)
def test_gaze_injector_query_modes(query, changed):
    torch.manual_seed(0)
    gi = GazeInjector(width=8, heads=2, query=query)
    torch.nn.init.normal_(gi.w_fc.weight)
    x = torch.randn(2, 4, 8)
    out = gi(x, torch.randn(2, 1, 8))
    diff = (out - x).abs().sum(-1)  # (B, T)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[changed] = True
    assert (diff[:, mask] > 0).all() and (diff[:, ~mask] == 0).all()


def test_converted_attention_equals_open_clip_attention():
    torch.manual_seed(0)
    block = ResidualAttentionBlock(32, 4)
    x = torch.randn(2, 7, 32)
    mask = torch.full((7, 7), float("-inf")).triu_(1)
    with torch.no_grad():
        ref = block.attention(x, attn_mask=mask)
        ours = FrozenSelfAttention(block.attn)(x, attn_mask=mask)
    assert torch.allclose(ref, ours, atol=1e-5)


def test_contrastive_loss_treats_identical_prompts_as_one_positive():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    classes = torch.tensor([2, 5])
    labels = torch.tensor([2, 2, 5])
    loss = contrastive_loss(img, txt, classes, labels, torch.tensor(4.0))
    # Perfectly aligned at scale e^4: image->text is ~0 (the two class-2 images share one positive
    # text, so neither is the other's negative); text->image for class 2 has two positives with
    # target 1/2 each, whose floor is the target entropy log 2. Mean of the two directions:
    # (0 + (log 2 + 0) / 2) / 2 = log(2) / 4.
    assert abs(loss.item() - math.log(2) / 4) < 1e-3
    swapped = contrastive_loss(img, txt.flip(0), classes, labels, torch.tensor(4.0))
    assert swapped.item() > 10


def test_paper_configuration_is_the_papers():
    cfg = load_architecture("gazeclip-vit-b-32")
    v, t = cfg.clip.vision, cfg.clip.text
    assert (v.image_size, v.patch_size, v.width, v.layers) == (256, 32, 768, 12)
    assert (v.image_size // v.patch_size) ** 2 == 64  # m
    assert (t.width, t.layers, cfg.text_length) == (512, 12, 308)
    assert (cfg.agpm.token_dim, cfg.agpm.layers, cfg.agpm.grid, cfg.agpm.conv_channels[-1]) == (
        1024,
        6,
        7,
        512,
    )
    assert (cfg.gi_heads, cfg.lora_rank, cfg.lora_alpha, cfg.gie_lora_blocks, cfg.lre_lora_blocks) == (
        8,
        8,
        32,
        2,
        1,
    )
    assert cfg.num_classes == 11 and cfg.aws_placement == "before" and cfg.gaze.name == "eth-xgaze"


def test_open_clip_model_has_the_expected_parts():
    # guards the open_clip internals the towers rely on
    assert hasattr(CLIP, "encode_text")
    cfg = load_architecture("tiny-test")
    from gazeclip_cli.core.model.clip_towers import build_clip

    clip = build_clip(cfg.clip)
    assert hasattr(clip.visual, "_embeds") and hasattr(clip.visual, "ln_post")
    assert clip.transformer.resblocks[0].attn.batch_first


def test_with_one_gaze_token_every_querying_token_gets_the_same_update():
    torch.manual_seed(0)
    gi = GazeInjector(width=8, heads=2, query="all")
    torch.nn.init.normal_(gi.w_fc.weight)
    x, g = torch.randn(2, 5, 8), torch.randn(2, 1, 8)
    update = gi(x, g) - x  # (B, 1 + m, d)
    expected = gi.w_fc(gi.w_val(g[:, 0]))  # (B, d): softmax over one key is 1
    assert torch.allclose(update, expected[:, None, :].expand_as(update), atol=1e-5)


def test_contrastive_loss_equals_a_written_out_multi_positive_clip_loss():
    g = torch.Generator().manual_seed(3)
    img, txt = torch.randn(5, 3, generator=g), torch.randn(3, 3, generator=g)  # not symmetric, not unit
    text_sets, image_sets = torch.tensor([4, 7, 9]), torch.tensor([7, 4, 7, 9, 7])
    scale = 2.5

    def unit(v):
        return [x / math.sqrt(sum(y * y for y in v)) for x in v]

    ii, tt = [unit(r) for r in img.tolist()], [unit(r) for r in txt.tolist()]
    logits = [[scale * sum(a * b for a, b in zip(i, t, strict=True)) for t in tt] for i in ii]  # (B, U)
    sets, mine = text_sets.tolist(), image_sets.tolist()
    i2t = sum(
        math.log(sum(math.exp(v) for v in row)) - row[sets.index(k)]
        for row, k in zip(logits, mine, strict=True)
    )
    t2i = 0.0
    for u, k in enumerate(sets):
        column = [logits[b][u] for b in range(len(mine))]
        lse = math.log(sum(math.exp(v) for v in column))
        positives = [b for b, kb in enumerate(mine) if kb == k]
        t2i += sum(lse - column[b] for b in positives) / len(positives)
    expected = (i2t / len(mine) + t2i / len(sets)) / 2
    got = contrastive_loss(img, txt, text_sets, image_sets, torch.tensor(math.log(scale)))
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_no_text_features_no_contrastive_term_even_with_a_temperature(tiny_model, tiny_batch):
    images, patches, dfa, dfd = tiny_batch
    out = tiny_model(images, patches)  # the test path: no text features
    loss = gazeclip_loss(out, dfa, dfd, tiny_model.logit_scale)
    assert loss.contrastive is None
    assert torch.allclose(loss.total, loss.attribution + loss.detection)
