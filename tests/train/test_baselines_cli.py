"""A baseline through the whole CLI on a tiny cache: train one epoch, evaluate, attribute one image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.evaluate.result_folder import read_result_folder
from gazeclip_cli.core.inference.gradcam import grad_cam
from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
from gazeclip_cli.core.model.builder import WeightSources, build_model
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.folder import load_model_folder
from tests.inference.conftest import aligned_images
from tests.train.conftest import make_cache

runner = CliRunner()
CPU = ["--workers", "0", "--device", "cpu", "--batch-size", "4", "-q"]


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained_resnet(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline")
    # no cached gaze: a model without gaze must not need the angles (nor read the patches)
    cache = make_cache(root / "cache", {"train": 4, "val": 2, "test": 2}, unseen_test=2, with_gaze=False)
    _ok(
        runner.invoke(
            app,
            [
                "train",
                str(cache),
                "--out",
                str(root / "run"),
                "-a",
                "tiny-test-resnet",
                "--epochs",
                "1",
                *CPU,
            ],
        )
    )
    return cache, root / "run" / "model", root


def test_train_writes_a_baseline_model_folder(trained_resnet):
    _, model_dir, root = trained_resnet
    folder = load_model_folder(model_dir)
    assert folder.meta["family"] == "timm" and folder.meta["architecture"] == "tiny-test-resnet"
    assert folder.meta["preprocessing"]["gaze"] is None and folder.meta["preprocessing"]["image_size"] == 64
    assert type(folder.model).__name__ == "TimmDetector" and folder.model.cfg.classes[1].name == "GenA"
    metrics = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["kind"] == "epoch" and metrics[-1]["train_contrastive"] is None  # no text tower


def test_evaluate_records_what_produced_the_tables(trained_resnet):
    cache, model_dir, root = trained_resnet
    out = root / "eval"
    _ok(
        runner.invoke(
            app,
            [
                "evaluate",
                str(cache),
                "--model",
                str(model_dir),
                "--out",
                str(out),
                "--efficiency",
                "--device",
                "cpu",
            ],
        )
    )
    result = read_result_folder(out)
    prov = result.provenance
    assert prov["architecture"] == "tiny-test-resnet" and prov["family"] == "timm"
    assert prov["config"]["model_name"] == "resnet18" and prov["config"]["model_args"]["layers"] == [
        1,
        1,
        1,
        1,
    ]
    assert prov["test"]["split"] == "test" and prov["tau"] == 0.9
    assert prov["test"]["sets"] == {"Real": 2, "GenA": 2, "GenB": 2, "GenU": 2, "RealU": 2}
    assert len(prov["model"]["sha256"]) == 64 and prov["model"]["path"] == str(model_dir.resolve())
    assert result.efficiency is not None and result.efficiency["params_m"] == pytest.approx(
        sum(p.numel() for p in load_model_folder(model_dir).model.parameters()) / 1e6
    )
    assert {s.name for s in result.report.sets} == set(prov["test"]["sets"])


def test_attribute_one_image_with_the_baseline(trained_resnet, tmp_path):
    _, model_dir, _ = trained_resnet
    (image,) = aligned_images(tmp_path / "img", 1)
    html = tmp_path / "report.html"
    args = [
        "attribute",
        str(image),
        "--model",
        str(model_dir),
        "--aligned",
        "--format",
        "json",
        "--html",
        str(html),
    ]
    data = json.loads(_ok(runner.invoke(app, args)).stdout)
    (face,) = data["results"][0]["faces"]
    assert face["gaze"] is None  # no gaze estimator in this architecture
    assert face["generator"] in ("Real", "GenA", "GenB") and len(face["top"]) == 3
    assert data["provenance"]["model"]["architecture"] == "tiny-test-resnet"
    assert "timm" in data["provenance"]["libraries"]
    assert 'alt="Grad-CAM heatmap"' in html.read_text(encoding="utf-8")

    predictor = Predictor(model_dir, settings=PredictorSettings(face_mode="aligned"))
    prepared = predictor.prepare(image)
    assert not predictor.uses_gaze and prepared.faces[0].patch is None  # no gaze patch is made
    images, patches = predictor.input_tensors(prepared.faces)
    assert patches is None and images.shape == (1, 3, 64, 64)


def test_scan_a_folder_with_the_baseline(trained_resnet, tmp_path):
    _, model_dir, _ = trained_resnet
    aligned_images(tmp_path / "evidence", 3)
    out = tmp_path / "scan.jsonl"
    args = [
        "scan",
        str(tmp_path / "evidence"),
        "--out",
        str(out),
        "-m",
        str(model_dir),
        "--aligned",
        "--batch-size",
        "2",
    ]
    _ok(runner.invoke(app, args))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["gaze_pitch"] is None and 0 <= r["p_fake"] <= 1 for r in rows)


@pytest.mark.parametrize("arch", ["tiny-test-resnet", "tiny-test-vit"])
def test_gradcam_on_a_timm_backbone_is_the_gradient_weighted_map(arch):
    cfg = load_architecture(arch)
    model = build_model(cfg, WeightSources(pretrained=False), seed=3).eval()
    image = torch.rand(1, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    cam = grad_cam(model, image)
    assert cam.heatmap.shape == (cfg.image_size, cfg.image_size) and 0 <= cam.heatmap.min()
    assert cam.heatmap.max() == pytest.approx(1.0) or cam.heatmap.max() == 0
    # The same map computed without hooks: activations of the layer, their gradient, ReLU(sum w A).
    layer = model.cam_layer()
    acts = {}
    handle = layer.module.register_forward_hook(lambda _m, _i, out: acts.setdefault("a", out))
    with torch.enable_grad():
        logits = model(image.clone().requires_grad_(True)).attribution_logits[0]
        (grad,) = torch.autograd.grad(logits[cam.class_index], acts["a"])
    handle.remove()
    a, g = layer.to_map(acts["a"].detach()), layer.to_map(grad)  # (C, h, w)
    raw = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0))
    grid = {"tiny-test-resnet": 2, "tiny-test-vit": 4}[arch]  # 64 px / stride 32; 64 px / patch 16
    assert raw.shape == (grid, grid) and cam.class_index == int(logits.argmax())
    up = torch.nn.functional.interpolate(raw[None, None], size=image.shape[-2:], mode="bilinear")[0, 0]
    expected = (up / up.max()).numpy() if float(up.max()) > 0 else np.zeros_like(cam.heatmap)
    assert np.allclose(cam.heatmap, expected, atol=1e-6)


@pytest.mark.slow
def test_any_timm_backbone_by_name_trains_from_the_cli(trained_resnet, tmp_path):
    cache, _, _ = trained_resnet
    out = tmp_path / "run"
    args = ["train", str(cache), "--out", str(out), "-a", "timm:test_resnet", "--epochs", "1", *CPU]
    _ok(runner.invoke(app, [*args, "--set", 'weights=""', "--set", "image_size=32"]))
    folder = load_model_folder(out / "model")
    assert folder.model.cfg.name == "timm:test_resnet.r160_in1k" and folder.model.cfg.image_size == 32
    missing = runner.invoke(
        app, [*args[:3], str(tmp_path / "other"), *args[4:], "--weights-dir", str(tmp_path)]
    )
    assert missing.exit_code == 1
    assert "weight 'timm-test_resnet.r160_in1k' not found" in missing.stderr  # never a silent random init
