"""`train` and `evaluate` refuse cached gaze angles another estimator computed (Table V runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gazeclip_cli.core.data.cache import (
    CacheSettings,
    PreprocessSettings,
    estimator_fingerprint,
    write_settings,
)
from gazeclip_cli.core.data.manifest import ManifestRow, write_manifest
from gazeclip_cli.core.data.preprocess import preprocess
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.runner import evaluate_model
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.gaze_estimator import SmallGazeCNN
from gazeclip_cli.core.train.run_config import RunConfig
from gazeclip_cli.core.train.trainer import train
from tests.train.conftest import make_cache

RUN = {"architecture": "tiny-test", "workers": 0, "device": "cpu", "batch_size": 4, "epochs": 1}


def labelled_faces(folder) -> object:
    """A manifest of aligned 64 x 64 faces: real and one generator, in train and test."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    rows = []
    for i in range(8):
        fake = i % 2
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"f{i}.png")
        rows.append(
            ManifestRow(
                f"f{i}.png",
                "train" if i < 4 else "test",
                fake,
                fake,
                "GenA" if fake else "Real",
                "EFS" if fake else "Real",
                "GAN" if fake else "Real",
                "test",
                "",
                None,
            )
        )
    path = folder / "manifest.csv"
    write_manifest(path, rows)
    return path


def test_gaze_from_another_estimator_is_refused_by_train_and_evaluate(tmp_path):
    manifest = labelled_faces(tmp_path / "faces")
    cache = tmp_path / "cache"
    own = build_gazeclip(load_architecture("tiny-test"), WeightSources(pretrained=False), seed=0)
    ours = own.gaze_encoder.estimator  # what train builds for tiny-test with seed 0
    torch.manual_seed(1)
    other = SmallGazeCNN().eval()  # same class, other weights: angles that are not the model's
    preprocess(manifest, cache, PreprocessSettings(aligned=True), gaze_estimator=other, workers=1)

    with pytest.raises(DataError) as err:
        train(RunConfig(**RUN), cache, tmp_path / "run")
    message = str(err.value)
    assert f"come from small-cnn (fingerprint {estimator_fingerprint(other)}) (preprocessing.json)" in message
    assert (
        f"not from this model's gaze estimator small-cnn (fingerprint {estimator_fingerprint(ours)})"
        in message
    )
    assert f"gazeclip preprocess SOURCE --out {cache} --gaze-estimator small-cnn --gaze-weights" in message
    assert "use_cached_gaze = false" in message and "\n" not in message
    assert not (tmp_path / "run" / "checkpoint.pt").exists()

    # Without cached gaze the model's own estimator runs on the stored patches.
    model_dir = train(RunConfig(**RUN, use_cached_gaze=False), cache, tmp_path / "run2").model_dir
    with pytest.raises(DataError, match="come from small-cnn") as err:
        evaluate_model(model_dir, cache, tmp_path / "tables")
    assert "use_cached_gaze" not in str(err.value)  # evaluate has no such switch

    # Recomputed with the model's estimator (stored patches, no new detection): accepted.
    summary = preprocess(manifest, cache, PreprocessSettings(aligned=True), gaze_estimator=ours, workers=1)
    assert summary.new == 0 and summary.gaze_computed == 8
    result = evaluate_model(model_dir, cache, tmp_path / "tables")
    assert {s.name for s in result.report.sets} == {"Real", "GenA"}


def test_a_cache_of_another_named_estimator_names_it_and_the_command(tmp_path):
    cache = make_cache(tmp_path / "cache", {"train": 2})
    write_settings(cache, CacheSettings(PreprocessSettings(), "puregaze", "0123456789abcdef"))
    with pytest.raises(DataError) as err:
        train(RunConfig(**RUN), cache, tmp_path / "run")
    message = str(err.value)
    assert "come from puregaze (fingerprint 0123456789abcdef)" in message
    assert "not from this model's gaze estimator small-cnn" in message
    assert (
        "--gaze-estimator small-cnn` (SOURCE and options as before" in message
    )  # names differ: no weights hint


def test_another_estimators_record_does_not_matter_when_no_angles_are_read(tmp_path):
    cache = make_cache(tmp_path / "cache", {"train": 2}, with_gaze=False)  # the model reads patches
    write_settings(cache, CacheSettings(PreprocessSettings(), "puregaze", "0123456789abcdef"))
    assert train(RunConfig(**RUN), cache, tmp_path / "run").model_dir.is_dir()


def test_a_fine_tuned_estimator_reads_the_patches_so_another_estimators_angles_are_no_error(tmp_path):
    # Table XIII "w/ finetuned GE": cached angles never stand in for an estimator that trains
    # (its weights, hence its fingerprint, differ from any cache's), in train and in evaluate.
    manifest = labelled_faces(tmp_path / "faces")
    cache = tmp_path / "cache"
    torch.manual_seed(1)
    other = SmallGazeCNN().eval()
    preprocess(manifest, cache, PreprocessSettings(aligned=True), gaze_estimator=other, workers=1)
    with pytest.raises(DataError, match="come from small-cnn"):  # a frozen estimator: refused
        train(RunConfig(**RUN, max_steps_per_epoch=1), cache, tmp_path / "frozen")
    run = RunConfig(**RUN, max_steps_per_epoch=1, model={"finetune_gaze_estimator": True})
    model_dir = train(run, cache, tmp_path / "run").model_dir
    result = evaluate_model(model_dir, cache, tmp_path / "tables")
    assert {s.name for s in result.report.sets} == {"Real", "GenA"}
