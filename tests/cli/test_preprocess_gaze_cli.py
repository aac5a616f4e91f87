"""`gazeclip preprocess --gaze-estimator`: the frozen estimator's (pitch, yaw) lands in the cache."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.demo.synthetic import generate_sample
from gazeclip_cli.core.model.gaze_estimator import SmallGazeCNN

runner = CliRunner()


def test_cached_gaze_is_the_estimators_output_on_the_stored_patch(tmp_path):
    images = tmp_path / "faces"
    images.mkdir()
    for i in range(2):
        render = generate_sample("RealStudio", seed=3, index=i, split="train")
        Image.fromarray(render.image).save(images / f"face{i}.png")
    torch.manual_seed(0)
    estimator = SmallGazeCNN().eval()
    save_file(estimator.state_dict(), str(tmp_path / "est.safetensors"))

    out = tmp_path / "cache"
    result = runner.invoke(
        app,
        [
            "preprocess",
            str(images),
            "--out",
            str(out),
            "--aligned",
            "--gaze-estimator",
            "small-cnn",
            "--gaze-weights",
            str(tmp_path / "est.safetensors"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "preprocessed.csv", encoding="utf-8")))
    assert len(rows) == 2 and all(r["gaze_pitch"] and r["gaze_yaw"] for r in rows)
    patch = np.asarray(Image.open(out / rows[0]["patch_path"]).convert("RGB"))
    with torch.no_grad():
        expected = estimator(torch.from_numpy(patch.copy()).permute(2, 0, 1)[None].float() / 255)[0]
    assert abs(float(rows[0]["gaze_pitch"]) - expected[0].item()) < 1e-4
    assert abs(float(rows[0]["gaze_yaw"]) - expected[1].item()) < 1e-4


@pytest.mark.parametrize("name", ["eth-xgaze", "puregaze", "l2cs-gaze360"])
def test_missing_estimator_weights_is_one_line(tmp_path, name):
    (tmp_path / "faces").mkdir()
    result = runner.invoke(
        app,
        [
            "preprocess",
            str(tmp_path / "faces"),
            "--out",
            str(tmp_path / "c"),
            "--gaze-estimator",
            name,
            "--weights-dir",
            str(tmp_path / "w"),
        ],
    )
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert f"weight '{name}' not found; put it at {tmp_path / 'w' / name}" in result.stderr
    assert not (tmp_path / "c").exists()  # refused before any work
