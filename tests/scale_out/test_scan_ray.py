"""``scan --engine ray`` against the local engine: the same rows, a killed worker, a poison file, resume across engines."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
from gazeclip_cli.core.inference.scan import COLUMNS, ScanProgress, provenance_path, scan
from gazeclip_cli.core.ray_engine import CRASH_ENV, Cluster, RayOptions, plan_workers
from tests.inference.conftest import aligned_images

runner = CliRunner()
NUMERIC = ("p_fake", "generator_probability", "gaze_pitch", "gaze_yaw")
TOLERANCE = 1.0001e-6  # one unit of the 6th decimal, the rows' precision


def read_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def assert_same_rows(rows: list[dict], reference: list[dict]) -> None:
    """Same files in the same (walk) order, the same text, numbers to the 6th decimal."""
    assert [r["file"] for r in rows] == [r["file"] for r in reference]
    for row, ref in zip(rows, reference, strict=True):
        for column in COLUMNS:
            if column in NUMERIC and ref[column]:
                assert abs(float(row[column]) - float(ref[column])) <= TOLERANCE, (column, row, ref)
            elif column == "top3" and ref[column]:
                got = [kv.split("=") for kv in row[column].split(";")]
                want = [kv.split("=") for kv in ref[column].split(";")]
                assert [k for k, _ in got] == [k for k, _ in want]
                assert all(
                    abs(float(a) - float(b)) <= TOLERANCE for (_, a), (_, b) in zip(got, want, strict=True)
                )
            else:
                assert row[column] == ref[column], (column, row, ref)


@pytest.fixture
def evidence(corpus, face_photo) -> Path:
    """The local scan tests' corpus (real faces in every colour layout beside every kind of bad
    file) and a video of faces. Without its unreadable file: as root it is unreadable only
    through a patched ``os.access``, which Ray's worker processes do not share."""
    root, _, _ = corpus
    (root / "locked.png").unlink()
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (200, 200))
    for shift in range(6):
        writer.write(cv2.cvtColor(np.roll(face_photo, 3 * shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return root


@pytest.mark.slow
def test_ray_scan_gives_the_local_rows_summary_provenance_and_exit_code(
    ray_session, ray_model_dir, evidence, tmp_path
):
    common = [str(evidence), "-m", str(ray_model_dir), "--batch-size", "4", "--frames-per-video", "3"]
    local_out, ray_out = tmp_path / "local.csv", tmp_path / "ray.csv"
    local = runner.invoke(app, ["scan", *common, "-o", str(local_out), "--workers", "2", "--fail-on-error"])
    # Tasks of two walk groups (6 files rounded up to 2 batches of 4): several tasks, each cut in two.
    ray_flags = ["--engine", "ray", "--files-per-task", "6", "--fail-on-error"]
    ray = runner.invoke(app, ["scan", *common, "-o", str(ray_out), *ray_flags])
    assert local.exit_code == ray.exit_code == 4, (local.output, ray.output)  # bad files: exit 4 both ways
    rows, reference = read_rows(ray_out), read_rows(local_out)
    assert_same_rows(rows, reference)
    errors = {Path(r["file"]).name: r["error"] for r in reference if r["error"]}
    assert {
        "empty.jpg",
        "truncated.jpg",
        "text.png",
        "bomb.png",
        "noface.png",
        "broken.jpg",
        "loop.jpg",
    } <= set(errors)
    assert sum(r["kind"] == "frame" for r in rows) == 3 and sum(r["kind"] == "video" for r in rows) == 1
    local_prov = json.loads(provenance_path(local_out).read_text())
    ray_prov = json.loads(provenance_path(ray_out).read_text())
    drop = {"out", "seconds"}
    assert {k: v for k, v in ray_prov["summary"].items() if k not in drop} == {
        k: v for k, v in local_prov["summary"].items() if k not in drop
    }
    assert ray_prov["provenance"]["settings"] == local_prov["provenance"]["settings"]
    assert ray_prov["provenance"]["model"] == local_prov["provenance"]["model"]
    engine = ray_prov["runs"][0]["engine"]
    assert engine["name"] == "ray" and engine["device"] == "cpu" and engine["actors"] == 2  # 2 CPUs / 1 each
    assert local_prov["runs"][0]["engine"]["name"] == "local"

    # The same summary tables (the run's seconds aside), word for word: prose wraps at the
    # terminal's width, and the two results paths differ in length.
    def words(stdout: str) -> str:
        return " ".join(stdout.split("files in")[0].split())

    assert words(ray.stdout) == words(local.stdout.replace(str(local_out), str(ray_out)))


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_a_file_that_kills_every_worker_is_an_error_row(
    ray_session, ray_model_dir, tmp_path, monkeypatch
):
    root = tmp_path / "evidence"
    aligned_images(root, 12)
    marker = tmp_path / "died-once"
    # img_0002 kills the worker preparing it once; img_0009 kills every worker that tries it.
    monkeypatch.setenv(CRASH_ENV, os.pathsep.join([f"img_0002.png@{marker}", "img_0009.png"]))
    predictor = Predictor(ray_model_dir, settings=PredictorSettings(face_mode="aligned", batch_size=4))
    scan(predictor, [root], tmp_path / "local.csv", workers=2)  # the hook is the Ray workers' only
    # The split layout: preparing tasks feeding one model worker (fused into one process on CPUs).
    engine_options = RayOptions(actors=1, split=True, max_crashes=1)
    from gazeclip_cli.core.inference.scan_ray import RayScanEngine

    summary = scan(predictor, [root], tmp_path / "ray.csv", engine=RayScanEngine(engine_options))
    assert marker.exists()  # a worker did die on img_0002
    rows, reference = read_rows(tmp_path / "ray.csv"), read_rows(tmp_path / "local.csv")
    assert len(rows) == len({r["file"] for r in rows}) == 12  # every file exactly once
    (poison,) = [r for r in rows if r["error"]]
    assert (
        poison["file"].endswith("img_0009.png") and "the worker preparing it died 1 time" in poison["error"]
    )
    assert poison["error"].startswith(str(root)) and poison["verdict"] == ""
    keep = [i for i, r in enumerate(reference) if not r["file"].endswith("img_0009.png")]
    assert_same_rows([rows[i] for i in keep], [reference[i] for i in keep])
    assert summary.files == 12 and summary.files_failed == 1 and summary.faces == 11
    assert summary.failures == {"the worker preparing it died 1 time": 1}


@pytest.mark.slow
def test_resume_across_engines_local_then_ray_then_local(ray_session, ray_model_dir, tmp_path):
    from gazeclip_cli.core.inference.scan_ray import RayScanEngine

    root = tmp_path / "evidence"
    aligned_images(root / "a", 8)
    aligned_images(root / "b", 6, seed=1)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    predictor = Predictor(ray_model_dir, settings=PredictorSettings(face_mode="aligned", batch_size=4))
    out = tmp_path / "results.csv"

    def stop_after(n: int):
        def progress(p: ScanProgress) -> None:
            if p.files_done == n:
                raise KeyboardInterrupt  # a kill half-way

        return progress

    with pytest.raises(KeyboardInterrupt):
        scan(predictor, [root], out, workers=2, progress=stop_after(5))
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 30])  # the kill cut the last row in the middle
    with pytest.raises(KeyboardInterrupt):
        engine = RayScanEngine(RayOptions(files_per_task=8))  # tasks of two walk groups
        scan(predictor, [root], out, resume=True, progress=stop_after(4), engine=engine)
    assert 5 < len(read_rows(out)) < 15
    args = [str(root), "-o", str(out), "-m", str(ray_model_dir), "--aligned", "--batch-size", "4", "--resume"]
    finished = runner.invoke(app, ["scan", *args])
    assert finished.exit_code == 0, finished.output
    fresh = tmp_path / "fresh.csv"
    scan(predictor, [root], fresh, workers=2)
    assert_same_rows(read_rows(out), read_rows(fresh))
    runs = json.loads(provenance_path(out).read_text())["runs"]
    assert [(r["engine"]["name"], r["resumed"]) for r in runs] == [
        ("local", False),
        ("ray", True),
        ("local", True),
    ]


def test_a_ray_task_carries_whole_walk_groups_and_each_is_batched_on_its_own():
    from gazeclip_cli.core.inference.predictor import PreparedInput
    from gazeclip_cli.core.inference.scan import ScanItem, ScanTask
    from gazeclip_cli.core.inference.scan_ray import _score, task_groups

    def tasks(positions):
        return [ScanTask(i, ScanItem(f"f{i}", "image")) for i in positions]

    def names(groups):
        return {g: [[item.path for item in part] for part in parts] for g, parts in groups.items()}

    # Batch 4, 6 files a task: rounded up to two walk groups (never a batch cut in two).
    groups = names(task_groups(tasks(range(38)), 4, 6))
    assert len(groups) == 5 and groups[0] == [["f0", "f1", "f2", "f3"], ["f4", "f5", "f6", "f7"]]
    assert groups[4] == [["f32", "f33", "f34", "f35"], ["f36", "f37"]]  # the last holds what is left
    # Fewer files a task than a batch: one walk group a task.
    assert names(task_groups(tasks(range(6)), 4, 1)) == {0: [["f0", "f1", "f2", "f3"]], 1: [["f4", "f5"]]}
    # A resume starting mid-group (position 5): the walk positions, not the count, place the files.
    groups = names(task_groups(tasks(range(5, 37)), 4, 8))
    assert groups[0] == [["f5", "f6", "f7"]] and groups[1] == [
        [f"f{i}" for i in range(8, 12)],
        [f"f{i}" for i in range(12, 16)],
    ]
    assert task_groups([], 4, 8) == {}
    # A short scan: tasks shrink so that each of the workers gets MIN_TASKS_PER_WORKER (4) of them.
    assert [len(parts) for parts in task_groups(tasks(range(64)), 4, 64, workers=2).values()] == [2] * 8
    assert [len(parts) for parts in task_groups(tasks(range(12)), 4, 64, workers=2).values()] == [1] * 3
    long = task_groups(tasks(range(4000)), 4, 64, workers=2)
    assert [len(parts) for parts in long.values()] == [16] * 62 + [8]

    class Recorder:  # the predictor's two calls _score makes, recorded
        def __init__(self):
            self.batches = []

        def predict_faces(self, faces):
            self.batches.append(list(faces))
            return [f"pred-{face}" for face in faces]

        def result(self, prepared, predictions):
            return (prepared.path, predictions)

    def prepared(name, faces):
        return PreparedInput(
            path=name, kind="image", sha256=None, faces=[f"{name}.{i}" for i in range(faces)]
        )

    parts = [[prepared("a", 1), prepared("b", 2)], [prepared("c", 0), prepared("d", 1)]]
    recorder = Recorder()
    results = _score(recorder, 0, parts, guard=None, retried=False, max_crashes=2)
    # Each walk group's faces in a batch of their own (as the local engine cuts them), not one
    # batch of the task's four faces; results in walk order, each file with its own faces.
    assert recorder.batches == [["a.0", "b.0", "b.1"], ["d.0"]]
    assert results == [
        ("a", ["pred-a.0"]),
        ("b", ["pred-b.0", "pred-b.1"]),
        ("c", []),
        ("d", ["pred-d.0"]),
    ]


def test_engine_ray_without_ray_is_one_line_saying_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    for command in (
        [
            "scan",
            str(tmp_path),
            "-o",
            str(tmp_path / "r.csv"),
            "-m",
            str(tmp_path / "no-model"),
            "--engine",
            "ray",
        ],
        ["preprocess", str(tmp_path), "-o", str(tmp_path / "cache"), "--engine", "ray"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [
            'error: --engine ray needs Ray, an optional extra: pip install "gazeclip[ray]"'
        ]


def test_engine_flags_are_checked_before_anything_loads(tmp_path):
    base = ["scan", str(tmp_path), "-o", str(tmp_path / "r.csv"), "-m", str(tmp_path / "no-model")]
    # Usage errors (the command line is wrong): one line, exit 2, before Ray or the model is touched.
    cases = {
        ("--actors", "2"): "Invalid value for --actors: Ray engine options; add --engine ray",
        ("--actors", "0", "--address", "auto"): "Invalid value for --address, --actors: Ray engine options",
        ("--engine", "spark"): "Invalid value for '--engine': 'spark': use local or ray",
        ("--engine", "ray", "--workers", "3"): "Invalid value for --workers: the local engine's threads",
        ("--engine", "ray", "--threads", "1", "--workers", "-1"): "--workers, --threads: the local engine's",
        ("--engine", "ray", "--device", "cuda:1"): "--device cuda:1: with --engine ray use auto, cpu or cuda",
        (
            "--engine",
            "ray",
            "--actors",
            "-2",
        ): "Invalid value for '--actors': Input should be greater than or equal to 0",
        (
            "--engine",
            "ray",
            "--cpus-per-task",
            "0",
        ): "'--cpus-per-task': Input should be greater than or equal to 1",
        (
            "--files-per-task",
            "32",
        ): "Invalid value for --files-per-task: Ray engine options; add --engine ray",
        (
            "--engine",
            "ray",
            "--files-per-task",
            "0",
        ): "'--files-per-task': Input should be greater than or equal to 1",
    }
    for extra, message in cases.items():
        result = runner.invoke(app, [*base, *extra])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (extra, result.stderr)
        assert lines[0].startswith("error: gazeclip scan: ") and lines[0].endswith("see gazeclip scan --help")
        assert not (tmp_path / "r.csv").exists()


def test_workers_are_sized_from_the_cluster_and_the_flags():
    cpus_only, gpus = Cluster("local", 8, 0, True), Cluster("head:6379", 16, 4, False)
    fused = plan_workers(cpus_only, RayOptions(cpus_per_task=2))
    assert (fused.device, fused.actors, fused.cpus_per_actor, fused.split) == ("cpu", 4, 2, False)  # 8 / 2
    split = plan_workers(gpus, RayOptions(cpus_per_task=3))
    # One GPU and one CPU per model worker; 16 - 4 = 12 CPUs left for 3-CPU preparing tasks.
    assert (split.device, split.actors, split.gpus_per_actor, split.cpus_per_actor, split.split) == (
        "cuda",
        4,
        1,
        1,
        True,
    )
    assert plan_workers(gpus, RayOptions(device="cpu")).actors == 16
    with pytest.raises(Exception, match="the Ray cluster has no GPU"):
        plan_workers(cpus_only, RayOptions(device="cuda"))
    with pytest.raises(Exception, match="needs 12 CPUs"):
        plan_workers(cpus_only, RayOptions(actors=3, cpus_per_task=4))
    with pytest.raises(Exception, match="the Ray cluster has 4"):
        plan_workers(gpus, RayOptions(actors=5))


@pytest.mark.slow
def test_the_cli_and_the_local_engine_never_import_ray(tmp_path):
    root = tmp_path / "evidence"
    aligned_images(root, 2)
    code = f"""
import sys
from typer.testing import CliRunner
from gazeclip_cli.cli.app import app
from tests.inference.conftest import make_model_folder
model = make_model_folder(__import__("pathlib").Path({str(tmp_path)!r}) / "model")
for args in (["--help"], ["scan", "--help"], ["preprocess", "--help"],
             ["scan", {str(root)!r}, "-o", {str(tmp_path / "r.csv")!r}, "-m", str(model), "--aligned", "-q"],
             ["preprocess", {str(root)!r}, "-o", {str(tmp_path / "cache")!r}, "--aligned", "-q"]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_worker_that_loads_another_model_than_the_driver_stops_the_scan_with_one_line(
    ray_session, tmp_path
):
    from gazeclip_cli.core.errors import ModelFolderError
    from gazeclip_cli.core.inference.scan_ray import RayScanEngine
    from tests.inference.conftest import make_model_folder

    root = tmp_path / "evidence"
    aligned_images(root, 2)
    model = make_model_folder(tmp_path / "model", seed=0)
    predictor = Predictor(model, settings=PredictorSettings(face_mode="aligned"))
    # The folder changes on the shared storage after the driver loaded it: the workers see another.
    other = make_model_folder(tmp_path / "other", seed=1)
    for name in ("weights.safetensors", "meta.json"):
        (model / name).write_bytes((other / name).read_bytes())
    with pytest.raises(ModelFolderError, match="differs from the driver's") as caught:
        scan(predictor, [root], tmp_path / "r.csv", engine=RayScanEngine(RayOptions(actors=1)))
    assert len(str(caught.value).splitlines()) == 1 and "every node must see the same model folder" in str(
        caught.value
    )
    assert read_rows(tmp_path / "r.csv") == []  # nothing scored with the wrong model


@pytest.mark.slow
@pytest.mark.parametrize(("head", "split"), [("attribution", False), ("detection", True)])
def test_a_one_expert_model_scans_on_ray_as_locally_with_the_other_experts_fields_empty(
    ray_session, tmp_path, head, split
):
    """Fig. 9 models on Ray: fused (the model workers prepare) and split (InputPreparer tasks)."""
    from dataclasses import replace

    from gazeclip_cli.core.inference.scan_ray import RayScanEngine
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder

    cfg = replace(load_architecture("tiny-test"), experts=(head,))
    model_dir = save_model_folder(build_gazeclip(cfg, WeightSources(pretrained=False)), tmp_path / head)
    root = tmp_path / "evidence"
    aligned_images(root, 6)
    predictor = Predictor(model_dir, settings=PredictorSettings(face_mode="aligned", batch_size=4))
    scan(predictor, [root], tmp_path / "local.csv", workers=2)
    engine = RayScanEngine(RayOptions(actors=1, split=split))
    scan(predictor, [root], tmp_path / "ray.csv", engine=engine)
    rows, reference = read_rows(tmp_path / "ray.csv"), read_rows(tmp_path / "local.csv")
    assert_same_rows(rows, reference)
    empty = ("verdict", "p_fake") if head == "attribution" else ("generator", "generator_probability", "top3")
    present = "generator" if head == "attribution" else "verdict"
    assert len(rows) == 6 and all(r[c] == "" for r in rows for c in empty) and all(r[present] for r in rows)
    if not split:  # the CLI's engine says which expert is absent, as the local one does
        out = tmp_path / "cli.csv"
        args = [str(root), "-o", str(out), "-m", str(model_dir), "--aligned", "--batch-size", "4"]
        result = runner.invoke(app, ["scan", *args, "--engine", "ray"])
        assert result.exit_code == 0, result.output
        assert "no detection expert" in result.stderr
        assert_same_rows(read_rows(out), reference)
