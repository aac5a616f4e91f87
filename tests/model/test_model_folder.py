"""A trained model is a folder that loads with nothing else and gives identical outputs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from gazeclip_cli.core.errors import ModelFolderError
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.clip_towers import build_clip
from gazeclip_cli.core.model.folder import WEIGHTS_FILE, load_model_folder, save_model_folder
from gazeclip_cli.core.model.loss import gazeclip_loss


def one_step(model, batch):
    images, patches, dfa, dfd = batch
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    gazeclip_loss(
        model(images, patches, attribution_labels=dfa), dfa, dfd, model.logit_scale
    ).total.backward()
    opt.step()
    model.eval()


def outputs(model, batch):
    images, patches, _, _ = batch
    with torch.no_grad():
        out = model(images, patches)
    return out.attribution_logits, out.detection_logits


def with_pretrained_clip(tiny_cfg, tmp_path):
    """The tiny config naming a CLIP weight file, and the folder holding one with random values."""
    cfg = replace(tiny_cfg, clip=replace(tiny_cfg.clip, weights="tiny-clip"))
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(5)
    save_file(build_clip(cfg.clip).state_dict(), str(weights / "tiny-clip.safetensors"))
    return cfg, weights


def test_round_trip_gives_identical_outputs(tmp_path, tiny_model, tiny_batch):
    one_step(tiny_model, tiny_batch)
    folder = save_model_folder(tiny_model, tmp_path / "model", trained_on="abc123")
    loaded = load_model_folder(folder)
    for a, b in zip(outputs(tiny_model, tiny_batch), outputs(loaded.model, tiny_batch), strict=True):
        assert torch.equal(a, b)
    assert loaded.class_names[0] == "CelebA-HQ" and len(loaded.class_names) == 11
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["trained_on"] == "abc123" and meta["preprocessing"]["image_size"] == 64
    assert meta["weight_files"] == {}  # random towers: every tensor is in the folder


def test_pretrained_towers_stay_out_of_the_folder_and_are_checked(tmp_path, tiny_cfg, tiny_batch):
    cfg, weights = with_pretrained_clip(tiny_cfg, tmp_path)
    model = build_gazeclip(cfg, WeightSources(directory=weights))
    one_step(model, tiny_batch)
    folder = save_model_folder(model, tmp_path / "model")
    stored = load_file(str(folder / WEIGHTS_FILE))
    assert not any(k.startswith("gie.visual.conv1") or k.startswith("lre.token_embedding") for k in stored)
    # the GIE's class token and position embedding train, so the folder keeps them
    assert {"gie.visual.class_embedding", "gie.visual.positional_embedding"} <= set(stored)
    assert any("lora_" in k for k in stored) and any(k.startswith("gie.injectors.") for k in stored)
    meta = json.loads((folder / "meta.json").read_text())
    assert (
        set(meta["weight_files"]) == {"tiny-clip"} and len(meta["weight_files"]["tiny-clip"]["sha256"]) == 64
    )

    loaded = load_model_folder(folder, WeightSources(directory=weights))
    for a, b in zip(outputs(model, tiny_batch), outputs(loaded.model, tiny_batch), strict=True):
        assert torch.equal(a, b)

    torch.manual_seed(6)  # a different CLIP file under the same name must not pass silently
    save_file(build_clip(cfg.clip).state_dict(), str(weights / "tiny-clip.safetensors"))
    with pytest.raises(ModelFolderError, match="SHA-256 differs"):
        load_model_folder(folder, WeightSources(directory=weights))


def test_incompatible_or_broken_folders_are_clear_errors(tmp_path, tiny_model):
    with pytest.raises(ModelFolderError, match="model folder not found"):
        load_model_folder(tmp_path / "nothing")
    folder = save_model_folder(tiny_model, tmp_path / "model")
    meta = json.loads((folder / "meta.json").read_text())
    meta["format"] = 99
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="incompatible"):
        load_model_folder(folder)
    meta["format"] = 1
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFolderError, match="unreadable"):
        load_model_folder(folder)
    (folder / "config.toml").unlink()
    with pytest.raises(ModelFolderError, match="config.toml is missing"):
        load_model_folder(folder)


def test_loading_without_the_text_tower_gives_the_same_test_path(tmp_path, tiny_model, tiny_batch):
    one_step(tiny_model, tiny_batch)
    folder = save_model_folder(tiny_model, tmp_path / "model")
    light = load_model_folder(folder, with_text=False).model
    assert light.lre is None and light.logit_scale is None
    assert sum(p.numel() for p in light.parameters()) < sum(p.numel() for p in tiny_model.parameters())
    assert not [n for n, _ in light.named_modules() if "lora_" in n]  # LoRA merged into the Linear layers
    for a, b in zip(outputs(tiny_model, tiny_batch), outputs(light, tiny_batch), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)  # W + BA merged: equal to float rounding


def test_a_folder_from_before_the_trainable_gie_embeddings_still_loads(tmp_path, tiny_cfg, tiny_batch):
    cfg, weights = with_pretrained_clip(tiny_cfg, tmp_path)
    model = build_gazeclip(cfg, WeightSources(directory=weights)).eval()  # embeddings as pretrained
    folder = save_model_folder(model, tmp_path / "model")
    stored = load_file(str(folder / WEIGHTS_FILE))
    for name in ("gie.visual.class_embedding", "gie.visual.positional_embedding"):
        del stored[name]  # what a folder written while they were frozen holds
    save_file(stored, str(folder / WEIGHTS_FILE))
    loaded = load_model_folder(folder, WeightSources(directory=weights))
    for a, b in zip(outputs(model, tiny_batch), outputs(loaded.model, tiny_batch), strict=True):
        assert torch.equal(a, b)


def test_text_free_load_merges_lora_onto_the_pretrained_tower(tmp_path, tiny_cfg, tiny_batch):
    # The folder leaves the frozen tower out: the merged weights start from the file's values.
    cfg, weights = with_pretrained_clip(tiny_cfg, tmp_path)
    model = build_gazeclip(cfg, WeightSources(directory=weights))
    one_step(model, tiny_batch)
    folder = save_model_folder(model, tmp_path / "model")
    assert not any(k.endswith("base_layer.weight") for k in load_file(str(folder / WEIGHTS_FILE)))
    light = load_model_folder(folder, WeightSources(directory=weights), with_text=False).model
    assert not [n for n, _ in light.named_modules() if "lora_" in n]
    for a, b in zip(outputs(model, tiny_batch), outputs(light, tiny_batch), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
