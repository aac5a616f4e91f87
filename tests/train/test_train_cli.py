"""`gazeclip train` through the CLI, and a 2-process torchrun run on the CPU with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.data.cache import CacheDataset, read_cache
from gazeclip_cli.core.evaluate.predictions import evaluate_rows, predict_dataset
from gazeclip_cli.core.model.folder import load_model_folder

runner = CliRunner()
ARGS = ["--architecture", "tiny-test", "--workers", "0", "--device", "cpu", "--batch-size", "4", "-q"]


def test_train_cli_writes_a_model_and_accepts_ablation_overrides(tiny_cache, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny_cache),
            "--out",
            str(out),
            "--epochs",
            "1",
            *ARGS,
            "--set",
            "use_gi=false",
            "--set",
            "agpm.layers=2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "model folder" in result.stdout
    model = load_model_folder(out / "model").model
    assert model.gie.injectors is None and len(model.agpm.blocks.layers) == 2
    again = runner.invoke(app, ["train", str(tiny_cache), "--out", str(out), "--epochs", "1", *ARGS])
    assert again.exit_code == 1 and "--resume" in again.stderr


def test_bad_set_value_is_one_line(tiny_cache, tmp_path):
    result = runner.invoke(
        app, ["train", str(tiny_cache), "--out", str(tmp_path / "r"), *ARGS, "--set", "use_gii=false"]
    )
    assert result.exit_code == 1 and "did you mean 'use_gi'" in result.stderr


@pytest.mark.slow
def test_two_process_torchrun_metrics_equal_one_process(tiny_cache, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "gazeclip_cli",
        "train",
        str(tiny_cache),
        "--out",
        str(out),
        "--epochs",
        "1",
        *ARGS,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 1  # only rank 0 writes
    logged = epochs[0]
    # the same model evaluated by one process gives the same validation metrics
    model = load_model_folder(out / "model").model
    rows = read_cache(tiny_cache).split("val")
    single = evaluate_rows(rows, *predict_dataset(model, CacheDataset(rows, 64), model.pixel_mean.device, 4))
    assert single.averages() and {f"val_{k}" for k in single.averages()} == {
        k for k in logged if k.startswith("val_")
    }
    for key, value in single.averages().items():
        assert logged[f"val_{key}"] == pytest.approx(value, abs=1e-6), key
