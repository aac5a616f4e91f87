"""Loading real-format weight files made in the test: open_clip/OpenAI CLIP state dicts and ETH-XGaze checkpoints."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from gazeclip_cli.core.errors import WeightsError
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.clip_towers import build_clip
from gazeclip_cli.core.model.gaze_estimator import EthXGazeResNet50
from gazeclip_cli.core.weights.fetch import fetch_weight
from gazeclip_cli.core.weights.loading import load_gaze_weights, read_state_dict
from gazeclip_cli.core.weights.locate import resolve_weight


def clip_at(cfg, image_size: int, seed: int):
    torch.manual_seed(seed)
    return build_clip(replace(cfg.clip, vision=replace(cfg.clip.vision, image_size=image_size)))


@pytest.fixture
def tiny_with_clip_weights(tiny_cfg):
    return replace(tiny_cfg, clip=replace(tiny_cfg.clip, weights="tiny-clip"))


@pytest.mark.parametrize("layout", ["safetensors", "torch-module-prefix", "local-dir"])
def test_clip_state_dict_at_smaller_size_loads_with_position_embedding_resized(
    tmp_path, tiny_cfg, tiny_with_clip_weights, layout
):
    # A CLIP saved at a smaller image size (grid 3x3), like ViT-B/32 weights at 224 (7x7),
    # loads into the model at the configured size (grid 4x4; 8x8 for ViT-B/32 at 256).
    source = clip_at(tiny_cfg, image_size=48, seed=1)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    assert state["visual.positional_embedding"].shape[0] == 3 * 3 + 1
    if layout == "safetensors":
        save_file(state, str(tmp_path / "tiny-clip.safetensors"))
    elif layout == "torch-module-prefix":
        torch.save(
            {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
            tmp_path / "tiny-clip.pt",
        )
    else:
        (tmp_path / "tiny-clip").mkdir()
        (tmp_path / "tiny-clip" / "open_clip_config.json").write_text("{}")
        torch.save(state, tmp_path / "tiny-clip" / "open_clip_pytorch_model.bin")

    model = build_gazeclip(tiny_with_clip_weights, WeightSources(directory=tmp_path))
    visual = model.gie.visual
    assert visual.positional_embedding.shape[0] == 4 * 4 + 1
    assert torch.equal(
        visual.positional_embedding[0], state["visual.positional_embedding"][0]
    )  # class position kept
    assert torch.equal(visual.conv1.weight, state["visual.conv1.weight"])
    qkv = visual.transformer.resblocks[0].attn.qkv.weight
    assert torch.equal(qkv, state["visual.transformer.resblocks.0.attn.in_proj_weight"])
    assert torch.equal(model.lre.token_embedding.weight, state["token_embedding.weight"])
    # the text position embedding is CLIP's 77 tiled to t = 77 x 4
    assert torch.equal(model.lre.positional_embedding[77:154], state["positional_embedding"])
    assert "tiny-clip" in model.pretrained_files


def test_missing_clip_weights_say_what_to_put_where(tmp_path, tiny_with_clip_weights):
    with pytest.raises(WeightsError) as err:
        build_gazeclip(tiny_with_clip_weights, WeightSources(directory=tmp_path))
    message = str(err.value)
    assert "tiny-clip" in message and str(tmp_path) in message and "\n" not in message


def test_the_paper_configuration_missing_weights_names_the_fetch_command(tmp_path):
    from gazeclip_cli.core.model.config import load_architecture

    with pytest.raises(WeightsError, match="gazeclip weights fetch clip-vit-b-32"):
        build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(directory=tmp_path))


def test_corrupt_and_mismatched_weight_files_are_clear_errors(tmp_path, tiny_cfg, tiny_with_clip_weights):
    bad = tmp_path / "tiny-clip.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match=r"tiny-clip\.pt: cannot read weights"):
        build_gazeclip(tiny_with_clip_weights, WeightSources(directory=tmp_path))
    bad.unlink()
    other = build_clip(replace(tiny_cfg.clip, text=replace(tiny_cfg.clip.text, width=48)))
    save_file(other.state_dict(), str(tmp_path / "tiny-clip.safetensors"))
    with pytest.raises(WeightsError, match="does not fit the CLIP model.*wrong shape"):
        build_gazeclip(tiny_with_clip_weights, WeightSources(directory=tmp_path))


def test_eth_xgaze_official_checkpoint_format_loads(tmp_path):
    torch.manual_seed(0)
    source = EthXGazeResNet50().eval()
    official = {}
    for k, v in source.backbone.state_dict().items():
        official[f"gaze_network.module.{k}"] = v
    official["gaze_network.module.fc.weight"] = torch.randn(1000, 2048)  # unused ImageNet head in the release
    official["gaze_network.module.fc.bias"] = torch.randn(1000)
    official["gaze_fc.0.weight"] = source.head.weight.detach().clone()
    official["gaze_fc.0.bias"] = source.head.bias.detach().clone()
    path = tmp_path / "eth-xgaze" / "epoch_24_ckpt.pth.tar"
    path.parent.mkdir()
    torch.save({"model_state": official, "epoch": 24, "best_error": 4.5}, path)

    assert resolve_weight("eth-xgaze", tmp_path) == path
    target = EthXGazeResNet50().eval()
    load_gaze_weights(target, path)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pt"
    torch.save({"x": argparse.Namespace(a=1)}, path)  # an arbitrary class: unpickling it would run its code
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_state_dict(path)


def test_fetch_goes_through_open_clip_up_to_the_network(tmp_path, tiny_cfg):
    source = build_clip(tiny_cfg.clip)
    downloaded = tmp_path / "cache-file.bin"
    torch.save(source.state_dict(), downloaded)
    asked = []

    def fake_download(name, tag, cache_dir):
        asked.append((name, tag, cache_dir))
        return downloaded

    result = fetch_weight("clip-vit-b-32", tmp_path / "weights", download=fake_download)
    assert asked == [("ViT-B-32-quickgelu", "openai", tmp_path / "weights" / ".cache")]
    assert result.path == tmp_path / "weights" / "clip-vit-b-32.safetensors" and len(result.sha256) == 64
    assert set(read_state_dict(result.path)) == set(source.state_dict())

    eth = fetch_weight("eth-xgaze", tmp_path / "weights", download=fake_download)
    assert eth.path is None and "ETH-XGaze" in eth.instructions and len(asked) == 1


def test_fetch_offline_fails_with_a_clear_error(tmp_path):
    def offline(name, tag, cache_dir):
        raise WeightsError("download of ViT-B-32-quickgelu/openai failed (URLError); this needs internet.")

    with pytest.raises(WeightsError, match="needs internet"):
        fetch_weight("clip-vit-b-32", tmp_path, download=offline)


def test_safetensors_written_twice_have_the_same_bytes_and_sorted_metadata(tmp_path):
    import hashlib
    import json
    import struct

    from safetensors import safe_open

    from gazeclip_cli.core.weights.store import save_safetensors

    tensors = {"b.weight": torch.arange(6.0).view(2, 3), "a.bias": torch.tensor([1, 2], dtype=torch.int64)}
    metadata = {"zeta": "1", "alpha": "2", "mid": "3", "beta": "4", "omega": "5", "gamma": "6"}
    # safetensors' own metadata map has a random order per call: six writes would almost surely differ.
    digests = {
        hashlib.sha256(
            save_safetensors(tensors, tmp_path / f"w{i}.safetensors", metadata).read_bytes()
        ).digest()
        for i in range(6)
    }
    assert len(digests) == 1
    raw = (tmp_path / "w0.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and len(raw) == 8 + n + 6 * 4 + 2 * 8  # header, then float32 (2, 3) and int64 (2,)
    header = json.loads(raw[8 : 8 + n])
    assert list(header) == ["__metadata__", "a.bias", "b.weight"]
    assert list(header["__metadata__"]) == sorted(metadata)
    with safe_open(str(tmp_path / "w0.safetensors"), framework="pt") as fh:
        assert fh.metadata() == metadata
        assert torch.equal(fh.get_tensor("b.weight"), tensors["b.weight"])
        assert torch.equal(fh.get_tensor("a.bias"), tensors["a.bias"])
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary files are gone


def test_model_folder_weights_written_twice_have_the_same_bytes(tmp_path, tiny_model):
    import json

    from gazeclip_cli.core.model.folder import WEIGHTS_FILE, save_model_folder

    a = save_model_folder(tiny_model, tmp_path / "a", trained_on="x")
    b = save_model_folder(tiny_model, tmp_path / "b", trained_on="x")
    assert (a / WEIGHTS_FILE).read_bytes() == (b / WEIGHTS_FILE).read_bytes()
    meta_a, meta_b = (json.loads((f / "meta.json").read_text()) for f in (a, b))
    assert meta_a["weights_sha256"] == meta_b["weights_sha256"]
