"""``preprocess`` on Ray writes the local engine's cache; a killed worker and a poison file along the way."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.data.cache import FAILED_COLUMNS, SAMPLE_COLUMNS, STATE_DIR
from gazeclip_cli.core.data.preprocess import PreprocessSettings, preprocess
from gazeclip_cli.core.model.gaze_estimator import SmallGazeCNN
from gazeclip_cli.core.ray_engine import CRASH_ENV, RayOptions
from tests.inference.conftest import astronaut_path, grace_hopper_path

SETTINGS = PreprocessSettings(frames_per_video=3)


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


@pytest.fixture
def source(tmp_path) -> Path:
    """Two same-size faces (one detection batch), a third face, a video, a face-less image, bad files."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    astro = _fit(np.asarray(Image.open(astronaut_path()).convert("RGB")), 256)
    Image.fromarray(astro).save(src / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(astro[:, ::-1])).save(src / "mirrored.png")
    Image.fromarray(_fit(np.asarray(Image.open(grace_hopper_path()).convert("RGB")), 256)).save(
        src / "grace.jpg", quality=95
    )
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(src / "wall.png")
    (src / "empty.jpg").write_bytes(b"")
    (src / "readme.png").write_text("not pixels")
    shutil.copy(src / "astronaut.png", src / "sub" / "same_as_astronaut.png")
    small = cv2.cvtColor(_fit(astro, 240), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(src / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, small.shape[1::-1])
    for i in range(9):
        writer.write(
            cv2.warpAffine(small, cv2.getRotationMatrix2D((120, 120), 2 * i, 1.0), small.shape[1::-1])
        )
    writer.release()
    return src


def _files(out: Path) -> dict[str, bytes]:
    """Every file of a cache but the lock and the journals (compared as sets of records)."""
    skip = {f"{STATE_DIR}/lock", f"{STATE_DIR}/samples.csv", f"{STATE_DIR}/failed.csv"}
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel not in skip:
            files[rel] = path.read_bytes()
    return files


def _records(path: Path, columns: tuple[str, ...]) -> set[tuple[str, ...]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return {tuple(r[c] for c in columns) for r in csv.DictReader(fh)}


def assert_same_cache(out: Path, reference: Path) -> None:
    got, want = _files(out), _files(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name  # preprocessed.csv, failures.csv, settings, crops, patches
    for journal, columns in (("samples.csv", SAMPLE_COLUMNS), ("failed.csv", FAILED_COLUMNS)):
        assert _records(out / STATE_DIR / journal, columns) == _records(
            reference / STATE_DIR / journal, columns
        )


@pytest.mark.slow
def test_ray_preprocess_writes_the_local_cache_through_a_killed_worker_and_a_poison_file(
    ray_session, source, tmp_path, monkeypatch
):
    torch.manual_seed(0)
    estimator = SmallGazeCNN(width=4).eval()
    run = {"settings": SETTINGS, "gaze_estimator": estimator, "workers": 2, "batch_size": 4}
    # Bit for bit needs the same intra-op threads (float sums): one, as each Ray worker here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = preprocess(source, tmp_path / "local", **run)
    finally:
        torch.set_num_threads(threads)
    assert local.samples == 6 and local.gaze_samples == 6  # three photos and three video frames
    on_ray = preprocess(source, tmp_path / "ray", **run, ray=RayOptions())
    assert_same_cache(tmp_path / "ray", tmp_path / "local")
    assert (on_ray.samples, on_ray.new, on_ray.failures, on_ray.failures_by_kind) == (
        local.samples,
        local.new,
        local.failures,
        local.failures_by_kind,
    )

    # grace.jpg kills the worker detecting it once; wall.png kills every worker that tries it.
    marker = tmp_path / "died-once"
    monkeypatch.setenv(CRASH_ENV, os.pathsep.join([f"grace.jpg@{marker}", "wall.png"]))
    crashed = preprocess(source, tmp_path / "faults", **run, ray=RayOptions(max_crashes=1, actors=1))
    assert marker.exists()
    assert crashed.samples == local.samples and crashed.failures_by_kind["worker_crash"] == 1
    with open(tmp_path / "faults" / "failures.csv", encoding="utf-8") as fh:
        (wall,) = [r for r in csv.DictReader(fh) if r["path"].endswith("wall.png")]
    assert wall["reason"].startswith("the worker detecting its faces died 1 time")
    # Not cached as the file's own failure: the next run (the CLI's, without the estimator: the
    # cache keeps its angles) tries it again, and the cache is complete.
    monkeypatch.delenv(CRASH_ENV)
    args = ["--frames-per-video", "3", "--workers", "2", "--batch-size", "4", "--format", "json"]
    again = CliRunner().invoke(
        app, ["preprocess", str(source), "-o", str(tmp_path / "faults"), *args, "--engine", "ray"]
    )
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["new"], summary["cached"]) == (0, local.samples)
    assert summary["failures_by_kind"] == local.failures_by_kind
    assert_same_cache(tmp_path / "faults", tmp_path / "local")
