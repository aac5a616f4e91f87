"""``gazeclip attribute`` through CliRunner on real photos shipped by installed packages."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from PIL import Image
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.cli.commands.attribute import DEFAULT_MODEL

from .conftest import grace_hopper_path, png_bytes

runner = CliRunner()


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, face_photo, hopper_photo):
    """Two real face photos, cut down so MTCNN is quick: the astronaut (PNG) and Grace Hopper (JPEG)."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "astronaut.png").write_bytes(png_bytes(face_photo))
    Image.fromarray(hopper_photo).save(folder / "hopper.jpg", quality=95)
    return [folder / "astronaut.png", folder / "hopper.jpg"]


@pytest.fixture(scope="module")
def attributed(model_dir, photos):
    """JSON and text output of the same run (two invocations on the same inputs)."""
    args = ["attribute", *map(str, photos), "--model", str(model_dir)]
    return _json(runner.invoke(app, [*args, "--format", "json"])), runner.invoke(app, args)


def test_json_holds_verdicts_provenance_and_file_hashes(attributed, photos, model_dir):
    data, _ = attributed
    assert [r["file"] for r in data["results"]] == [str(p) for p in photos]
    for r, photo in zip(data["results"], photos, strict=True):
        assert r["error"] is None and r["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
        (face,) = r["faces"]  # one person in each photo; the largest face by default
        assert face["verdict"] in ("real", "fake") and 0 <= face["p_fake"] <= 1
        assert face["verdict"] == ("fake" if face["p_fake"] >= 0.5 else "real")
        assert face["unknown"] == (face["generator_probability"] < 0.9)
        assert face["attribution"] == ("unknown generator" if face["unknown"] else face["generator"])
        assert [t["name"] for t in face["top"]][0] == face["generator"] and len(face["top"]) == 3
        assert set(face["gaze"]) == {"pitch", "yaw"}
    prov = data["provenance"]
    assert prov["model"]["path"] == str(model_dir.resolve()) and len(prov["model"]["weights_sha256"]) == 64
    assert prov["settings"]["threshold"] == 0.9 and prov["settings"]["faces"] == "largest"
    assert "torch" in prov["libraries"] and prov["tool"] == "gazeclip" and prov["time_utc"]


def test_text_table_matches_the_json(attributed):
    data, text = attributed
    assert text.exit_code == 0, text.output
    out = text.stdout
    for r in data["results"]:
        assert r["sha256"] in out
        face = r["faces"][0]
        assert f"{face['p_fake']:.4f}" in out and f"{face['generator_probability']:.4f}" in out
        assert f"{face['gaze']['pitch']:+.3f}" in out
        assert " ".join(f"{v:.0f}" for v in face["box"]) in out
    assert data["provenance"]["model"]["weights_sha256"] in out


def test_finds_the_face_where_it_is_in_the_full_photo(model_dir):
    photo = grace_hopper_path()  # matplotlib's 512 x 600 portrait of Grace Hopper, as shipped
    data = _json(runner.invoke(app, ["attribute", str(photo), "--model", str(model_dir), "--format", "json"]))
    x0, y0, x1, y1 = data["results"][0]["faces"][0]["box"]
    assert 150 < x0 < 200 and 95 < y0 < 145 and 330 < x1 < 380 and 315 < y1 < 365
    assert data["results"][0]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()


def test_html_report_holds_image_heatmap_and_provenance(model_dir, tmp_path, photos):
    report = tmp_path / "report.html"
    data = _json(
        runner.invoke(
            app,
            [
                "attribute",
                str(photos[0]),
                "--model",
                str(model_dir),
                "--html",
                str(report),
                "--format",
                "json",
            ],
        )
    )
    html = report.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)
    assert len(images) == 4  # the annotated photo, the crop, the Grad-CAM overlay and its colour scale
    face = data["results"][0]["faces"][0]
    assert 'class="heatmap"' in html and f"Grad-CAM of the attribution logit of {face['generator']}" in html
    assert data["results"][0]["sha256"] in html and data["provenance"]["model"]["weights_sha256"] in html
    assert "Provenance" in html and "torch" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert json.loads(json.dumps(data))  # stdout stayed pure JSON with --html


def test_bad_input_is_reported_and_the_rest_still_scored(model_dir, tmp_path, face_photo):
    bad = tmp_path / "fake.jpg"
    bad.write_text("not a picture")
    good = tmp_path / "face.png"
    good.write_bytes(png_bytes(face_photo))
    result = runner.invoke(
        app, ["attribute", str(bad), str(good), "--model", str(model_dir), "--format", "json"]
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert "not an image" in data["results"][0]["error"] and data["results"][0]["faces"] == []
    assert data["results"][1]["error"] is None and len(data["results"][1]["faces"]) == 1
    assert "fake.jpg: not an image" in result.stderr


def test_incompatible_model_folder_is_one_clear_line(model_dir, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    for f in model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    meta = json.loads((folder / "meta.json").read_text())
    meta["format"] = 99
    (folder / "meta.json").write_text(json.dumps(meta))
    result = runner.invoke(app, ["attribute", str(tmp_path / "x.png"), "--model", str(folder)])
    assert result.exit_code == 1 and "incompatible" in result.stderr and result.stdout == ""
    missing = runner.invoke(app, ["attribute", str(tmp_path / "x.png"), "--model", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "model folder not found" in missing.stderr


def test_html_into_a_missing_folder_is_refused_before_any_work(model_dir, tmp_path):
    result = runner.invoke(
        app, ["attribute", "x.png", "-m", str(model_dir), "--html", str(tmp_path / "no" / "r.html")]
    )
    assert result.exit_code == 2 and "Invalid value for --html" in result.output


def test_default_model_location_is_documented():
    result = runner.invoke(app, ["attribute", "--help"])
    assert result.exit_code == 0 and DEFAULT_MODEL in result.stdout and "GAZECLIP_MODEL" in result.stdout
