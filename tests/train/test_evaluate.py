"""`gazeclip evaluate` on a tiny trained model: tables for seen and unseen sets, robustness, efficiency."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.data.cache import read_cache
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.predictions import real_pairing
from gazeclip_cli.core.evaluate.runner import evaluate_model
from gazeclip_cli.core.model.config import load_architecture
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
    rows = read_cache(cache).split("test")
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


def test_evaluate_reports_progress_per_pass(trained):
    cache, model_dir, root = trained
    seen = []
    evaluate_model(
        model_dir,
        cache,
        root / "progress",
        batch_size=4,
        robustness=True,
        corruptions=("jpeg",),
        severities=(1, 2),
        progress=seen.append,
    )
    n = 5 * 3  # five sets of three test faces
    ends = [p for p in seen if p.done == p.total]
    assert [p.pass_index for p in ends] == [1, 2, 3] and {p.passes for p in seen} == {3}
    assert {p.total for p in seen} == {n} and [p.done for p in seen if p.pass_index == 1] == [4, 8, 12, 15]
    assert [p.pass_name for p in ends] == [
        "clean",
        "JPEG compression, severity 1",
        "JPEG compression, severity 2",
    ]


def test_evaluate_at_80_columns_as_json_and_with_the_synthetic_notice(trained, tmp_path, monkeypatch):
    from gazeclip_cli.cli import output
    from gazeclip_cli.core.model.folder import SYNTHETIC_NOTICE

    cache, model_dir, _ = trained
    monkeypatch.setattr(output.out, "_width", 80)
    args = ["evaluate", str(cache), "-m", str(model_dir), "--device", "cpu", "--batch-size", "8"]
    table = runner.invoke(app, [*args, "-o", str(tmp_path / "t")])
    assert table.exit_code == 0, table.output
    assert "…" not in table.stdout and max(map(len, table.stdout.splitlines())) <= 80
    assert "Unseen sets, test split" in table.stdout and "Seen sets, test split" in table.stdout
    for name in ("Real", "GenA", "GenB", "GenU", "RealU", "Average"):
        assert re.search(rf"^│ {name} +│", table.stdout, re.M), name  # one row per set, whole names
    data = json.loads(runner.invoke(app, [*args, "-o", str(tmp_path / "j"), "--format", "json"]).stdout)
    assert data["evaluation"] == json.loads((tmp_path / "j" / "evaluation.json").read_text())
    assert data["split"] == "test" and data["notice"] is None and data["robustness"] is None

    demo = tmp_path / "demo-model"
    demo.mkdir()
    for f in model_dir.iterdir():
        (demo / f.name).write_bytes(f.read_bytes())
    meta = json.loads((demo / "meta.json").read_text())
    (demo / "meta.json").write_text(json.dumps({**meta, "synthetic": True}))
    noted = runner.invoke(
        app, [*args[:3], str(demo), *args[4:], "-o", str(tmp_path / "d"), "--format", "json"]
    )
    assert json.loads(noted.stdout)["notice"] == SYNTHETIC_NOTICE


def test_robustness_without_unseen_sets_says_what_is_missing(trained, tmp_path):
    cache, model_dir, _ = trained
    out = tmp_path / "val"
    result = runner.invoke(
        app, ["evaluate", str(cache), "-m", str(model_dir), "--split", "val", "--robustness", "-o", str(out)]
    )
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "the 'val' split has no unseen sets" in line and "evaluate a split with unseen sets" in line
    assert not out.exists()  # refused before any work


def test_validation_reports_the_numbers_evaluate_prints_on_that_split(tmp_path):
    """Training's validation and `evaluate --split val` share one prediction loop and one metrics module."""
    import numpy as np
    import torch

    from gazeclip_cli.core.data.cache import CacheDataset
    from gazeclip_cli.core.model.folder import load_model_folder

    cache = make_cache(tmp_path / "cache", {"train": 2, "val": 4}, unseen_val=4)

    def confident(model):  # saturated softmax: some top probabilities pass tau = 0.9
        with torch.no_grad():
            model.attribution_expert.weight.mul_(30.0)

    run = RunConfig(architecture="tiny-test", workers=0, device="cpu", batch_size=6, epochs=1, lr=1e-6)
    result = train(run, cache, tmp_path / "run", prepare_model=confident)
    logged = result.history[0]
    report = evaluate_model(result.model_dir, cache, tmp_path / "tables", split="val", batch_size=5).report
    assert {"seen", "unseen"} == {s.kind for s in report.sets}
    assert logged["val_seen_open_set_acc"] == report.seen_average.open_set_acc
    assert logged["val_unseen_open_set_acc"] == report.unseen_average.open_set_acc
    assert logged["val_seen_closed_set_acc"] == report.seen_average.closed_set_acc
    for key, value in report.averages().items():
        assert logged[f"val_{key}"] == pytest.approx(value, abs=1e-9), key
    # The open-set ACC by hand: per set, seen rows right with top >= 0.9, unseen rows below it.
    rows = read_cache(cache).split("val")
    model = load_model_folder(result.model_dir).model.eval()
    data = CacheDataset(rows, 64)
    with torch.no_grad():
        out = model(
            torch.stack([data[i]["image"] for i in range(len(data))]),
            gaze=torch.stack([data[i]["gaze"] for i in range(len(data))]),
        )
    probs = out.attribution_logits.softmax(-1).numpy()
    per_set: dict[tuple[str, bool], list[bool]] = {}
    for r, p in zip(rows, probs, strict=True):
        right = (p.argmax() == r.dfa and p.max() >= 0.9) if r.dfa >= 0 else p.max() < 0.9
        per_set.setdefault((r.generator, r.dfa >= 0), []).append(bool(right))
    by_hand = {
        kind: np.mean([np.mean(v) for (_, seen), v in per_set.items() if seen == (kind == "seen")])
        for kind in ("seen", "unseen")
    }
    assert logged["val_seen_open_set_acc"] == pytest.approx(by_hand["seen"])
    assert logged["val_unseen_open_set_acc"] == pytest.approx(by_hand["unseen"])
    # The rule validation had before (all rows pooled, every unseen row wrong) gives another number.
    labels = np.array([r.dfa for r in rows])
    pooled = np.mean((probs.argmax(1) == labels) & (probs.max(1) >= 0.9))
    assert pooled != pytest.approx(logged["val_seen_open_set_acc"])


def test_a_val_metric_the_val_split_cannot_give_is_refused(tiny_cache, tmp_path):
    from gazeclip_cli.core.errors import ConfigError

    run = RunConfig(architecture="tiny-test", workers=0, device="cpu", val_metric="val_unseen_open_set_acc")
    with pytest.raises(ConfigError, match="has no unseen sets"):
        train(run, tiny_cache, tmp_path / "run")
    with pytest.raises(ValueError, match="did you mean 'val_seen_closed_set_acc'"):
        RunConfig(val_metric="val_closed_set_acc")
