"""FLOPs per image: every module counted, equal to a hand-written count for the tiny configuration."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gazeclip_cli.core.model.info import count_flops, group_of, model_info
from tests.flops_analytic import TEXT_GROUPS, tiny_macs

TRAIN_ONLY = (
    "LRE word selectors (AWS)",
    "LRE LoRA",
    "LRE position embedding + LP",
    "LRE CLIP text tower (frozen)",
    "temperature",
)


def test_tiny_flops_equal_the_hand_count_per_module(tiny_model, tiny_cfg):
    info = model_info(tiny_model)
    expected = tiny_macs(tiny_cfg)
    test_groups = {k: v for k, v in expected.items() if k not in TEXT_GROUPS}
    got_test = {m.module: m.test_flops for m in info.modules if m.test_flops}
    assert got_test == {k: 2 * v for k, v in test_groups.items()}
    got_text = {m.module: m.train_flops - m.test_flops for m in info.modules if m.train_flops != m.test_flops}
    assert got_text == {k: 2 * expected[k] for k in TEXT_GROUPS}
    assert info.test_path_flops == 2 * sum(test_groups.values())
    assert info.train_path_flops == 2 * sum(expected.values())
    assert info.text_flops_per_prompt_set == 2 * sum(expected[k] for k in TEXT_GROUPS)
    macs = info.as_dict()["macs_per_image"]
    assert macs["test_path"] == sum(test_groups.values()) and macs["train_path"] == sum(expected.values())


# Embeddings added to the tokens: no multiply-add to count.
ADDED_ONLY = ("GIE class token + position embedding",)


def test_every_module_on_the_test_path_has_flops(tiny_model):
    info = model_info(tiny_model)
    on_test_path = [m for m in info.modules if m.total and m.module not in TRAIN_ONLY + ADDED_ONLY]
    assert {m.module for m in on_test_path} >= {"AGPM transformer + tokens", "GIE gaze injectors", "GIE LoRA"}
    assert all(m.test_flops > 0 for m in on_test_path), [m.module for m in on_test_path if not m.test_flops]
    assert sum(m.test_flops for m in info.modules) == info.test_path_flops


def test_the_count_is_the_same_with_and_without_the_fused_fast_path(tiny_model, tiny_batch):
    images, patches, _, _ = tiny_batch
    tiny_model.train()
    with torch.enable_grad():  # training mode: nn.TransformerEncoderLayer runs unfused
        unfused = count_flops(tiny_model, images[:1], patches[:1])
    tiny_model.eval()
    with torch.no_grad():  # eval + no_grad: the fused path, which the counter must not miss
        fused = count_flops(tiny_model, images[:1], patches[:1])
    assert fused == unfused == model_info(tiny_model).test_path_flops
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


def test_attention_on_the_cpu_is_counted():
    q = torch.rand(1, 2, 10, 8)  # (B, heads, T, head width)
    # Q K^T and A V: 2 x (2 heads x 10 x 10 x 8) multiply-adds, 2 FLOPs each
    assert count_flops(F.scaled_dot_product_attention, q, q, q) == 2 * 2 * (2 * 10 * 10 * 8)


def test_as_dict_is_the_json_model_info_prints(tiny_model):
    info = model_info(tiny_model)
    data = info.as_dict()
    assert list(data) == [
        "architecture",
        "parameters",
        "flops_per_image",
        "macs_per_image",
        "paper_table_vii",
    ]
    assert data["architecture"] == "tiny-test"
    params, flops, macs = data["parameters"], data["flops_per_image"], data["macs_per_image"]
    assert (params["total"], params["trainable"]) == (info.total, info.trainable)
    assert params["frozen"] == sum(p.numel() for p in tiny_model.parameters() if not p.requires_grad)
    rows = [(m.module, m.total, m.trainable, m.frozen) for m in info.modules]
    assert [(r["module"], r["total"], r["trainable"], r["frozen"]) for r in params["modules"]] == rows
    assert flops["convention"] == "2 x multiply-accumulate (MAC)"
    paths = ("test_path", "train_path", "text_per_prompt_set")
    counts = (info.test_path_flops, info.train_path_flops, info.text_flops_per_prompt_set)
    assert [flops[k] for k in paths] == list(counts)
    assert [macs[k] for k in paths] == [c // 2 for c in counts] and all(
        isinstance(macs[k], int) for k in paths
    )
    per_module = [(m.module, m.test_flops, m.train_flops) for m in info.modules]
    assert [(r["module"], r["test_path"], r["train_path"]) for r in flops["modules"]] == per_module
    assert data["paper_table_vii"] == {
        "method": "GazeCLIP (Ours)",
        "table": "VII",
        "params_m": 204.40,
        "gflops": 17.65,
        "seconds_per_image": 0.192,
    }


def test_count_flops_passes_keyword_arguments_and_names_unmatched_parameters():
    x, w = torch.rand(3, 4), torch.rand(5, 4)
    assert count_flops(F.linear, x, weight=w) == 2 * 3 * 4 * 5
    assert group_of("not_a_paper_module.weight", [("experts", lambda n: n.startswith("expert."))]) == "other"
