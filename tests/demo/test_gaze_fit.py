"""The demo's gaze estimator: fitted on exactly preprocessing's patches, deterministic,
saved and loaded as safetensors, and far better than guessing the mean."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from gazeclip_cli.core.data.gaze_normalization import pitchyaw_to_vector, vector_to_pitchyaw
from gazeclip_cli.core.data.preprocess import preprocess
from gazeclip_cli.core.demo.gaze_fit import (
    DEMO_PREPROCESSING,
    GazeFitConfig,
    angular_error_deg,
    fit_gaze_estimator,
    fit_on_renders,
    load_gaze_estimator,
    predict_gaze,
    read_gaze_metadata,
    render_gaze_set,
    save_gaze_estimator,
)
from gazeclip_cli.core.demo.synthetic import SyntheticBenchmarkConfig, write_synthetic_benchmark
from gazeclip_cli.core.errors import ConfigError, DataError, WeightsError
from gazeclip_cli.core.model.gaze_estimator import GazeEstimatorConfig, SmallGazeCNN, build_gaze_estimator
from gazeclip_cli.core.weights.loading import load_gaze_weights

TINY = GazeFitConfig(seed=5, train_renders=16, heldout_renders=4, batch_size=8, epochs=1)


@pytest.fixture(scope="module")
def tiny_sets():
    return render_gaze_set(16, 5), render_gaze_set(4, 5, first_index=16)


@pytest.fixture(scope="module")
def tiny_fit(tiny_sets):
    (p, g), (hp, hg) = tiny_sets
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit_gaze_estimator(p, g, hp, hg, TINY)
    finally:
        torch.set_num_threads(threads)


def test_gaze_angles_follow_the_eth_xgaze_convention():
    v = pitchyaw_to_vector(np.array([[0.0, 0.0], [0.0, 0.5], [0.5, 0.0]]))
    assert np.allclose(v[0], [0.0, 0.0, -1.0])  # straight into the camera
    assert v[1, 0] < 0 and abs(v[1, 1]) < 1e-9  # positive yaw: towards the image's left
    assert v[2, 1] < 0 and abs(v[2, 0]) < 1e-9  # positive pitch: up (y points down)
    angles = np.array([[0.3, -0.2], [-0.1, 0.6]])
    assert np.allclose(vector_to_pitchyaw(pitchyaw_to_vector(angles)), angles)
    assert angular_error_deg(np.array([[0.0, 0.0]]), np.array([[0.0, np.radians(10)]]))[0] == pytest.approx(
        10.0
    )
    assert angular_error_deg(angles, angles) == pytest.approx([0.0, 0.0], abs=1e-5)


def test_the_fitted_estimator_plugs_into_preprocess(tmp_path, tiny_fit):
    """preprocess stores the fitted estimator's angles of the patches it writes (the patches
    themselves are the fit's: tests/preprocess/test_face_prep.py)."""
    bench = write_synthetic_benchmark(
        tmp_path / "bench",
        SyntheticBenchmarkConfig(seed=1, train_per_class=1, val_per_class=0, test_per_class=1),
    )
    out = tmp_path / "cache"
    summary = preprocess(
        bench.manifest, out, DEMO_PREPROCESSING, gaze_estimator=tiny_fit.estimator, workers=1
    )
    with open(out / "preprocessed.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(bench.rows), summary
    for row in rows[:6]:
        written = cv2.cvtColor(cv2.imread(str(out / row["patch_path"])), cv2.COLOR_BGR2RGB)
        stored = np.array([[float(row["gaze_pitch"]), float(row["gaze_yaw"])]])
        assert np.allclose(stored, predict_gaze(tiny_fit.estimator, written[None]), atol=1e-5)


def test_render_gaze_set_is_deterministic_and_disjoint_by_index():
    a_patches, a_gaze = render_gaze_set(3, 9)
    b_patches, b_gaze = render_gaze_set(3, 9)
    assert np.array_equal(a_patches, b_patches) and np.array_equal(a_gaze, b_gaze)
    c_patches, _ = render_gaze_set(2, 9, first_index=1)
    assert np.array_equal(c_patches[0], a_patches[1])  # render i depends only on (seed, i)
    assert a_patches.shape == (3, 224, 224, 3) and a_patches.dtype == np.uint8
    assert np.all(np.abs(a_gaze[:, 1]) <= 0.6 + 0.02) and np.all(np.abs(a_gaze[:, 0]) <= 0.45 + 0.08)


def test_fit_is_deterministic_whatever_the_callers_threads_and_leaves_the_global_rng_alone(
    tiny_sets, tiny_fit
):
    (p, g), (hp, hg) = tiny_sets
    state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the fit runs on its own single thread: the same bits as at 1
    try:
        again = fit_gaze_estimator(p, g, hp, hg, TINY)
        assert torch.get_num_threads() == 2  # the caller's setting, restored
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, v), (k2, v2) in zip(
        tiny_fit.estimator.state_dict().items(), again.estimator.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2), k
    assert again.heldout_error_deg == tiny_fit.heldout_error_deg
    assert isinstance(again.estimator, SmallGazeCNN) and not again.estimator.training
    assert not any(q.requires_grad for q in again.estimator.parameters())
    assert (again.n_train, again.n_heldout) == (16, 4)


def test_save_and_load_round_trip_through_safetensors_and_the_weights_loader(tmp_path, tiny_sets, tiny_fit):
    (_, _), (hp, _) = tiny_sets
    path = save_gaze_estimator(tiny_fit, tmp_path / "demo-gaze.safetensors")
    meta = read_gaze_metadata(path)
    assert meta["estimator"] == "small-cnn" and meta["width"] == "16"
    assert float(meta["heldout_error_deg"]) == pytest.approx(tiny_fit.heldout_error_deg, abs=1e-3)
    expected = predict_gaze(tiny_fit.estimator, hp)
    assert np.allclose(predict_gaze(load_gaze_estimator(path), hp), expected, atol=1e-6)
    # The file also loads into the estimator a model config names ("small-cnn").
    registry = build_gaze_estimator(GazeEstimatorConfig(name="small-cnn", weights="demo-gaze"))
    load_gaze_weights(registry, path)
    assert np.allclose(predict_gaze(registry, hp), expected, atol=1e-6)


def test_the_same_estimator_saved_twice_gives_the_same_bytes(tmp_path, tiny_fit):
    first = save_gaze_estimator(tiny_fit, tmp_path / "a.safetensors").read_bytes()
    for i in range(4):  # the metadata has 7 keys: an unordered header would differ between writes
        assert save_gaze_estimator(tiny_fit, tmp_path / f"b{i}.safetensors").read_bytes() == first


def test_bad_inputs_are_typed_errors(tmp_path, tiny_sets):
    (p, g), (hp, hg) = tiny_sets
    with pytest.raises(DataError, match="one \\(pitch, yaw\\) per patch"):
        fit_gaze_estimator(p, g[:-1], hp, hg, TINY)
    with pytest.raises(DataError, match="uint8"):
        fit_gaze_estimator(p.astype(np.float32), g, hp, hg, TINY)
    with pytest.raises(ConfigError, match="at least one batch"):
        GazeFitConfig(train_renders=4, batch_size=8)
    with pytest.raises(WeightsError, match="not found"):
        load_gaze_estimator(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(WeightsError):
        load_gaze_estimator(junk)


@pytest.mark.slow
def test_fitted_estimator_is_far_better_than_predicting_the_mean():
    result = fit_on_renders(GazeFitConfig.quick())
    assert result.mean_baseline_error_deg > 15.0  # the gaze really varies
    assert result.heldout_error_deg < 0.6 * result.mean_baseline_error_deg
    assert result.heldout_error_deg < 14.0
