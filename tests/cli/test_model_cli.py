"""`gazeclip model-info`, `gazeclip weights` and the CLI's error boundary, through CliRunner."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.info import model_info
from tests.flops_analytic import TEXT_GROUPS, tiny_macs

runner = CliRunner()


def test_model_info_json_matches_the_model(tiny_model):
    result = runner.invoke(app, ["model-info", "-a", "tiny-test", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    params = data["parameters"]
    assert params["total"] == sum(p.numel() for p in tiny_model.parameters())
    assert params["trainable"] == sum(p.numel() for p in tiny_model.parameters() if p.requires_grad)
    assert sum(m["total"] for m in params["modules"]) == params["total"]
    flops, macs = data["flops_per_image"], data["macs_per_image"]
    expected = tiny_macs(load_architecture("tiny-test"))
    text = sum(expected[k] for k in TEXT_GROUPS)
    assert (macs["test_path"], macs["train_path"]) == (sum(expected.values()) - text, sum(expected.values()))
    assert (flops["test_path"], flops["train_path"]) == (2 * macs["test_path"], 2 * macs["train_path"])
    per_module = {m["module"]: m["test_path"] for m in flops["modules"]}
    assert per_module["AGPM transformer + tokens"] == 2 * expected["AGPM transformer + tokens"]
    assert data["paper_table_vii"]["params_m"] == 204.40


def test_model_info_table():
    result = runner.invoke(app, ["model-info", "-a", "tiny-test"])
    assert result.exit_code == 0
    assert "GIE gaze injectors" in result.stdout and "Table VII" in result.stdout
    assert "test GFLOPs" in result.stdout and "test GMACs" in result.stdout


def test_unknown_architecture_is_one_line_and_exit_1():
    result = runner.invoke(app, ["model-info", "-a", "no-such-arch"])
    assert result.exit_code == 1
    assert "unknown architecture 'no-such-arch'" in result.stderr
    assert "Traceback" not in result.output


def test_debug_env_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("GAZECLIP_DEBUG", "1")
    result = runner.invoke(app, ["model-info", "-a", "no-such-arch"])
    assert result.exit_code == 1 and result.exception is not None
    assert type(result.exception).__name__ == "ConfigError"


def test_weights_status_missing_then_present(tmp_path):
    result = runner.invoke(app, ["weights", "--weights-dir", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)["weights"]}
    assert not rows["clip-vit-b-32"]["present"] and "weights fetch" in rows["clip-vit-b-32"]["missing"]
    save_file({"x": torch.zeros(3)}, str(tmp_path / "clip-vit-b-32.safetensors"))
    rows = {
        r["name"]: r
        for r in json.loads(
            runner.invoke(app, ["weights", "--weights-dir", str(tmp_path), "--format", "json"]).stdout
        )["weights"]
    }
    assert rows["clip-vit-b-32"]["present"] and len(rows["clip-vit-b-32"]["sha256"]) == 64
    assert not rows["eth-xgaze"]["present"]


def test_weights_lists_every_gaze_estimator_with_where_to_get_it(tmp_path):
    result = runner.invoke(app, ["weights", "--weights-dir", str(tmp_path), "--format", "json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)["weights"]}
    assert {"eth-xgaze", "puregaze", "l2cs-gaze360"} <= set(rows)
    assert rows["puregaze"]["source"] == "github.com/yihuacheng/PureGaze"
    assert "L2CSNet_gaze360.pkl" in rows["l2cs-gaze360"]["missing"]
    assert str(tmp_path / "l2cs-gaze360") in rows["l2cs-gaze360"]["missing"]
    # Upstream's Google Drive folder holds the MPIIGaze folds too: the Gaze360 file is picked by name.
    (tmp_path / "l2cs-gaze360").mkdir()
    for name in ("L2CSNet_gaze360.pkl", "fold0.pkl"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "l2cs-gaze360" / name)
    result = runner.invoke(app, ["weights", "--weights-dir", str(tmp_path), "--format", "json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)["weights"]}
    assert rows["l2cs-gaze360"]["path"] == str(tmp_path / "l2cs-gaze360" / "L2CSNet_gaze360.pkl")
    fetch = runner.invoke(app, ["weights", "fetch", "puregaze", "--weights-dir", str(tmp_path)])
    assert fetch.exit_code == 0 and f"put it at {tmp_path / 'puregaze.pt'}" in fetch.stdout.replace("\n", "")


@pytest.mark.slow
def test_paper_configuration_builds_on_cpu_and_model_info_reports_its_breakdown():
    model = build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False))
    info = model_info(model)
    assert info.total == sum(p.numel() for p in model.parameters())
    groups = {m.module: m for m in info.modules}
    assert groups["GIE CLIP image tower (frozen)"].trainable == 0
    assert groups["gaze estimator (GE, frozen)"].total == 23_512_130  # ResNet-50 trunk + Linear(2048, 2)
    assert groups["GIE gaze injectors"].total == 12 * 4 * (768 * 768 + 768)
    assert groups["GIE LoRA"].total == 2 * 8 * 16 * 768
    assert groups["LRE word selectors (AWS)"].total == 12 * 308
    # AGPM: 6 blocks over 51 tokens at a = 1024 (qkv, attention, out, MLP 4a), the 49 token
    # projections 512 -> 1024 and the gaze token 768 -> 1024; 2 FLOPs per multiply-add.
    a, n = 1024, 51
    agpm_macs = 6 * (12 * a * a * n + 2 * n * n * a) + 49 * 512 * a + 768 * a
    assert groups["AGPM transformer + tokens"].test_flops == 2 * agpm_macs
    # GIE tower: the 32 x 32 patch embedding of 64 patches and 12 blocks over 65 tokens at d = 768
    d, m = 768, 65
    assert groups["GIE CLIP image tower (frozen)"].test_flops == 2 * (
        64 * d * 3 * 32 * 32 + 12 * (12 * d * d * m + 2 * m * m * d)
    )
    result = runner.invoke(app, ["model-info", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["parameters"]["total"] == info.total
