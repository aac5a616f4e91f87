"""A model folder records its training cache's preprocessing; attribute, scan and evaluate prepare faces from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.data.cache import CacheSettings, PreprocessSettings, read_cache, settings_of_model
from gazeclip_cli.core.data.gaze_normalization import CameraIntrinsics, NormalisationSettings
from gazeclip_cli.core.data.manifest import ManifestRow, write_manifest
from gazeclip_cli.core.data.preprocess import preprocess
from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.evaluate.runner import evaluate_model
from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
from gazeclip_cli.core.train.run_config import RunConfig
from gazeclip_cli.core.train.trainer import train

from .conftest import astronaut_path, grace_hopper_path

runner = CliRunner()
# Non-default on every setting that changes a detected face's pixels.
SETTINGS = PreprocessSettings(
    crop_margin=0.4,
    camera=CameraIntrinsics(fx=300.0, fy=310.0, cx=120.0, cy=132.0),
    patch=NormalisationSettings(focal=900.0, distance=650.0),
    min_face_size=40,
)
CLASSES = (("CelebA-HQ", 0, "Real", "Real"), ("GenA", 1, "EFS", "GAN"), ("GenB", 1, "FS", "Diffusion"))


def _faces() -> list[np.ndarray]:
    """Nine 256 x 256 photos of two real faces, shifted, mirrored, tinted and turned a little."""
    astronaut = np.asarray(Image.open(astronaut_path()).convert("RGB"))[0:300, 90:390]
    hopper = np.asarray(Image.open(grace_hopper_path()).convert("RGB"))[40:440, 80:480]
    out = []
    for i in range(9):
        base = cv2.resize(astronaut if i % 2 == 0 else hopper, (256, 256), interpolation=cv2.INTER_AREA)
        turn = cv2.getRotationMatrix2D((128 + 4 * i, 128), 3.0 * (i - 4), 1.0)
        image = cv2.warpAffine(base, turn, (256, 256), borderMode=cv2.BORDER_REFLECT)
        image = image[:, ::-1] if i % 3 == 1 else image
        out.append(
            np.clip(image.astype(np.int16) + np.array([6 * i, -4 * i, 3 * i]), 0, 255).astype(np.uint8)
        )
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on a cache made with SETTINGS; the test images in their own folder."""
    root = tmp_path_factory.mktemp("prep")
    (root / "data" / "test").mkdir(parents=True)
    rows = []
    for i, image in enumerate(_faces()):
        name, dfd, ftype, arch = CLASSES[i % 3]
        split = "test" if i >= 6 else "train"
        path = root / "data" / (split if split == "test" else "") / f"face{i}.png"
        Image.fromarray(image).save(path)
        rows.append(ManifestRow(str(path), split, dfd, i % 3, name, ftype, arch, "Test", "", None))
    write_manifest(root / "data" / "manifest.csv", rows)
    summary = preprocess(root / "data" / "manifest.csv", root / "cache", SETTINGS, workers=1)
    assert summary.samples == 9, summary.failures_by_kind
    run = RunConfig(architecture="tiny-test", epochs=1, batch_size=3, workers=0, device="cpu")
    result = train(run, root / "cache", root / "run")
    return root, result.model_dir


def _by_file(evaluation, cache: Path) -> dict[str, tuple[np.ndarray, float]]:
    rows = read_cache(cache).split("test")
    return {
        r.file.name: (evaluation.attribution_probs[i], float(evaluation.detection_probs[i, 1]))
        for i, r in enumerate(rows)
    }


def test_attribute_and_scan_give_evaluates_probabilities_on_a_non_default_cache(trained, tmp_path):
    root, model_dir = trained
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["format"] == 2 and meta["preprocessing"]["cache"]["settings"] == SETTINGS.record()
    assert settings_of_model(meta, model_dir) == CacheSettings(SETTINGS)
    evaluation = evaluate_model(model_dir, root / "cache", tmp_path / "tables", batch_size=2, device="cpu")
    assert evaluation.preprocessing_note is None
    expected = _by_file(evaluation, root / "cache")
    classes = meta["class_names"]

    # attribute: no face option given; detection, margin, cameras and face size all come from the folder.
    tests = sorted((root / "data" / "test").glob("*.png"))
    result = runner.invoke(
        app, ["attribute", *map(str, tests), "--model", str(model_dir), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["provenance"]["settings"]["preprocessing"] == SETTINGS.record()
    assert report["provenance"]["settings"]["face_mode"] == "detect"
    assert "model folder's record" in report["provenance"]["settings"]["preprocessing_from"]
    for item in report["results"]:
        probs, p_fake = expected[Path(item["file"]).name]
        (face,) = item["faces"]
        got = {c["name"]: c["probability"] for c in face["top"]}
        assert np.allclose([got[c] for c in classes], probs, atol=1e-5, rtol=0)
        assert face["p_fake"] == pytest.approx(p_fake, abs=1e-5)

    # scan of the same folder.
    out = tmp_path / "scan.jsonl"
    result = runner.invoke(
        app, ["scan", str(root / "data" / "test"), "--out", str(out), "--model", str(model_dir), "-q"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(tests)
    for row in lines:
        probs, p_fake = expected[Path(row["file"]).name]
        got = {c["name"]: c["probability"] for c in row["top3"]}  # JSONL: attribute's `top` shape
        assert np.allclose([got[c] for c in classes], probs, atol=2e-6, rtol=0)
        assert row["p_fake"] == pytest.approx(p_fake, abs=2e-6)

    # The check can fail: a format-1 folder (no record) loads, with preprocess's defaults, stated
    # in the provenance, and those prepare other pixels than this model was trained on.
    older = tmp_path / "older"
    shutil.copytree(model_dir, older)
    old_preprocessing = {k: v for k, v in meta["preprocessing"].items() if k != "cache"}
    old_preprocessing["gaze_normalisation"] = "ETH-XGaze (focal 960, distance 600)"
    (older / "meta.json").write_text(json.dumps(dict(meta, format=1, preprocessing=old_preprocessing)))
    predictor = Predictor(older)
    assert predictor.preparation == PreprocessSettings() and predictor.model_provenance.format == 1
    settings = predictor.provenance().settings
    assert (
        settings["preprocessing"] == PreprocessSettings().record()
        and "defaults" in settings["preprocessing_from"]
    )
    gaps = []
    for path in tests:
        face = predictor.predict_file(path).faces[0]
        probs, _ = expected[path.name]
        gaps.append(np.abs(np.array(face.probabilities) - probs).max())
    assert max(gaps) > 1e-3


def test_an_option_that_contradicts_the_record_names_both_values(trained, tmp_path):
    root, model_dir = trained
    with pytest.raises(
        ConfigError, match=r"face mode 'aligned' contradicts .* trained on detected faces .*aligned = false"
    ):
        Predictor(model_dir, settings=PredictorSettings(face_mode="aligned"))
    result = runner.invoke(
        app,
        [
            "attribute",
            str(next((root / "data" / "test").glob("*.png"))),
            "--model",
            str(model_dir),
            "--aligned",
        ],
    )
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "face mode 'aligned' contradicts" in result.stderr and "face mode 'detect'" in result.stderr
    # Which faces are scored stays the run's choice; how they are prepared does not.
    assert Predictor(model_dir, settings=PredictorSettings(faces="all")).preparation.face_policy == "all"
    # evaluate refuses a cache prepared otherwise than the training cache, naming both values.
    other = tmp_path / "other"
    shutil.copytree(root / "cache", other)
    record = json.loads((other / "preprocessing.json").read_text())
    record["settings"]["crop_margin"] = 0.25
    (other / "preprocessing.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"crop_margin 0.25 here, 0.4 in training"):
        evaluate_model(model_dir, other, tmp_path / "t", device="cpu")
