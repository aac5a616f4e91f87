"""`gazeclip evaluate` on a tiny trained model: tables for seen and unseen sets, robustness, efficiency."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.runner import evaluate_model, real_pairing
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.train.dataset import read_cache
from gazeclip_cli.core.train.run_config import RunConfig
from gazeclip_cli.core.train.trainer import train
from tests.flops_analytic import TEXT_GROUPS, tiny_macs
from tests.train.conftest import make_cache

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    cache = make_cache(root / "cache", {"train": 4, "val": 2, "test": 3}, unseen_test=3)
    run = RunConfig(architecture="tiny-test", workers=0, device="cpu", batch_size=4, epochs=1)
    result = train(run, cache, root / "run")
    return cache, result.model_dir, root


def test_evaluate_writes_the_papers_tables(trained):
    cache, model_dir, root = trained
    result = evaluate_model(model_dir, cache, root / "tables", batch_size=5)
    report = result.report
    names = {s.name for s in report.sets}
    assert names == {"Real", "GenA", "GenB", "GenU", "RealU"}
    unseen = report.set("GenU")
    assert unseen.kind == "unseen" and unseen.paired_with == "RealU" and unseen.detection_auc is not None
    assert report.set("GenA").paired_with == "Real"
    assert 0.0 <= unseen.open_set_acc <= 1.0 and report.set("GenA").closed_set_acc is not None
    written = result.written
    assert written.markdown.exists() and written.json.exists() and all(p.exists() for p in written.csv)
    assert json.loads(written.json.read_text())["tau"] == 0.9


def test_pairing_follows_seen_and_unseen_reals(trained):
    cache, _, _ = trained
    rows = [r for r in read_cache(cache) if r.split == "test"]
    assert real_pairing(rows) == {"GenA": "Real", "GenB": "Real", "GenU": "RealU"}


def test_evaluate_cli_robustness_and_efficiency(trained):
    cache, model_dir, root = trained
    out = root / "cli"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(cache),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--robustness",
            "--corruption",
            "jpeg",
            "--corruption",
            "gaussian_blur",
            "--efficiency",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "robustness.json").exists() and (out / "efficiency.json").exists()
    robustness = json.loads((out / "robustness.json").read_text())
    assert robustness["corruptions"] == ["jpeg", "gaussian_blur"]
    efficiency = json.loads((out / "efficiency.json").read_text())
    macs = sum(tiny_macs(load_architecture("tiny-test"), num_classes=3).values()) - sum(
        tiny_macs(load_architecture("tiny-test"))[k] for k in TEXT_GROUPS
    )  # the test path of the 3-class model trained here
    assert efficiency["gmacs_test_path"] == pytest.approx(macs / 1e9, rel=1e-12)
    assert efficiency["gflops_test_path"] == pytest.approx(2 * macs / 1e9, rel=1e-12)
    assert "Average" in result.stdout


def test_model_and_cache_class_mismatch_is_a_clear_error(trained, tmp_path):
    _, model_dir, _ = trained
    other = make_cache(tmp_path / "other", {"test": 1})
    import csv

    path = other / "preprocessed.csv"
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    for r in rows:
        r["generator"] = r["generator"].upper()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DataError, match="which this model calls 'Real'"):
        evaluate_model(model_dir, other, tmp_path / "t")
