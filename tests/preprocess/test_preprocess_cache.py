"""``preprocess`` end to end: outputs, failures, the cache, resuming, gaze, aligned mode."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import gazeclip_cli.core.data.preprocess as pp
from gazeclip_cli.core.data.cache import (
    PREPROCESSED_COLUMNS,
    SETTINGS_FILE,
    CacheSettings,
    estimator_fingerprint,
    read_settings,
)
from gazeclip_cli.core.data.manifest import ManifestRow, write_manifest
from gazeclip_cli.core.data.preprocess import PreprocessSettings, preprocess
from gazeclip_cli.core.errors import DataError


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _small(image: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


@pytest.fixture
def corpus(tmp_path, astronaut, grace_hopper) -> Path:
    """Two faces, a face-less image, bad files, a duplicate and a short video with a face."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    astro = _small(astronaut)
    Image.fromarray(astro).save(src / "astronaut.png")
    Image.fromarray(_small(grace_hopper)).save(src / "grace.jpg", quality=95)
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(src / "wall.png")
    (src / "empty.jpg").write_bytes(b"")
    (src / "readme.png").write_text("not pixels")
    good = (src / "astronaut.png").read_bytes()
    (src / "sub" / "cut.png").write_bytes(good[: len(good) // 3])
    shutil.copy(src / "astronaut.png", src / "sub" / "same_as_astronaut.png")
    (src / "notes.txt").write_text("ignored: no image extension")
    writer = cv2.VideoWriter(str(src / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, astro.shape[1::-1])
    bgr = cv2.cvtColor(astro, cv2.COLOR_RGB2BGR)
    for i in range(12):
        m = cv2.getRotationMatrix2D((128, 128), 2 * i, 1.0)
        writer.write(cv2.warpAffine(bgr, m, astro.shape[1::-1]))
    writer.release()
    return src


EXPECTED_FAILURES = {
    "../src/empty.jpg": "empty file (0 bytes)",
    "../src/readme.png": "not an image",
    "../src/sub/cut.png": "truncated or corrupt image data",
    "../src/sub/same_as_astronaut.png": "identical content to ../src/astronaut.png",
    "../src/wall.png": "no face found",
}


def _run(src, out, detector, **kw):
    settings = kw.pop("settings", PreprocessSettings(frames_per_video=3))
    return preprocess(src, out, settings, detector=detector, workers=2, batch_size=4, **kw)


def test_outputs_and_every_input_accounted_for(corpus, tmp_path, detector):
    out = tmp_path / "cache"
    summary = _run(corpus, out, detector)
    rows = _read(out / "preprocessed.csv")
    failures = _read(out / "failures.csv")
    assert list(rows[0]) == list(PREPROCESSED_COLUMNS)
    assert {r["path"] for r in rows} == {"../src/astronaut.png", "../src/grace.jpg", "../src/clip.avi"}
    assert {f["path"]: f["reason"] for f in failures}.keys() == EXPECTED_FAILURES.keys()
    for f in failures:
        assert EXPECTED_FAILURES[f["path"]] in f["reason"]
    assert summary.inputs == 8 and summary.ignored_files == 1
    assert summary.samples == len(rows) == 5  # two photos + three video frames
    assert summary.failures == 5 and summary.new == 5 and summary.cached == 0
    assert summary.failures_by_kind == {"unreadable": 3, "no_face": 1, "duplicate": 1}
    video = [r for r in rows if r["path"].endswith("clip.avi")]
    assert [(r["video_id"], r["frame_index"]) for r in video] == [
        ("clip", "2"),  # the centres of three equal parts of 12 frames
        ("clip", "6"),
        ("clip", "10"),
    ]
    for r in rows:
        crop = np.asarray(Image.open(out / r["crop_path"]))
        patch = np.asarray(Image.open(out / r["patch_path"]))
        assert crop.shape == (256, 256, 3) and patch.shape == (224, 224, 3)
        x0, y0, x1, y1 = map(float, r["face_box"].split())
        assert 0 <= x0 < x1 and 0 <= y0 < y1 and float(r["face_score"]) > 0.9
        assert r["gaze_pitch"] == r["gaze_yaw"] == ""
    assert len({r["sample_id"] for r in rows}) == len(rows)


def test_second_run_does_nothing(corpus, tmp_path, detector, monkeypatch):
    out = tmp_path / "cache"
    first = _run(corpus, out, detector)
    before = _read(out / "preprocessed.csv"), _read(out / "failures.csv")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}

    def refuse(*args, **kwargs):
        raise AssertionError("a cached input was decoded or detected again")

    monkeypatch.setattr(pp, "decode_image", refuse)
    monkeypatch.setattr(pp, "iter_video_frames", refuse)
    monkeypatch.setattr(detector, "detect", refuse)
    # Reading the file again is not needed either: the content hash is remembered by size and mtime.
    monkeypatch.setattr(pp, "read_file_bytes", refuse)
    second = _run(corpus, out, detector)
    assert second.new == 0 and second.cached == first.samples
    assert (second.samples, second.failures) == (first.samples, first.failures)
    assert (_read(out / "preprocessed.csv"), _read(out / "failures.csv")) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps


def test_interrupted_run_completes_without_duplicates_or_gaps(corpus, tmp_path, detector):
    reference = tmp_path / "reference"
    _run(corpus, reference, detector)
    expected = _read(reference / "preprocessed.csv")
    expected_failures = _read(reference / "failures.csv")

    out = tmp_path / "cache"
    seen = []

    def crash_after_four(progress):
        seen.append(progress.path)
        if len(seen) == 4:
            raise KeyboardInterrupt  # what Ctrl-C does half-way

    with pytest.raises(KeyboardInterrupt):
        _run(corpus, out, detector, progress=crash_after_four)
    partial = _read(out / "preprocessed.csv")
    assert 0 < len(partial) < len(expected)
    # The kill may also tear the journal's last line mid-write: the next run must cope.
    with open(out / ".state" / "samples.csv", "a", encoding="utf-8") as fh:
        fh.write("0123456789abcdef,crops/01/0123")

    summary = _run(corpus, out, detector)
    rows = _read(out / "preprocessed.csv")
    assert rows == expected
    assert _read(out / "failures.csv") == expected_failures
    assert summary.cached >= 1 and summary.new >= 1 and summary.cached + summary.new == len(expected)
    journal = _read(out / ".state" / "samples.csv")
    assert len(journal) == len({r["sample_id"] for r in journal}) == len(expected)


def test_manifest_labels_frames_and_changed_content(corpus, tmp_path, detector):
    def row(path, split, dfd, dfa, gen, video_id="", frame=None, prompt=""):
        return ManifestRow(str(path), split, dfd, dfa, gen, "EFS" if dfd else "Real", "GAN" if dfd else "Real",
                           "Test", video_id, frame, prompt)  # fmt: skip

    manifest = corpus / "bench.csv"
    write_manifest(
        manifest,
        [
            row(corpus / "astronaut.png", "train", 0, 0, "CelebA-HQ"),
            row(corpus / "grace.jpg", "test", 1, -1, "FLUX", prompt="FLUX.1"),
            row(corpus / "clip.avi", "test", 1, -1, "LivePortrait", "v7", 5),
        ],
    )
    out = tmp_path / "cache"
    _run(manifest, out, detector)
    rows = {r["path"]: r for r in _read(out / "preprocessed.csv")}
    astro, grace, clip = rows["../src/astronaut.png"], rows["../src/grace.jpg"], rows["../src/clip.avi"]
    assert (astro["split"], astro["dfd_label"], astro["dfa_label"], astro["generator"]) == (
        "train",
        "0",
        "0",
        "CelebA-HQ",
    )
    assert (grace["split"], grace["dfa_label"], grace["forgery_type"]) == ("test", "-1", "EFS")
    assert (clip["video_id"], clip["frame_index"]) == ("v7", "5")  # the one frame the manifest names
    assert (grace["prompt_name"], astro["prompt_name"]) == ("FLUX.1", "")  # carried to the cache

    # Edit one image: only it is recomputed, and its old sample leaves preprocessed.csv.
    Image.fromarray(np.ascontiguousarray(np.asarray(Image.open(corpus / "grace.jpg"))[:, ::-1])).save(
        corpus / "grace.jpg", quality=95
    )
    os.utime(corpus / "grace.jpg", ns=(1, 1))  # a different mtime, whatever the clock resolution
    summary = _run(manifest, out, detector)
    assert summary.new == 1 and summary.cached == 2
    again = {r["path"]: r for r in _read(out / "preprocessed.csv")}
    assert again["../src/grace.jpg"]["sample_id"] != grace["sample_id"]
    assert again["../src/astronaut.png"]["sample_id"] == astro["sample_id"]


def test_settings_are_part_of_the_cache_key(corpus, tmp_path, detector):
    out = tmp_path / "cache"
    first = _run(corpus, out, detector)
    wider = _run(corpus, out, detector, settings=PreprocessSettings(frames_per_video=3, crop_margin=0.4))
    assert wider.new == first.samples and wider.cached == 0
    # Video sampling is not in the key: frames already made are reused, whatever the sampling.
    # 3 of 12 frames are 0, 6 and 11; 1 is frame 6; every 5th is 0, 5 and 10.
    one = _run(corpus, out, detector, settings=PreprocessSettings(frames_per_video=1))
    assert one.samples == first.samples - 2 and one.new == 0
    strided = _run(corpus, out, detector, settings=PreprocessSettings(frame_stride=5))
    assert strided.samples == first.samples and strided.new == 2 and strided.cached == first.samples - 2


def test_gaze_is_stored_and_recomputed_only_for_a_new_estimator(corpus, tmp_path, detector, monkeypatch):
    from gazeclip_cli.core.model.gaze_estimator import SmallGazeCNN

    torch.manual_seed(0)
    estimator = SmallGazeCNN(width=4).eval()
    out = tmp_path / "cache"
    summary = _run(corpus, out, detector, gaze_estimator=estimator)
    rows = _read(out / "preprocessed.csv")
    assert summary.gaze_samples == summary.gaze_computed == len(rows)
    patch = np.array(Image.open(out / rows[0]["patch_path"]))
    with torch.no_grad():
        direct = estimator(torch.from_numpy(patch).permute(2, 0, 1)[None].float() / 255)[0]
    assert float(rows[0]["gaze_pitch"]) == pytest.approx(float(direct[0]), abs=1e-5)
    assert float(rows[0]["gaze_yaw"]) == pytest.approx(float(direct[1]), abs=1e-5)

    monkeypatch.setattr(detector, "detect", lambda *a, **k: pytest.fail("detection ran again"))
    without = _run(corpus, out, detector)
    assert without.gaze_samples == len(rows) and without.gaze_computed == 0
    assert _read(out / "preprocessed.csv") == rows

    torch.manual_seed(1)
    other = SmallGazeCNN(width=4).eval()
    redone = _run(corpus, out, detector, gaze_estimator=other)
    assert redone.new == 0 and redone.gaze_computed == len(rows)
    changed = _read(out / "preprocessed.csv")
    assert all(a["gaze_pitch"] != b["gaze_pitch"] for a, b in zip(rows, changed, strict=True))
    assert [r["sample_id"] for r in changed] == [r["sample_id"] for r in rows]


def test_aligned_mode_needs_no_detector(tmp_path, astronaut):
    src = tmp_path / "aligned"
    src.mkdir()
    face = astronaut[40:296, 96:352]  # a 256 x 256 cut around the face
    Image.fromarray(np.ascontiguousarray(face)).save(src / "a.png")
    out = tmp_path / "cache"
    summary = preprocess(src, out, PreprocessSettings(aligned=True), detector=None, workers=1)
    rows = _read(out / "preprocessed.csv")
    assert summary.samples == 1 and summary.failures == 0
    assert rows[0]["face_box"] == "0.00 0.00 256.00 256.00" and rows[0]["face_score"] == ""
    crop = np.asarray(Image.open(out / rows[0]["crop_path"]))
    assert np.array_equal(crop, face)  # already 256 x 256: the crop is the image itself


def test_the_cache_records_its_full_settings_and_its_estimator(tmp_path, astronaut):
    import json

    from gazeclip_cli.core.data.gaze_normalization import CameraIntrinsics, NormalisationSettings
    from gazeclip_cli.core.model.gaze_estimator import SmallGazeCNN

    src = tmp_path / "aligned"
    src.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[40:296, 96:352])).save(src / "a.png")
    settings = PreprocessSettings(
        aligned=True,
        camera=CameraIntrinsics(fx=700.0, fy=710.0, cx=130.0, cy=120.0),
        patch=NormalisationSettings(focal=900.0, distance=620.0),
        aligned_template=((90.0, 120.0), (160.0, 120.0), (128.0, 160.0), (105.0, 190.0), (150.0, 190.0)),
        frames_per_video=4,
    )
    torch.manual_seed(0)
    estimator = SmallGazeCNN(width=4).eval()
    out = tmp_path / "cache"
    preprocess(src, out, settings, gaze_estimator=estimator, workers=1)
    record = read_settings(out)
    assert record == CacheSettings(settings, "small-cnn", estimator_fingerprint(estimator))
    written = json.loads((out / SETTINGS_FILE).read_text())
    assert written["settings"]["camera"] == {"fx": 700.0, "fy": 710.0, "cx": 130.0, "cy": 120.0}
    assert written["settings"]["patch"] == {"focal": 900.0, "distance": 620.0, "size": 224}
    assert written["settings_key"] == settings.cache_key() and written["cache_version"] == 1
    # A run without an estimator keeps the last one's angles, and says whose they are.
    preprocess(src, out, settings, workers=1)
    assert read_settings(out) == record and _read(out / "preprocessed.csv")[0]["gaze_pitch"]
    # Other settings: the record follows preprocessed.csv.
    preprocess(src, out, PreprocessSettings(aligned=True), workers=1)
    assert read_settings(out).settings == PreprocessSettings(aligned=True)
    # A cache written before the record existed reads without one; a damaged record is refused.
    (out / SETTINGS_FILE).unlink()
    assert read_settings(out) is None
    (out / SETTINGS_FILE).write_text(json.dumps({**written, "settings": {"aligned": "yes"}}))
    with pytest.raises(DataError, match="malformed preprocessing record"):
        read_settings(out)


def test_all_faces_policy(tmp_path, astronaut, grace_hopper, detector):
    src = tmp_path / "group"
    src.mkdir()
    left, right = _small(astronaut, 240), _small(grace_hopper, 240)
    canvas = np.full((240, 480, 3), 255, np.uint8)
    canvas[:, :240] = left
    canvas[:, 480 - right.shape[1] :] = right
    Image.fromarray(canvas).save(src / "two.png")
    out = tmp_path / "cache"
    summary = _run(src, out, detector, settings=PreprocessSettings(face_policy="all"))
    rows = _read(out / "preprocessed.csv")
    assert summary.samples == 2 and len({r["sample_id"] for r in rows}) == 2
    areas = []
    for r in rows:
        x0, y0, x1, y1 = map(float, r["face_box"].split())
        areas.append((x1 - x0) * (y1 - y0))
    assert areas == sorted(areas, reverse=True)  # largest first
    again = _run(src, out, detector, settings=PreprocessSettings(face_policy="all"))
    assert again.new == 0 and again.cached == 2


def test_one_run_per_folder_at_a_time(corpus, tmp_path, detector):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "cache"
    (out / ".state").mkdir(parents=True)
    with open(out / ".state" / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError, match="another preprocess run is writing to this folder"):
            _run(corpus, out, detector)


def test_missing_source(tmp_path, detector):
    with pytest.raises(DataError, match="no such manifest or folder"):
        _run(tmp_path / "nothing-here.csv", tmp_path / "out", detector)


# --- the command line -----------------------------------------------------------------------------


def test_cli_runs_resumes_and_reports(tmp_path, astronaut):
    import json

    from typer.testing import CliRunner

    from gazeclip_cli.cli.app import app

    src = tmp_path / "aligned"
    src.mkdir()
    Image.fromarray(np.ascontiguousarray(astronaut[40:296, 96:352])).save(src / "face.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "cache"
    runner = CliRunner()
    args = ["preprocess", str(src), "--out", str(out), "--aligned", "--format", "json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["samples"], summary["failures"], summary["new"]) == (1, 1, 1)
    second = json.loads(runner.invoke(app, args).stdout)
    assert (second["new"], second["cached"]) == (0, 1)
    table = runner.invoke(app, args[:-2])
    assert table.exit_code == 0 and "taken from the cache" in table.stdout


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        (["--frames-per-video", "4", "--frame-stride", "2"], "excludes --frames-per-video", 2),
        (["--face-policy", "biggest"], "unknown face policy 'biggest'", 1),
        (["--camera", "CAMERA"], "unknown key 'focal'", 1),
        (["--format", "yaml"], "'yaml': use table or json", 2),
    ],
)
def test_cli_errors_are_one_line(tmp_path, extra, message, code):
    """Bad input exits 1, a usage error (an option's value or combination) exits 2; both one line."""
    from typer.testing import CliRunner

    from gazeclip_cli.cli.app import app

    camera = tmp_path / "camera.toml"
    camera.write_text("focal = 1000\n")
    extra = [str(camera) if e == "CAMERA" else e for e in extra]
    result = CliRunner().invoke(app, ["preprocess", str(tmp_path), "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0
