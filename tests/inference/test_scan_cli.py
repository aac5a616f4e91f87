"""``gazeclip scan`` through CliRunner: bad inputs, resume after a kill, determinism, videos, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
from gazeclip_cli.core.inference.scan import COLUMNS, ScanProgress, provenance_path, scan

from .conftest import aligned_images, bomb_png, jpeg_bytes, make_model_folder, make_unreadable, png_bytes

runner = CliRunner()


def read_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return list(csv.DictReader(io.StringIO(text)))


def invoke_scan(*args: str):
    return runner.invoke(app, ["scan", *args])


@pytest.fixture
def corpus(tmp_path, face_photo, monkeypatch):
    """Every bad input of the issue next to real faces in every colour layout; name -> expected error text."""
    root = tmp_path / "evidence"
    (root / "nested").mkdir(parents=True)
    im = Image.fromarray(face_photo)
    alpha = np.full(face_photo.shape[:2], 255, np.uint8)
    alpha[:20, :] = 0  # a transparent band on top; the face stays opaque
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": the file holds the face on its side
    files = {
        "ok.png": png_bytes(face_photo),
        "cmyk.jpg": jpeg_bytes(im.convert("CMYK")),
        "grey16.png": png_bytes(Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)),
        "palette.png": png_bytes(im.convert("P", palette=Image.ADAPTIVE, colors=64)),
        "nested/alpha.png": png_bytes(Image.fromarray(np.dstack([face_photo, alpha]))),
        "grey.png": png_bytes(im.convert("L")),
        "exif_rotated.jpg": jpeg_bytes(im.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes()),
        "empty.jpg": b"",
        "truncated.jpg": jpeg_bytes(im)[:1500],
        "text.png": b"these are not the pixels you are looking for\n",
        "bomb.png": bomb_png(),
        "noface.png": (aligned_images(tmp_path / "gen", 1, size=120)[0]).read_bytes(),
        "locked.png": png_bytes(face_photo),
        "notes.txt": b"ignored: not an image extension",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    with open(os.path.join(os.fsencode(root), b"caf\xe9_face.png"), "wb") as fh:  # not valid UTF-8
        fh.write(png_bytes(face_photo))
    os.symlink("nowhere.jpg", root / "broken.jpg")
    os.symlink("loop.jpg", root / "loop.jpg")
    make_unreadable(root / "locked.png", monkeypatch)
    errors = {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated",
        "text.png": "not an image",
        "bomb.png": "too large to decode safely",
        "noface.png": "no face found",
        "locked.png": "permission denied",
        "broken.jpg": "broken symbolic link",
        "loop.jpg": "symbolic link loop",
    }
    scored = [
        "ok.png",
        "cmyk.jpg",
        "grey16.png",
        "palette.png",
        "nested/alpha.png",
        "grey.png",
        "exif_rotated.jpg",
    ]
    return root, errors, scored + ["caf\\xe9_face.png"]


def test_bad_inputs_give_error_rows_and_everything_else_is_scored(model_dir, corpus, tmp_path):
    root, errors, scored = corpus
    out = tmp_path / "results.csv"
    result = invoke_scan(str(root), "--out", str(out), "--model", str(model_dir), "--workers", "2")
    assert result.exit_code == 0, result.output
    rows = {os.path.relpath(r["file"], root): r for r in read_rows(out)}
    assert set(rows) == set(errors) | set(scored)  # notes.txt ignored, nothing else missing or extra
    for name, expected in errors.items():
        assert expected in rows[name]["error"] and rows[name]["verdict"] == "", (name, rows[name]["error"])
        assert rows[name]["error"].startswith(str(root))  # the message names the file
    for name in scored:
        r = rows[name]
        assert r["error"] == "" and r["verdict"] in ("real", "fake") and r["face"] == "0", (name, r)
        assert len(r["sha256"]) == 64 and len(r["face_box"].split()) == 4
    # EXIF orientation honoured: the face is found where it is in the upright photo.
    upright = np.array(rows["ok.png"]["face_box"].split(), float)
    assert np.abs(np.array(rows["exif_rotated.jpg"]["face_box"].split(), float) - upright).max() < 6
    assert "failures" in result.stdout and "no face found" in result.stdout
    assert f"{len(errors)}" in result.stdout
    again = invoke_scan(
        str(root), "--out", str(tmp_path / "r2.csv"), "-m", str(model_dir), "--fail-on-error", "-q"
    )
    assert again.exit_code == 4 and again.stdout == ""


def _write_video(path: Path, n_frames: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    rng = np.random.default_rng(seed)
    for _ in range(n_frames):
        writer.write(np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).resize((64, 64))))
    writer.release()
    return path


def _resume_evidence(root: Path) -> Path:
    """Aligned images, a broken file (0 faces), a video (3 faces in one file), an odd name: 16 files."""
    aligned_images(root / "a", 7)
    _write_video(root / "a" / "clip.mp4", 9)
    aligned_images(root / "b", 6, seed=1)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(root / "new\nline.png")  # a newline in the name
    return root


SCAN_SETTINGS = PredictorSettings(face_mode="aligned", batch_size=4, video_frames=3)


def _logging_batches(predictor: Predictor, log: list[tuple[str, ...]]) -> Predictor:
    """Record every batch the model is given, each face by a hash of its crop."""
    import hashlib

    predict = predictor.predict_faces

    def logged(faces):
        log.append(tuple(hashlib.sha256(f.crop.tobytes()).hexdigest()[:12] for f in faces))
        return predict(faces)

    predictor.predict_faces = logged  # type: ignore[method-assign]
    return predictor


def _scan_stopped_after(
    model_dir: Path, root: Path, out: Path, n: int, resume: bool, log: list[tuple[str, ...]]
) -> None:
    predictor = _logging_batches(Predictor(model_dir, settings=SCAN_SETTINGS), log)

    def stop(p: ScanProgress) -> None:
        if p.files_done == n:
            raise KeyboardInterrupt  # what Ctrl-C does half-way

    with pytest.raises(KeyboardInterrupt):
        scan(predictor, [root], out, resume=resume, workers=2, model_threads=1, progress=stop)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_scan_stopped_at_several_points_and_resumed_equals_an_uninterrupted_scan(model_dir, tmp_path, suffix):
    root = _resume_evidence(tmp_path / "evidence")
    fresh_batches: list[tuple[str, ...]] = []
    predictor = _logging_batches(Predictor(model_dir, settings=SCAN_SETTINGS), fresh_batches)
    fresh = tmp_path / f"fresh{suffix}"
    scan(predictor, [root], fresh, workers=2, model_threads=1)
    complete = fresh.read_bytes()
    assert len({r["file"] for r in read_rows(fresh)}) == 16

    out = tmp_path / f"results{suffix}"
    # Stopped after 1 file, then 2 (the second mid-group: the resume must start that group's
    # batch again from its first file), then after 5 with the last row cut in half as a kill
    # leaves it. Scores depend on the batch a face is in (float sums over the batch shape, ~1e-7
    # here), so every batch any run forms must be one the uninterrupted scan formed.
    batches: list[tuple[str, ...]] = []
    _scan_stopped_after(model_dir, root, out, 1, resume=False, log=batches)
    _scan_stopped_after(model_dir, root, out, 2, resume=True, log=batches)
    _scan_stopped_after(model_dir, root, out, 5, resume=True, log=batches)
    assert batches and set(batches) <= set(fresh_batches)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 25])
    result = invoke_scan(
        str(root), "--out", str(out), "-m", str(model_dir), "--aligned", "--resume", "--batch-size", "4",
        "--frames-per-video", "3", "--workers", "2", "--threads", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == complete  # every row, byte for byte
    assert "16" in result.stdout  # the summary covers the whole output, earlier runs included
    runs = json.loads(provenance_path(out).read_text())["runs"]
    assert [run["resumed"] for run in runs] == [False, True, True, True]
    assert [run.get("stopped", {}).get("how") for run in runs] == ["interrupted"] * 3 + [None]
    # Each resume scans the output's last file again (its rows may be incomplete); with half a
    # line at the end, the last complete file too: 16 files = 1 + (2 - 1) + (5 - 1) + (12 - 2).
    assert [run.get("files_scanned") for run in runs] == [1, 2, 5, 12]
    assert all(run["stopped"]["at"].endswith("Z") for run in runs[:3]) and "finished" in runs[3]
    assert "finished" not in runs[0] and runs[0]["engine"] == {
        "name": "local",
        "workers": 2,
        "model_threads": 1,
    }


@pytest.mark.slow  # a subprocess that imports torch and loads the model: ~6-12 s
def test_a_killed_scan_is_recorded_as_killed_when_resumed(model_dir, tmp_path):
    import subprocess
    import sys

    root = _resume_evidence(tmp_path / "evidence")
    out = tmp_path / "results.csv"
    # A real SIGKILL: no handler runs, so the run's entry has no end until the resume finds it.
    script = (
        "import os, signal, sys\n"
        "from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings\n"
        "from gazeclip_cli.core.inference.scan import scan\n"
        "settings = PredictorSettings(face_mode='aligned', batch_size=4, video_frames=3)\n"
        "def stop(p):\n"
        "    if p.files_done == 6:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "scan(Predictor(sys.argv[1], settings=settings), [sys.argv[2]], sys.argv[3], workers=2,\n"
        "     model_threads=1, progress=stop)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed = subprocess.run([sys.executable, "-c", script, str(model_dir), str(root), str(out)], env=env)
    assert killed.returncode == -9
    assert "stopped" not in json.loads(provenance_path(out).read_text())["runs"][0]
    scan(Predictor(model_dir, settings=SCAN_SETTINGS), [root], out, resume=True, workers=2, model_threads=1)
    first, second = json.loads(provenance_path(out).read_text())["runs"]
    assert first["stopped"]["how"] == "killed" and first["stopped"]["at"].endswith("Z")
    assert "no end" in first["stopped"]["detail"] and "finished" not in first
    assert "finished" in second and "stopped" not in second
    fresh = tmp_path / "fresh.csv"
    scan(Predictor(model_dir, settings=SCAN_SETTINGS), [root], fresh, workers=2, model_threads=1)
    assert out.read_bytes() == fresh.read_bytes()


def test_a_scan_stopped_by_an_error_says_so(model_dir, tmp_path):
    root = tmp_path / "evidence"
    aligned_images(root, 3)
    out = tmp_path / "results.csv"

    def fail(p: ScanProgress) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    with pytest.raises(RuntimeError):
        scan(Predictor(model_dir, settings=SCAN_SETTINGS), [root], out, workers=0, progress=fail)
    (run,) = json.loads(provenance_path(out).read_text())["runs"]
    assert run["stopped"]["how"] == "error" and run["stopped"]["detail"] == "RuntimeError: disk on fire"
    assert run["files_scanned"] == 1


def test_same_inputs_give_the_same_outputs(model_dir, tmp_path):
    root = tmp_path / "evidence"
    aligned_images(root, 9)
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}.jsonl"
        args = [
            str(root),
            "--out",
            str(out),
            "-m",
            str(model_dir),
            "--aligned",
            "--workers",
            "2",
            "--batch-size",
            "4",
        ]
        assert invoke_scan(*args).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    rows = [json.loads(line) for line in outs[0].decode().splitlines()]
    assert len(rows) == 9 and all(set(r) == set(COLUMNS) for r in rows)
    assert all(isinstance(r["p_fake"], float) and isinstance(r["unknown"], bool) for r in rows)


def test_videos_are_sampled_and_scored_per_frame_and_as_a_whole(model_dir, tmp_path):
    root = tmp_path / "evidence"
    root.mkdir()
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    rng = np.random.default_rng(0)
    for _ in range(9):
        writer.write(np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).resize((64, 64))))
    writer.release()
    out = tmp_path / "results.csv"
    result = invoke_scan(
        str(root), "--out", str(out), "-m", str(model_dir), "--aligned", "--frames-per-video", "3"
    )
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    frames = [r for r in rows if r["kind"] == "frame"]
    (video,) = [r for r in rows if r["kind"] == "video"]
    assert [r["frame"] for r in frames] == ["1", "4", "7"] and rows[-1] is video  # centres of 3 thirds
    mean = np.mean([float(r["p_fake"]) for r in frames])
    assert float(video["p_fake"]) == pytest.approx(mean, abs=2e-6)
    assert video["verdict"] == ("fake" if float(video["p_fake"]) >= 0.5 else "real")
    # Killed after the frame rows but before the video row: the resume redoes the whole video, once.
    complete = out.read_bytes()
    out.write_bytes(complete[: complete.rstrip(b"\n").rfind(b"\n") + 1])
    resumed = invoke_scan(
        str(root), "--out", str(out), "-m", str(model_dir), "--aligned", "--frames-per-video", "3", "--resume"
    )
    assert resumed.exit_code == 0 and out.read_bytes() == complete


def test_an_edited_output_is_not_resumed(model_dir, tmp_path):
    root = tmp_path / "evidence"
    aligned_images(root, 3)
    out = tmp_path / "results.csv"
    assert invoke_scan(str(root), "-o", str(out), "-m", str(model_dir), "--aligned", "-q").exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + "edited,by,hand\n" + "".join(lines[1:]))
    result = invoke_scan(str(root), "-o", str(out), "-m", str(model_dir), "--aligned", "--resume")
    assert result.exit_code == 1 and "is not a scan row" in result.stderr


def test_fail_on_fake_exit_code(tmp_path):
    root = tmp_path / "evidence"
    aligned_images(root, 2)
    fake_model = make_model_folder(tmp_path / "fake", fake_bias=10.0)
    real_model = make_model_folder(tmp_path / "real", fake_bias=-10.0)
    base = [str(root), "--aligned", "-q", "--fail-on-fake"]
    assert invoke_scan(*base, "-o", str(tmp_path / "f.csv"), "-m", str(fake_model)).exit_code == 3
    assert invoke_scan(*base, "-o", str(tmp_path / "r.csv"), "-m", str(real_model)).exit_code == 0
    plain = invoke_scan(str(root), "--aligned", "-o", str(tmp_path / "p.csv"), "-m", str(fake_model))
    assert plain.exit_code == 0 and "fake" in plain.stdout


def test_output_and_model_are_checked_before_scanning(model_dir, tmp_path):
    root = tmp_path / "evidence"
    aligned_images(root, 2)
    out = tmp_path / "results.csv"
    assert invoke_scan(str(root), "-o", str(out), "-m", str(model_dir), "--aligned", "-q").exit_code == 0
    again = invoke_scan(str(root), "-o", str(out), "-m", str(model_dir), "--aligned")
    assert again.exit_code == 1 and "already exists; pass --resume" in again.stderr
    other = invoke_scan(
        str(root), "-o", str(out), "-m", str(model_dir), "--aligned", "--resume", "--threshold", "0.5"
    )
    assert other.exit_code == 1 and "threshold=0.9" in other.stderr
    batch = invoke_scan(
        str(root), "-o", str(out), "-m", str(model_dir), "--aligned", "--resume", "--batch-size", "5"
    )
    assert batch.exit_code == 1 and len(batch.stderr.strip().splitlines()) == 1
    assert "started with batch_size=16, resumed with batch_size=5" in batch.stderr
    bad_suffix = invoke_scan(str(root), "-o", str(tmp_path / "r.txt"), "-m", str(model_dir))
    assert bad_suffix.exit_code == 1 and ".csv or .jsonl" in bad_suffix.stderr
    bad_workers = invoke_scan(
        str(root), "-o", str(tmp_path / "w.csv"), "-m", str(model_dir), "--workers", "-3"
    )
    assert bad_workers.exit_code == 1 and "workers -3: must be 0 or more" in bad_workers.stderr
    assert not (tmp_path / "w.csv").exists()
    bad_threads = invoke_scan(
        str(root), "-o", str(tmp_path / "t.csv"), "-m", str(model_dir), "--threads", "-2"
    )
    assert bad_threads.exit_code == 1 and "model threads -2: must be at least 1" in bad_threads.stderr
    old = tmp_path / "old"
    old.mkdir()
    for f in model_dir.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    meta = json.loads((old / "meta.json").read_text())
    meta["format"] = 0
    (old / "meta.json").write_text(json.dumps(meta))
    new_out = tmp_path / "new.csv"
    refused = invoke_scan(str(root), "-o", str(new_out), "-m", str(old), "--aligned")
    assert refused.exit_code == 1 and "incompatible" in refused.stderr and not new_out.exists()


def test_progress_bar_on_a_terminal_and_silence_otherwise(model_dir, tmp_path, monkeypatch):
    from rich.console import Console

    from gazeclip_cli.cli import output

    root = tmp_path / "evidence"
    aligned_images(root, 3)
    quiet = invoke_scan(str(root), "-o", str(tmp_path / "q.csv"), "-m", str(model_dir), "--aligned")
    assert quiet.exit_code == 0 and "files/s" not in quiet.stderr  # not a terminal: no bar
    screen = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=screen, force_terminal=True, width=120))
    shown = invoke_scan(str(root), "-o", str(tmp_path / "t.csv"), "-m", str(model_dir), "--aligned")
    assert shown.exit_code == 0, shown.output
    assert "files/s" in screen.getvalue() and "ETA" in screen.getvalue() and "3/3" in screen.getvalue()
    assert len(read_rows(tmp_path / "t.csv")) == 3


def test_scanning_starts_before_the_bar_has_its_total(model_dir, tmp_path, monkeypatch):
    import time

    from rich.console import Console

    from gazeclip_cli.cli import output
    from gazeclip_cli.core.inference import scan as scan_module

    root = tmp_path / "evidence"
    aligned_images(root, 3)
    out = tmp_path / "t.csv"
    real_count = scan_module.count_inputs
    rows_before_total = []

    def slow_count(dirs):
        # A huge tree: the count ends only after the scan has written rows (or gives up).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) > 1:
                rows_before_total.append(True)
                break
            time.sleep(0.01)
        return real_count(dirs)

    monkeypatch.setattr(scan_module, "count_inputs", slow_count)
    screen = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=screen, force_terminal=True, width=120))
    result = invoke_scan(str(root), "-o", str(out), "-m", str(model_dir), "--aligned")
    assert result.exit_code == 0, result.output
    assert rows_before_total == [True] and "3/3" in screen.getvalue()
