"""The demo's synthetic benchmark: determinism, exact labels and counts, gaze geometry, and
fingerprints a simple classifier can tell apart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gazeclip_cli.core.data.faces import FaceDetector, aligned_template
from gazeclip_cli.core.data.manifest import MANIFEST_COLUMNS, read_manifest
from gazeclip_cli.core.demo.synthetic import (
    CANONICAL_LANDMARKS_256,
    GENERATORS,
    SyntheticBenchmarkConfig,
    generate_sample,
    generator_by_name,
    read_gaze_truth,
    render_face,
    sample_identity,
    write_synthetic_benchmark,
)
from gazeclip_cli.core.errors import ConfigError, DataError

SMALL = SyntheticBenchmarkConfig(seed=3, size=96, train_per_class=3, val_per_class=1, test_per_class=2)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_benchmark_and_another_seed_does_not(tmp_path):
    a = write_synthetic_benchmark(tmp_path / "a", SMALL)
    b = write_synthetic_benchmark(tmp_path / "b", SMALL)
    files_a, files_b = _files(a.root), _files(b.root)
    assert files_a == files_b
    assert len([f for f in files_a if f.endswith(".png")]) == len(a.rows)
    other = write_synthetic_benchmark(
        tmp_path / "c",
        SyntheticBenchmarkConfig(seed=4, size=96, train_per_class=3, val_per_class=1, test_per_class=2),
    )
    files_c = _files(other.root)
    assert files_c.keys() == files_a.keys()
    pngs = [f for f in files_a if f.endswith(".png")]
    assert all(files_a[f] != files_c[f] for f in pngs)


def test_manifest_has_the_architecture_columns_and_exact_labels_and_counts(tmp_path):
    bench = write_synthetic_benchmark(tmp_path / "bench", SMALL)
    header = bench.manifest.read_text(encoding="utf-8").splitlines()[0]
    assert tuple(header.split(",")) == MANIFEST_COLUMNS
    manifest = read_manifest(bench.manifest)
    assert manifest.rows == bench.rows

    seen = [g for g in GENERATORS if g.dfa_label >= 0]
    unseen = [g for g in GENERATORS if g.dfa_label < 0]
    assert [g.dfa_label for g in seen] == list(range(len(seen)))
    assert manifest.attribution_classes() == [g.name for g in seen]
    assert {g.name for g in unseen} >= {"RealWild"} and len(unseen) >= 3

    counts = Counter((r.generator, r.split) for r in manifest.rows)
    for g in seen:
        assert (counts[(g.name, "train")], counts[(g.name, "val")], counts[(g.name, "test")]) == (3, 1, 2)
    for g in unseen:
        assert (counts[(g.name, "train")], counts[(g.name, "val")], counts[(g.name, "test")]) == (0, 0, 2)
    assert len(manifest.rows) == 6 * len(seen) + 2 * len(unseen)

    for r in manifest.rows:
        g = generator_by_name(r.generator)
        assert (r.dfd_label, r.dfa_label, r.forgery_type, r.architecture) == (
            g.dfd_label,
            g.dfa_label,
            g.forgery_type,
            g.architecture,
        )
        assert r.dfd_label == (0 if r.forgery_type == "Real" else 1)
        assert r.video_id == "" and r.frame_index is None
        assert not Path(r.path).is_absolute()
        image = cv2.imread(str(manifest.resolve(r)), cv2.IMREAD_UNCHANGED)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    real_seen = [r for r in manifest.rows if r.dfa_label == 0]
    assert {r.generator for r in real_seen} == {"RealStudio"} and all(r.dfd_label == 0 for r in real_seen)
    wild = [r for r in manifest.rows if r.generator == "RealWild"]
    assert all((r.dfd_label, r.dfa_label, r.split) == (0, -1, "test") for r in wild)


def test_gaze_truth_sits_beside_the_manifest_one_row_per_image(tmp_path):
    bench = write_synthetic_benchmark(tmp_path / "bench", SMALL)
    assert bench.gaze_truth.parent == bench.manifest.parent
    truth = read_gaze_truth(bench.gaze_truth)
    assert list(truth) == [r.path for r in bench.rows]
    for r in bench.rows:
        t = truth[r.path]
        assert abs(t.pitch) <= 0.5 and abs(t.yaw) <= 0.7
        assert t.eyes_agree == (r.generator != "SwapBlend")
        assert t.landmarks.shape == (5, 2)
    # The same sample regenerated alone carries the same gaze as the written table says.
    first = bench.rows[0]
    again = generate_sample(first.generator, SMALL.seed, 0, first.split, SMALL.size)
    assert truth[first.path].pitch == pytest.approx(again.gaze[0], abs=1e-6)
    assert truth[first.path].yaw == pytest.approx(again.gaze[1], abs=1e-6)


def test_renders_put_landmarks_on_preprocessings_aligned_template():
    assert np.allclose(CANONICAL_LANDMARKS_256, aligned_template(256), atol=1e-3)
    offsets = []
    for i in range(20):
        r = generate_sample("RealStudio", 0, i, "train")
        offsets.append(np.abs(r.landmarks - np.asarray(CANONICAL_LANDMARKS_256)).max())
    # Per-identity scatter of a few pixels, like a real aligner's output; never far off.
    assert max(offsets) < 14.0
    assert np.mean(offsets) > 1.0


def _pupil_centre(image: np.ndarray, eye_mask: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Centroid of the near-black pixels (the pupil) inside one eye's opening."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    near = (np.abs(xx - centre[0]) < radius) & (np.abs(yy - centre[1]) < radius)
    weight = (image.mean(-1) < 0.08) & (eye_mask > 0.9) & near
    assert weight.sum() > 5, "no pupil found"
    return np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()


@pytest.mark.parametrize("population", ["studio", "wild"])
def test_rendered_gaze_moves_the_pupils_in_the_stated_direction(population):
    ident = sample_identity(np.random.default_rng(11), population)

    def pupils(pitch: float, yaw: float) -> np.ndarray:
        r = render_face(ident, (pitch, yaw))
        iod = float(np.linalg.norm(r.landmarks[1] - r.landmarks[0]))
        return np.stack([_pupil_centre(r.image, r.masks["eyes"], c, 0.35 * iod) for c in r.landmarks[:2]])

    straight = pupils(0.0, 0.0)
    # Positive yaw: pupils to the image's left; positive pitch: pupils up (ETH-XGaze convention).
    assert np.all(pupils(0.0, 0.4)[:, 0] < straight[:, 0] - 3)
    assert np.all(pupils(0.0, -0.4)[:, 0] > straight[:, 0] + 3)
    assert np.all(pupils(0.3, 0.0)[:, 1] < straight[:, 1] - 2)
    assert np.all(pupils(-0.3, 0.0)[:, 1] > straight[:, 1] + 2)
    # Horizontal gaze barely moves the pupils vertically and vice versa.
    assert np.all(np.abs(pupils(0.0, 0.4)[:, 1] - straight[:, 1]) < 1.2)
    assert np.all(np.abs(pupils(0.3, 0.0)[:, 0] - straight[:, 0]) < 1.2)


def test_swap_eyes_disagree_and_the_gan_stares_at_the_camera():
    swap = [generate_sample("SwapBlend", 0, i, "train", 96) for i in range(4)]
    assert not any(r.eyes_agree for r in swap)
    real = np.array([generate_sample("RealStudio", 0, i, "train", 64).gaze for i in range(40)])
    gan = np.array([generate_sample("GANCheckerboard", 0, i, "train", 64).gaze for i in range(40)])
    assert gan.std(0).max() < 0.5 * real.std(0).min()


def _spectrum_features(image: np.ndarray) -> np.ndarray:
    """Log FFT magnitude of the grey image, mean- and max-pooled to 16 x 16 bins (max keeps peaks)."""
    grey = image.astype(np.float32).mean(-1)
    spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))))
    b = grey.shape[0] // 16
    bins = spectrum.reshape(16, b, 16, b)
    return np.concatenate([bins.mean((1, 3)).ravel(), bins.max((1, 3)).ravel()])


def test_seen_generators_are_told_apart_by_their_spectra_on_held_out_renders():
    """A logistic regression on FFT magnitudes, far above chance: the demo can show learning."""
    seen = [g for g in GENERATORS if g.dfa_label >= 0]
    x_train, y_train, x_test, y_test = [], [], [], []
    for g in seen:
        for i in range(20):
            x_train.append(_spectrum_features(generate_sample(g, 0, i, "train", 128).image))
            y_train.append(g.dfa_label)
        for i in range(10):
            x_test.append(_spectrum_features(generate_sample(g, 0, i, "test", 128).image))
            y_test.append(g.dfa_label)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    clf.fit(np.array(x_train), y_train)
    predicted = clf.predict(np.array(x_test))
    accuracy = float(np.mean(predicted == np.array(y_test)))
    chance = 1.0 / len(seen)
    assert accuracy > max(0.6, 3 * chance)
    # Every generator's own trace is recognised, not just one easy class.
    for g in seen[1:]:
        recall = np.mean(predicted[np.array(y_test) == g.dfa_label] == g.dfa_label)
        assert recall >= 0.5, g.name


def test_mtcnn_finds_the_rendered_faces_and_their_landmarks():
    """The renders also work for the detection path (preprocess without --aligned)."""
    detector = FaceDetector(device="cpu")
    renders = [
        generate_sample(name, 0, i)
        for name in ("RealStudio", "RealWild", "GANCheckerboard")
        for i in range(2)
    ]
    found = detector.detect([r.image for r in renders])
    for r, faces in zip(renders, found, strict=True):
        assert len(faces) == 1
        assert np.abs(faces[0].landmarks - r.landmarks).max() < 8.0


def test_output_folder_rules(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    with pytest.raises(DataError, match="not a synthetic benchmark"):
        write_synthetic_benchmark(foreign, SMALL)
    # A previous benchmark is replaced, and images it had that the new one lacks are removed.
    bench = tmp_path / "bench"
    write_synthetic_benchmark(
        bench, SyntheticBenchmarkConfig(seed=3, size=96, train_per_class=4, val_per_class=1, test_per_class=2)
    )
    smaller = write_synthetic_benchmark(bench, SMALL)
    assert sorted(p.relative_to(bench).as_posix() for p in bench.rglob("*.png")) == sorted(
        r.path for r in smaller.rows
    )


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="at least 64"):
        SyntheticBenchmarkConfig(size=32)
    with pytest.raises(ConfigError, match="no negative counts"):
        SyntheticBenchmarkConfig(val_per_class=-1)
    with pytest.raises(ConfigError, match="did not|known"):
        generator_by_name("StyleGAN9")
    with pytest.raises(ConfigError, match="unknown face population"):
        sample_identity(np.random.default_rng(0), "crowd")
    bad = tmp_path / "gaze.csv"
    bad.write_text("path,pitch\nx.png,0.1\n")
    with pytest.raises(DataError, match="header"):
        read_gaze_truth(bad)
    with pytest.raises(DataError, match="not found"):
        read_gaze_truth(tmp_path / "missing.csv")
