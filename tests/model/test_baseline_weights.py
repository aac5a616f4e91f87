"""The baselines' pretrained weights: files in the upstream layouts with random values, the missing-file
error, model folders that do not need the backbone file again, and `weights fetch` up to the network.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import timm
import torch
from safetensors.torch import save_file

from gazeclip_cli.core.errors import WeightsError
from gazeclip_cli.core.model.builder import WeightSources, build_model, resolve_weight_names
from gazeclip_cli.core.model.clip_towers import build_clip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.folder import load_model_folder, save_model_folder
from gazeclip_cli.core.weights.fetch import fetch_weight
from gazeclip_cli.core.weights.loading import read_state_dict

# tiny variant -> the classifier keys of its timm model's upstream files
TIMM_TINY = {"tiny-test-resnet": ("fc",), "tiny-test-vit": ("head",), "tiny-test-xception": ("fc",)}


def upstream_state(cfg, seed: int = 0, **size) -> dict[str, torch.Tensor]:
    """What timm's published file for this model holds: the full model, ImageNet classifier included.

    Built by timm at its own default input size (a ViT file has 224's 14 x 14 position grid).
    """
    torch.manual_seed(seed)
    model = timm.create_model(cfg.model_name, pretrained=False, **cfg.model_args, **size)
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_var"):
            state[k] = torch.rand_like(v) + 0.5  # a variance is positive
        else:
            state[k] = torch.randn_like(v) if v.is_floating_point() else v.clone()
    return state


def _named(cfg, name="timm-test.tag"):
    return replace(cfg, weights=name)


@pytest.mark.parametrize(
    "arch",
    [pytest.param(a, marks=pytest.mark.slow) if a == "tiny-test-xception" else a for a in TIMM_TINY],
)
def test_timm_file_in_the_upstream_layout_loads_into_the_backbone(arch, tmp_path):
    cfg = _named(load_architecture(arch))
    state = upstream_state(cfg)
    save_file(state, str(tmp_path / "timm-test.tag.safetensors"))
    model = build_model(cfg, WeightSources(directory=tmp_path))
    own = model.backbone.state_dict()
    heads = TIMM_TINY[arch]
    assert not any(k.startswith(tuple(f"{h}." for h in heads)) for k in own)  # the classifier is gone
    for key, value in state.items():
        if key.startswith(tuple(f"{h}." for h in heads)):
            continue
        if key == "pos_embed":  # a ViT's 14 x 14 grid resized to the 4 x 4 of a 64-pixel input
            assert value.shape[1] == 1 + 14 * 14 and own[key].shape[1] == 1 + 4 * 4
            assert torch.equal(own[key][:, 0], value[:, 0])  # the class token's position is kept
            continue
        assert torch.equal(own[key], value), key
    assert model.pretrained_files == {"timm-test.tag": tmp_path / "timm-test.tag.safetensors"}


def test_headless_and_torch_files_load_and_misfits_are_clear_errors(tmp_path):
    cfg = _named(load_architecture("tiny-test-resnet"))
    state = upstream_state(cfg, seed=3)
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}
    torch.save({"state_dict": headless, "epoch": 90}, tmp_path / "timm-test.tag.pth")
    model = build_model(cfg, WeightSources(directory=tmp_path))
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])

    broken = dict(headless)
    del broken["layer1.0.conv1.weight"]
    save_file(broken, str(tmp_path / "broken.safetensors"))
    sources = WeightSources(overrides={"timm-test.tag": tmp_path / "broken.safetensors"})
    with pytest.raises(
        WeightsError, match=r"broken.safetensors: does not fit timm model resnet18.*layer1.0.conv1"
    ):
        build_model(cfg, sources)
    other = upstream_state(load_architecture("tiny-test-vit"))
    save_file(other, str(tmp_path / "vit.safetensors"))
    with pytest.raises(WeightsError, match="vit.safetensors: does not fit timm model resnet18"):
        build_model(cfg, WeightSources(overrides={"timm-test.tag": tmp_path / "vit.safetensors"}))


@pytest.mark.parametrize("arch", ["resnet-18", "xception", "vit-b-16", "clip-vit-b-32"])
def test_missing_baseline_weights_name_the_file_and_the_fetch_command(arch, tmp_path):
    cfg = load_architecture(arch)
    with pytest.raises(WeightsError) as err:
        build_model(cfg, WeightSources(directory=tmp_path))
    message = str(err.value)
    (name,) = resolve_weight_names([arch])
    assert f"weight '{name}' not found" in message and str(tmp_path / name) in message
    assert f"gazeclip weights fetch {name}" in message and "\n" not in message


def test_a_fine_tuned_backbone_folder_loads_without_the_pretrained_file(tmp_path):
    cfg = _named(load_architecture("tiny-test-resnet"))
    weights = tmp_path / "weights"
    weights.mkdir()
    save_file(upstream_state(cfg), str(weights / "timm-test.tag.safetensors"))
    model = build_model(cfg, WeightSources(directory=weights)).eval()
    folder = save_model_folder(model, tmp_path / "model")
    (weights / "timm-test.tag.safetensors").unlink()  # an analyst's machine has only the model folder
    loaded = load_model_folder(folder, WeightSources(directory=weights))
    assert loaded.meta["needs_weight_files"] == [] and "timm-test.tag" in loaded.meta["weight_files"]
    x = torch.rand(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        assert torch.equal(model(x).attribution_logits, loaded.model(x).attribution_logits)


def test_clip_baseline_loads_open_clip_weights_and_its_folder_needs_them(tmp_path):
    cfg = load_architecture("tiny-test-clip")
    cfg = replace(cfg, clip=replace(cfg.clip, weights="tiny-clip"))
    torch.manual_seed(2)
    state = build_clip(cfg.clip).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "tiny-clip.safetensors"))
    model = build_model(cfg, WeightSources(directory=tmp_path)).eval()
    assert torch.equal(model.gie.visual.conv1.weight, state["visual.conv1.weight"])
    folder = save_model_folder(model, tmp_path / "model")
    loaded = load_model_folder(folder, WeightSources(directory=tmp_path))
    assert loaded.meta["needs_weight_files"] == ["tiny-clip"]
    (tmp_path / "tiny-clip.safetensors").unlink()
    with pytest.raises(WeightsError, match="weight 'tiny-clip' not found"):
        load_model_folder(folder, WeightSources(directory=tmp_path))


def test_architecture_names_resolve_to_the_weights_they_load():
    assert resolve_weight_names(["resnet-18"]) == ["timm-resnet18.tv_in1k"]
    assert resolve_weight_names(["gazeclip-vit-b-32", "clip-vit-b-32-aws"]) == ["clip-vit-b-32", "eth-xgaze"]
    assert resolve_weight_names(["timm:efficientnet_b0"]) == ["timm-efficientnet_b0.ra_in1k"]
    assert resolve_weight_names(["timm-convnext_tiny.fb_in1k", "tiny-test"]) == ["timm-convnext_tiny.fb_in1k"]
    with pytest.raises(WeightsError, match="unknown weight or architecture 'resnet-19'"):
        resolve_weight_names(["resnet-19"])


def _offline_hub(monkeypatch, served: dict[str, dict[str, torch.Tensor]], asked: list[str]):
    """timm's two download functions, answering from ``served`` (the network boundary)."""
    import timm.models._builder as builder

    def from_hf(hub_id, *args, **kwargs):
        asked.append(f"hf:{hub_id}")
        return served[hub_id]

    def from_url(url, *args, **kwargs):
        asked.append(f"url:{url}")
        return served[url]

    monkeypatch.setattr(builder, "load_state_dict_from_hf", from_hf)
    monkeypatch.setattr(builder, "load_state_dict_from_url", from_url)


def test_fetch_goes_through_timm_up_to_the_network(tmp_path, monkeypatch):
    cfg = load_architecture("resnet-18")
    served_state = upstream_state(cfg, seed=5)
    asked: list[str] = []
    _offline_hub(monkeypatch, {"timm/resnet18.tv_in1k": served_state}, asked)
    result = fetch_weight("timm-resnet18.tv_in1k", tmp_path)
    assert asked == ["hf:timm/resnet18.tv_in1k"]  # timm's own source for this tag, through timm
    assert result.path == tmp_path / "timm-resnet18.tv_in1k.safetensors" and len(result.sha256) == 64
    stored = read_state_dict(result.path)
    assert set(stored) == set(served_state) and torch.equal(stored["fc.weight"], served_state["fc.weight"])
    model = build_model(cfg, WeightSources(directory=tmp_path))  # what was stored is what the baseline loads
    assert torch.equal(model.backbone.layer4[1].conv2.weight, served_state["layer4.1.conv2.weight"])


def test_fetch_offline_through_timm_is_a_clear_error(tmp_path, monkeypatch):
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    with pytest.raises(
        WeightsError, match=r"download of timm resnet18.tv_in1k failed \(ConnectionError.*needs internet"
    ):
        fetch_weight("timm-resnet18.tv_in1k", tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.slow
@pytest.mark.parametrize("arch, head", [("resnet-18", "fc"), ("xception", "fc"), ("vit-b-16", "head")])
def test_paper_size_baselines_load_files_of_timms_published_layout(arch, head, tmp_path):
    cfg = load_architecture(arch)
    state = upstream_state(cfg, seed=7)
    save_file(state, str(tmp_path / f"{cfg.weights}.safetensors"))
    model = build_model(cfg, WeightSources(directory=tmp_path))
    own = model.backbone.state_dict()
    assert set(own) == set(state) - {f"{head}.weight", f"{head}.bias"}  # every key but the classifier
    assert all(torch.equal(own[k], state[k]) for k in own)
