"""Every registered architecture through the one builder, and the baselines' configurations.

timm's registry test, here: each tiny variant (the ones a CPU runs in a second) is built,
run forward and backward, saved as a model folder, loaded, and gives the same outputs.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.config_io import from_dict
from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.model.builder import WeightSources, build_model
from gazeclip_cli.core.model.config import (
    GazeCLIPConfig,
    TimmConfig,
    list_architectures,
    load_architecture,
)
from gazeclip_cli.core.model.detector import Detector, DetectorOutput
from gazeclip_cli.core.model.folder import load_model_folder, save_model_folder
from gazeclip_cli.core.model.loss import gazeclip_loss
from gazeclip_cli.core.train.run_config import load_run_config, model_config

TINY = [a for a in list_architectures() if a.startswith("tiny-")]
# legacy_xception has no size arguments: its tiny variant is the whole 20.8 M network (~5-15 s here).
SLOW = {"tiny-test-xception"}


def _batch(cfg, n: int = 3):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n, 3, cfg.image_size, cfg.image_size, generator=g)
    patches = torch.rand(n, 3, 224, 224, generator=g) if cfg.uses_gaze else None
    dfa = torch.tensor([0, 1, 1][:n])
    return images, patches, dfa, (dfa > 0).long()


def test_every_family_and_paper_baseline_has_a_tiny_variant():
    families = {load_architecture(a).family for a in list_architectures()}
    assert families == {load_architecture(a).family for a in TINY} == {"gazeclip", "timm"}
    for name in ("clip", "resnet", "xception", "vit"):
        assert f"tiny-test-{name}" in TINY
    for name in ("clip-vit-b-32", "clip-vit-b-32-aws", "resnet-18", "xception", "vit-b-16"):
        assert name in list_architectures()


@pytest.mark.parametrize("name", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW else a for a in TINY])
def test_registered_architecture_builds_trains_saves_and_loads(name, tmp_path):
    cfg = load_architecture(name)
    model = build_model(cfg, WeightSources(pretrained=False), seed=0)
    assert isinstance(model, Detector) and model.uses_gaze == cfg.uses_gaze
    images, patches, dfa, dfd = _batch(cfg)
    model.train()
    out = model(images, patches, attribution_labels=dfa)
    assert isinstance(out, DetectorOutput)
    assert out.attribution_logits.shape == (3, cfg.num_classes) and out.detection_logits.shape == (3, 2)
    assert (out.gaze is None) != cfg.uses_gaze
    assert (out.text_features is not None) == model.uses_text
    loss = gazeclip_loss(out, dfa, dfd, model.logit_scale)
    loss.total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for n, p in trainable if n.startswith("attribution_expert."))
    assert any(float(p.grad.abs().sum()) > 0 for n, p in trainable if not n.endswith("_expert.weight"))

    model.eval()
    with torch.no_grad():
        before = model(images, patches)
    folder = save_model_folder(model, tmp_path / name)
    loaded = load_model_folder(folder).model
    assert type(loaded) is type(model) and loaded.cfg == cfg
    with torch.no_grad():
        after = loaded(images, patches)
    assert torch.equal(before.attribution_logits, after.attribution_logits)
    assert torch.equal(before.detection_logits, after.detection_logits)


def test_timm_baselines_are_the_papers_backbones_without_their_classifiers():
    expected = {
        "resnet-18": ("resnet18", 224, (0.485, 0.456, 0.406)),
        "xception": ("legacy_xception", 224, (0.5, 0.5, 0.5)),
        "vit-b-16": ("vit_base_patch16_224", 224, (0.5, 0.5, 0.5)),
    }
    for name, (model_name, size, mean) in expected.items():
        cfg = load_architecture(name)
        assert isinstance(cfg, TimmConfig) and not cfg.uses_gaze
        assert (cfg.model_name, cfg.image_size, cfg.mean) == (model_name, size, mean)
        assert cfg.weights == f"timm-{cfg.model_name}.{cfg.pretrained_tag}"


def test_clip_baselines_are_gazeclip_switches_not_new_code():
    plain, aws = load_architecture("clip-vit-b-32"), load_architecture("clip-vit-b-32-aws")
    for cfg in (plain, aws):
        assert isinstance(cfg, GazeCLIPConfig)
        assert not cfg.use_gaze_encoder and not cfg.use_agpm and cfg.use_gie and cfg.use_lre
        assert cfg.prompt_levels == (4,) and cfg.text_length == 77 and cfg.clip.weights == "clip-vit-b-32"
    assert not plain.aws and aws.aws and aws.aws_placement == "before"
    assert replace(plain, name=aws.name, aws=True) == aws  # the only difference

    tiny = load_architecture("tiny-test-clip")
    model = build_model(tiny, WeightSources(pretrained=False))
    with_aws = build_model(replace(tiny, aws=True), WeightSources(pretrained=False))
    n = sum(p.numel() for p in model.parameters())
    # AWS: one diagonal of t = 77 entries per text block, nothing else.
    assert sum(p.numel() for p in with_aws.parameters()) - n == 77 * tiny.clip.text.layers
    assert model.gaze_encoder is None and model.agpm is None and model.gie.injectors is None


def test_timm_names_any_backbone_from_timms_registry():
    cfg = load_architecture("timm:resnet18")
    # timm's default resnet18 tag and its ImageNet input, without a file
    assert (cfg.name, cfg.model_name, cfg.pretrained_tag) == ("timm:resnet18.a1_in1k", "resnet18", "a1_in1k")
    assert (
        cfg.image_size == 224 and cfg.mean == (0.485, 0.456, 0.406) and cfg.weights == "timm-resnet18.a1_in1k"
    )
    tagged = load_architecture("timm:vit_base_patch16_224.orig_in21k")
    assert tagged.pretrained_tag == "orig_in21k" and tagged.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="did you mean resnet18"):
        load_architecture("timm:resnet181")
    with pytest.raises(ConfigError, match="no pretrained tag 'nosuch'.*tv_in1k"):
        load_architecture("timm:resnet18.nosuch")
    with pytest.raises(ConfigError, match="or timm:<model name>"):
        load_architecture("no-such-architecture")


def test_timm_config_checks_its_values():
    with pytest.raises(ConfigError, match="model_args cannot set num_classes"):
        from_dict(TimmConfig, {"model_args": {"num_classes": 3}}, "x")
    with pytest.raises(ConfigError, match="three values"):
        from_dict(TimmConfig, {"mean": [0.5, 0.5]}, "x")
    with pytest.raises(ConfigError, match="unknown key 'modelname'"):
        from_dict(TimmConfig, {"modelname": "resnet18"}, "x")


def test_an_architecture_files_train_table_sets_its_own_defaults(tmp_path):
    arch = tmp_path / "mine.toml"
    arch.write_text(
        'name = "mine"\nfamily = "timm"\nmodel_name = "resnet18"\npretrained_tag = "tv_in1k"\nweights = ""\n'
        "image_size = 32\n\n[model_args]\nlayers = [1, 1, 1, 1]\n\n[train]\nlr = 3e-4\nepochs = 5\n"
    )
    run = load_run_config(None, architecture=str(arch))
    assert (run.lr, run.epochs, run.batch_size) == (3e-4, 5, 32)  # the file's, and the paper's otherwise
    file = tmp_path / "run.toml"
    file.write_text(f'architecture = "{arch}"\nepochs = 7\n')
    run = load_run_config(file)
    assert (run.lr, run.epochs) == (3e-4, 7)  # the run config wins over the architecture
    assert load_run_config(file, epochs=2).epochs == 2  # the command line over both
    cfg = model_config(run)
    assert isinstance(cfg, TimmConfig) and cfg.model_args == {"layers": [1, 1, 1, 1]}
    arch.write_text(arch.read_text() + "lrr = 1\n")
    with pytest.raises(ConfigError, match=r"\[train\]: unknown key 'lrr' \(did you mean 'lr'\?\)"):
        load_run_config(None, architecture=str(arch))


def test_a_timm_backbone_trains_with_run_overrides_of_its_fields():
    run = load_run_config(None, architecture="timm:test_resnet")
    run = replace(run, model={"weights": "", "image_size": 32, "model_args": {"drop_path_rate": 0.0}})
    cfg = model_config(
        run,
        classes=[{"name": "Real", "forgery_type": "Real", "architecture": "Real"}] * 1
        + [{"name": "G", "forgery_type": "EFS", "architecture": "GAN"}],
    )
    assert cfg.image_size == 32 and cfg.weights == "" and cfg.num_classes == 2
    model = build_model(cfg)  # weights = "": random, and said so in the config
    assert model.pretrained_files == {}
    out = model(torch.rand(2, 3, 32, 32))
    assert out.attribution_logits.shape == (2, 2)


def test_model_info_of_resnet_18_beside_the_papers_row():
    result = CliRunner().invoke(app, ["model-info", "-a", "resnet-18", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # torchvision's published ResNet-18: 11,689,512 parameters, of which the ImageNet classifier
    # is 512 x 1000 + 1000; the experts add 512 x 11 + 11 and 512 x 2 + 2.
    assert data["parameters"]["total"] == 11_689_512 - 513_000 + 5_643 + 1_026
    # torchvision documents 1.81 G multiply-adds at 224; the experts add 6,656 MACs.
    assert abs(data["macs_per_image"]["test_path"] / 1e9 - 1.81) < 0.01
    assert data["paper_table_vii"] == {
        "method": "ResNet [59]",
        "table": "VII",
        "params_m": 11.19,
        "gflops": 1.82,
        "seconds_per_image": 0.004,
    }
    table = CliRunner().invoke(app, ["model-info", "-a", "resnet-18"])
    assert "ours beside the paper's Table VII (ResNet [59])" in table.stdout
