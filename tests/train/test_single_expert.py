"""Fig. 9 end to end: train one expert alone, evaluate only the head that exists, attribute and scan say what is absent."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.evaluate.runner import evaluate_model
from gazeclip_cli.core.evaluate.tables import load_report
from gazeclip_cli.core.train.run_config import RunConfig
from gazeclip_cli.core.train.trainer import train
from tests.inference.test_reports import _validator
from tests.train.conftest import CLASSES, make_cache

runner = CliRunner()
BASE = dict(architecture="tiny-test", workers=0, device="cpu", batch_size=4, epochs=1)
ATTRIBUTION_ROWS = ("Attribution ACC", "Unknown AUROC", "OSCR")
DETECTION_ROWS = ("Detection ACC", "Detection AUC", "Detection EER", "Detection AP")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_cache(
        tmp_path_factory.mktemp("fig9") / "cache", {"train": 2, "val": 1, "test": 2}, unseen_test=2
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model folders with one expert each (untrained: evaluate, attribute and scan only read them)."""
    from dataclasses import replace

    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import ClassSpec, load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder

    root = tmp_path_factory.mktemp("fig9-models")
    classes = tuple(ClassSpec(name, ftype, arch) for name, _, ftype, arch in CLASSES)  # the cache's classes
    cfg = replace(load_architecture("tiny-test"), classes=classes)
    return {
        head: save_model_folder(
            build_gazeclip(replace(cfg, experts=(head,)), WeightSources(pretrained=False)), root / head
        )
        for head in ("attribution", "detection")
    }


@pytest.fixture(scope="module")
def runs(cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("fig9-runs")
    one_step = dict(BASE, max_steps_per_epoch=1)
    att = train(RunConfig(**one_step, model={"experts": ["attribution"]}), cache, root / "att")
    det = train(
        RunConfig(**one_step, model={"experts": ["detection"]}, val_metric="val_seen_detection_acc"),
        cache,
        root / "det",
    )
    return {"attribution": att, "detection": det}


def _epoch_record(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in records if r["kind"] == "epoch")


def test_training_logs_only_the_active_losses_and_metrics(runs):
    att = _epoch_record(runs["attribution"].out_dir)
    assert att["train_detection"] is None and att["train_attribution"] > 0
    assert "val_seen_closed_set_acc" in att and "val_seen_detection_acc" not in att
    det = _epoch_record(runs["detection"].out_dir)
    assert det["train_attribution"] is None and det["train_detection"] > 0
    assert "val_seen_detection_acc" in det and "val_seen_closed_set_acc" not in det


def test_a_val_metric_of_a_missing_expert_is_a_config_error(cache, tmp_path):
    with pytest.raises(ConfigError, match="needs the attribution expert.*val_seen_detection_auc"):
        train(RunConfig(**BASE, model={"experts": ["detection"]}), cache, tmp_path / "run")


@pytest.mark.parametrize("head", ["attribution", "detection"])
def test_evaluate_reports_only_the_head_that_exists(models, cache, tmp_path, head):
    result = evaluate_model(
        models[head],
        cache,
        tmp_path / "eval",
        robustness=True,
        corruptions=("jpeg",),
        severities=(1,),
    )
    report = result.report
    assert report.heads == (head,)
    for s in report.sets:
        assert (s.open_set_acc is None) == (head == "detection")
        assert (s.detection_acc is None) == (head == "attribution")
        if head == "attribution":
            assert s.detection_auc is s.video_auc is s.paired_with is None
    absent_rows = DETECTION_ROWS if head == "attribution" else ATTRIBUTION_ROWS
    for table in result.written.tables:
        labels = [str(r[0]) for r in table.rows]
        assert labels and not any(label.startswith(absent_rows) for label in labels)
    other = "detection" if head == "attribution" else "attribution"
    assert f"this model has no {other} expert" in result.written.markdown.read_text()
    assert load_report(result.written.json).heads == (head,)
    robustness = json.loads((tmp_path / "eval" / "robustness.json").read_text())
    assert robustness["metric"] == (
        "unseen.open_set_acc" if head == "attribution" else "unseen.detection_acc"
    )
    assert all(v is not None for row in robustness["values"] for v in row)


@pytest.mark.parametrize("head", ["attribution", "detection"])
def test_attribute_and_scan_state_what_is_absent(models, tmp_path, head):
    import numpy as np
    from PIL import Image

    from tests.inference.conftest import astronaut_path

    model_dir = str(models[head])
    folder = tmp_path / "in"
    folder.mkdir()
    image = np.asarray(Image.open(astronaut_path()).convert("RGB"))[10:210, 125:325]  # her head: a fast MTCNN
    Image.fromarray(np.ascontiguousarray(image)).save(folder / "face.png")
    photo = str(folder / "face.png")
    result = runner.invoke(app, ["attribute", photo, "--model", model_dir, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    face = data["results"][0]["faces"][0]
    other = "detection" if head == "attribution" else "attribution"
    _validator("attribute_output").validate(data)  # the output schema allows the absent expert's nulls
    assert f"no {other} expert" in result.stderr
    if head == "attribution":
        assert face["verdict"] is None and face["p_fake"] is None and face["generator"] is not None
    else:
        assert face["generator"] is None and face["top"] == [] and face["verdict"] in ("fake", "real")
    html = tmp_path / "report.html"
    text = runner.invoke(app, ["attribute", photo, "--model", model_dir, "--html", str(html)])
    assert text.exit_code == 0, text.output
    assert f"absent: the model has no {other} expert" in text.stdout and html.exists()
    # The verdict in words (the face's title) names the absent expert instead of guessing its verdict.
    assert f"the model has no {other} expert)" in " ".join(text.stdout.split())
    assert f"absent: the model has no {other} expert" in html.read_text()

    out = tmp_path / "scan.csv"
    scanned = runner.invoke(app, ["scan", str(folder), "--out", str(out), "-m", model_dir, "--workers", "0"])
    assert scanned.exit_code == 0, scanned.output
    with open(out, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["file"].endswith("face.png")]
    jsonl = tmp_path / "scan.jsonl"
    assert runner.invoke(app, ["scan", str(folder), "-o", str(jsonl), "-m", model_dir, "-q"]).exit_code == 0
    for line in jsonl.read_text().splitlines():
        _validator("scan_row").validate(json.loads(line))
    empty = ("verdict", "p_fake") if head == "attribution" else ("generator", "generator_probability", "top3")
    assert rows and all(rows[0][c] == "" for c in empty)
    if head == "attribution":
        refused = runner.invoke(
            app, ["scan", photo, "--out", str(tmp_path / "s2.csv"), "-m", model_dir, "--fail-on-fake"]
        )
        assert refused.exit_code == 2 and "no detection expert" in refused.output
