"""What an analyst hands on: one JSON schema for attribute and scan, the synthetic-model notice
everywhere, verdicts in words, an HTML report that reads at phone width, and input checks made
before the model loads."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.inference import predictor as predictor_module
from gazeclip_cli.core.inference.predictor import (
    ClassProbability,
    FacePrediction,
    Predictor,
    PredictorSettings,
)
from gazeclip_cli.core.inference.report_html import label_origin
from gazeclip_cli.core.model.folder import SYNTHETIC_NOTICE, trained_on_synthetic

from .conftest import aligned_images, make_model_folder, png_bytes

runner = CliRunner()
SCHEMA = json.loads(
    (resources.files("gazeclip_cli.core.inference") / "output.schema.json").read_text(encoding="utf-8")
)


def _validator(definition: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/$defs/{definition}", "$defs": SCHEMA["$defs"]}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    """A tiny model folder whose meta.json says it was trained on the synthetic demo."""
    folder = make_model_folder(tmp_path_factory.mktemp("demo") / "model")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "synthetic": True}))
    return folder


@pytest.fixture(scope="module")
def evidence(tmp_path_factory, face_photo) -> Path:
    """Aligned images, a short video and a file that is not an image."""
    root = tmp_path_factory.mktemp("evidence")
    aligned_images(root, 2)
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(4):
        writer.write(np.full((64, 64, 3), 40 * i, np.uint8))
    writer.release()
    (root / "bad.png").write_bytes(b"not a picture")
    (root / "face.png").write_bytes(png_bytes(face_photo))
    return root


def test_scan_jsonl_and_attribute_json_validate_against_one_schema(model_dir, evidence, tmp_path):
    out = tmp_path / "rows.jsonl"
    scanned = runner.invoke(
        app, ["scan", str(evidence), "-o", str(out), "-m", str(model_dir), "--aligned", "-q"]
    )
    assert scanned.exit_code == 0, scanned.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"image", "frame", "video"}
    row_schema = _validator("scan_row")
    for row in rows:
        row_schema.validate(row)
    face = next(r for r in rows if r["kind"] == "image" and r["error"] is None)
    assert isinstance(face["top3"], list) and isinstance(face["face_box"], list)  # arrays, as attribute's

    files = [str(evidence / "img_0000.png"), str(evidence / "bad.png"), str(evidence / "clip.mp4")]
    attributed = runner.invoke(
        app, ["attribute", *files, "-m", str(model_dir), "--aligned", "--format", "json"]
    )
    assert attributed.exit_code == 1  # bad.png is not an image; the others are still reported
    data = json.loads(attributed.stdout)
    _validator("attribute_output").validate(data)
    assert data["results"][1]["error"] and data["results"][2]["video"]["frames_scored"] == 4
    # The same face in both: the scan's row and attribute's face carry the same box and top classes.
    image_row = next(r for r in rows if r["file"].endswith("img_0000.png"))
    first = data["results"][0]["faces"][0]
    assert image_row["face_box"] == pytest.approx(first["box"], abs=0.05)
    assert [t["name"] for t in image_row["top3"]] == [t["name"] for t in first["top"]]
    assert [t["probability"] for t in image_row["top3"]] == pytest.approx(
        [t["probability"] for t in first["top"]], abs=1e-6
    )
    with pytest.raises(jsonschema.ValidationError):
        row_schema.validate({**image_row, "face_box": "0 0 64 64"})  # the old string form is refused


def test_a_demo_trained_model_says_so_in_the_terminal_the_json_and_the_html(demo_model, evidence, tmp_path):
    photo = str(evidence / "img_0001.png")
    report = tmp_path / "r.html"
    args = ["attribute", photo, "-m", str(demo_model), "--aligned"]
    table = runner.invoke(app, [*args, "--html", str(report)])
    assert table.exit_code == 0, table.output
    assert f"NOTE: {SYNTHETIC_NOTICE}." in " ".join(table.stdout.split())
    data = json.loads(runner.invoke(app, [*args, "--format", "json"]).stdout)
    assert data["notice"] == SYNTHETIC_NOTICE and data["provenance"]["model"]["synthetic"] is True
    html = report.read_text(encoding="utf-8")
    assert 'class="notice"' in html and SYNTHETIC_NOTICE in html
    scan = runner.invoke(
        app, ["scan", photo, "-o", str(tmp_path / "s.csv"), "-m", str(demo_model), "--aligned"]
    )
    assert SYNTHETIC_NOTICE in " ".join(scan.stdout.split())
    plain = json.loads(
        runner.invoke(
            app,
            [
                "attribute",
                photo,
                "-m",
                str(make_model_folder(tmp_path / "m")),
                "--aligned",
                "--format",
                "json",
            ],
        ).stdout
    )
    assert plain["notice"] is None and plain["provenance"]["model"]["synthetic"] is False


def test_older_demo_folders_are_known_by_their_architecture():
    assert trained_on_synthetic({"architecture": "demo-small"})  # written before meta.json said so
    assert trained_on_synthetic({"architecture": "tiny-test", "synthetic": True})
    assert not trained_on_synthetic({"architecture": "gazeclip-vit-b-32"})


def _face(verdict: str, generator: str, p: float) -> FacePrediction:
    return FacePrediction(
        face_index=0, frame_index=None, box=(0, 0, 1, 1), detector_score=None, verdict=verdict,
        p_fake=0.9 if verdict == "fake" else 0.1, generator=generator, generator_probability=p,
        unknown=p < 0.9, top=(ClassProbability(generator, p),), probabilities=(p,), gaze_pitch=None, gaze_yaw=None,
    )  # fmt: skip


def test_verdicts_in_words_say_what_an_unknown_source_means_for_a_real_face(model_dir):
    predictor = Predictor(model_dir, settings=PredictorSettings(face_mode="aligned"))
    assert "CelebA-HQ" in [predictor.class_names[i] for i in predictor.real_classes]
    said = {
        (
            "real",
            "CelebA-HQ",
            0.4,
        ): "real, from a source unlike any the model knows (no known class reaches p 0.9)",
        ("fake", "StyleGAN2", 0.4): "fake, made by an unknown generator (no known class reaches p 0.9)",
        ("real", "CelebA-HQ", 0.95): "real, attributed to the real source CelebA-HQ",
        ("fake", "StyleGAN2", 0.95): "fake, made by StyleGAN2",
        (
            "real",
            "StyleGAN2",
            0.95,
        ): "real by detection, yet attributed to StyleGAN2: the two experts disagree",
        ("fake", "CelebA-HQ", 0.95): (
            "fake by detection, yet attributed to the real source CelebA-HQ: the two experts disagree"
        ),
    }
    for (verdict, generator, p), words in said.items():
        assert predictor.describe(_face(verdict, generator, p)) == words
        assert "unknown generator" not in words or verdict == "fake"  # never "real, unknown generator"


def test_html_report_reads_at_phone_width_and_names_the_gradcam_logit(model_dir, evidence, tmp_path):
    report = tmp_path / "r.html"
    result = runner.invoke(
        app, ["attribute", str(evidence / "face.png"), "-m", str(model_dir), "--html", str(report)]
    )
    assert result.exit_code == 0, result.output
    html = report.read_text(encoding="utf-8")
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    style = html[html.index("<style>") : html.index("</style>")] + " ".join(
        re.findall(r'style="([^"]*)"', html)
    )
    fixed = [int(px) for px in re.findall(r"(?<![-\w])(?:min-)?width\s*:\s*(\d+)px", style)]
    assert fixed and max(fixed) <= 360  # nothing forces the page wider than a phone
    assert "min-width:380px" not in style
    assert re.search(
        r"Grad-CAM of the attribution logit of [\w-]+, the most probable class \(p 0\.\d{4}\)", html
    )
    assert 'alt="colour scale, blue (0) to red (1)"' in html and "0 low" in html and "1 high" in html


@pytest.mark.parametrize("y0", [0.0, 3.0, 40.0])
def test_the_face_label_stays_inside_the_image_when_the_box_touches_the_top(y0):
    text_w, text_h = 30, 14
    x, y = label_origin((5.0, y0, 60.0, 90.0), (text_w, text_h), (200, 100), pad=3)
    assert y - text_h >= 0 and y <= 199 and 0 <= x <= 100 - text_w  # the whole label is drawn
    if y0 == 40.0:
        assert y == 37  # room above: the label sits above the box, as before
    else:
        assert y == round(y0) + 3 + text_h  # inside the box, just below its top edge


def test_inputs_are_checked_before_the_model_loads(model_dir, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(predictor_module.Predictor, "__init__", no_loading)
    missing = runner.invoke(app, ["attribute", str(tmp_path / "missing.jpg"), "-m", str(model_dir)])
    assert (
        missing.exit_code == 1
        and missing.stderr.strip() == f"error: {tmp_path / 'missing.jpg'}: file not found"
    )
    out = tmp_path / "done.csv"
    out.write_text("file\n")
    exists = runner.invoke(app, ["scan", str(tmp_path), "-o", str(out), "-m", str(model_dir)])
    assert exists.exit_code == 1 and "already exists; pass --resume" in exists.stderr
    bad = runner.invoke(app, ["scan", str(tmp_path), "-o", str(tmp_path / "r.txt"), "-m", str(model_dir)])
    assert bad.exit_code == 1 and "use a .csv or .jsonl file name" in bad.stderr


def test_gazeclip_model_is_honoured_by_every_command_that_takes_model(tmp_path, monkeypatch, evidence):
    from tests.train.conftest import make_cache

    cache = make_cache(tmp_path / "cache", {"test": 1})
    nowhere = tmp_path / "from-the-environment"
    monkeypatch.setenv("GAZECLIP_MODEL", str(nowhere))
    for args in (
        ["attribute", str(evidence / "img_0000.png")],
        ["scan", str(evidence), "-o", str(tmp_path / "r.csv")],
        ["evaluate", str(cache), "-o", str(tmp_path / "ev")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and f"{nowhere}: model folder not found" in result.stderr, args


def test_scan_summary_as_json_is_all_stdout_holds(model_dir, evidence, tmp_path):
    out = tmp_path / "r.csv"
    result = runner.invoke(
        app, ["scan", str(evidence), "-o", str(out), "-m", str(model_dir), "--aligned", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    lines = out.read_text().splitlines()[1:]
    files = {line.split(",")[0] for line in lines}
    assert summary["files"] == len(files) == 5 and summary["files_failed"] == 1  # bad.png
    assert summary["videos"] == 1 and summary["faces"] == 3 and summary["notice"] is None
    assert sum(summary["verdicts"].values()) == summary["faces"] + summary["videos"]


def test_attribute_text_fits_80_columns(model_dir, evidence, monkeypatch):
    from gazeclip_cli.cli import output

    monkeypatch.setattr(output.out, "_width", 80)
    result = runner.invoke(
        app, ["attribute", str(evidence / "img_0000.png"), "-m", str(model_dir), "--aligned"]
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout and max(map(len, result.stdout.splitlines())) <= 80
    sha = json.loads(
        runner.invoke(
            app,
            [
                "attribute",
                str(evidence / "img_0000.png"),
                "-m",
                str(model_dir),
                "--aligned",
                "--format",
                "json",
            ],
        ).stdout
    )["provenance"]["model"]["weights_sha256"]
    assert f"weights sha256 {sha}" in result.stdout  # the whole hash on one line
    assert re.search(r"torch==\d", result.stdout)  # versions as pip writes them, never split
