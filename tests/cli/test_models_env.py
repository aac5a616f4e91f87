"""`gazeclip models` (architectures from the registry, model folders found) and `gazeclip env`."""

from __future__ import annotations

import importlib.metadata
import json

import torch
from typer.testing import CliRunner

from gazeclip_cli.cli import output
from gazeclip_cli.cli.app import app
from gazeclip_cli.core.model.config import list_architectures
from gazeclip_cli.core.model.gaze_estimator import GAZE_ESTIMATORS
from tests.inference.conftest import make_model_folder

runner = CliRunner()


def _fits80(text: str) -> None:
    assert "…" not in text and max(map(len, text.splitlines())) <= 80


def test_models_lists_every_registered_architecture_and_the_folders_found(tmp_path, monkeypatch):
    root = tmp_path / "models"
    make_model_folder(root / "gazeclip")
    demo = make_model_folder(root / "runs" / "demo" / "model")
    meta = json.loads((demo / "meta.json").read_text())
    (demo / "meta.json").write_text(json.dumps({**meta, "synthetic": True}))
    old = make_model_folder(root / "old")
    (old / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    monkeypatch.chdir(tmp_path)  # models/gazeclip is then the default folder
    monkeypatch.delenv("GAZECLIP_MODEL", raising=False)
    data = json.loads(runner.invoke(app, ["models", "--format", "json"]).stdout)
    by_name = {a["name"]: a for a in data["architectures"]}
    assert list(by_name) == list_architectures()  # new registry entries appear by themselves
    assert by_name["gazeclip-vit-b-32"]["pretrained_weights"] == ["clip-vit-b-32", "eth-xgaze"]
    assert by_name["gazeclip-vit-b-32"]["summary"] == "The paper's configuration (Section IV-A)"
    assert by_name["tiny-test"]["image_size"] == 64 and by_name["tiny-test"]["pretrained_weights"] == []
    estimators = {e["name"]: e for e in data["gaze_estimators"]}
    assert list(estimators) == list(GAZE_ESTIMATORS)  # new registry entries appear by themselves
    assert [estimators[n]["weights"] for n in ("eth-xgaze", "puregaze", "l2cs-gaze360", "small-cnn")] == [
        "eth-xgaze",
        "puregaze",
        "l2cs-gaze360",
        None,
    ]
    assert (
        estimators["puregaze"]["summary"]
        == "PureGaze (Cheng et al., AAAI 2022), ResNet-50 version, trained on ETH-XGaze"
    )
    folders = {row["path"]: row for row in data["model_folders"]}
    assert set(folders) == {"models/gazeclip", "models/old", "models/runs/demo/model"}
    assert folders["models/gazeclip"]["default"] and folders["models/gazeclip"]["architecture"] == "tiny-test"
    assert folders["models/gazeclip"]["classes"] == 11 and not folders["models/gazeclip"]["synthetic"]
    assert folders["models/runs/demo/model"]["synthetic"] is True
    assert "incompatible" in folders["models/old"]["problem"]
    monkeypatch.setattr(output.out, "_width", 80)
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "synthetic demo" in table.stdout and "(default)" in table.stdout
    assert "gaze estimators (preprocess --gaze-estimator)" in table.stdout and "l2cs-gaze360" in table.stdout
    _fits80(table.stdout)


def test_weights_lists_every_registered_estimators_release(tmp_path):
    data = json.loads(
        runner.invoke(app, ["weights", "--weights-dir", str(tmp_path), "--format", "json"]).stdout
    )
    listed = {w["name"]: w for w in data["weights"]}
    released = [cls.weights_name for cls in GAZE_ESTIMATORS.values() if cls.weights_name]
    assert released == ["eth-xgaze", "puregaze", "l2cs-gaze360"]
    for name in released:
        assert not listed[name]["present"] and name in listed[name]["missing"]
    assert listed["puregaze"]["source"] == "github.com/yihuacheng/PureGaze"


def test_env_reports_versions_devices_cpu_and_weights(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "clip-vit-b-32.safetensors").write_bytes(b"\0" * 2_500_000)
    data = json.loads(runner.invoke(app, ["env", "--weights-dir", str(weights), "--format", "json"]).stdout)
    assert data["libraries"]["torch"] == importlib.metadata.version("torch")
    assert data["libraries"]["typer"] == importlib.metadata.version("typer")
    assert (
        data["cuda_available"] == torch.cuda.is_available() and data["torch_cuda_build"] == torch.version.cuda
    )
    assert len(data["cuda_devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert data["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and data["cpu_cores"] >= 1
    found = {w["name"]: w for w in data["weights"]}
    assert found["clip-vit-b-32"]["size_mb"] == 2.5 and found["clip-vit-b-32"]["path"].endswith(
        ".safetensors"
    )
    assert found["eth-xgaze"]["path"] is None
    monkeypatch.setattr(output.out, "_width", 80)
    table = runner.invoke(app, ["env", "--weights-dir", str(weights)])
    assert table.exit_code == 0 and "MISSING" in table.stdout and "2.5 MB" in table.stdout
    _fits80(table.stdout)
