"""`gazeclip demo --quick` end to end: render, fit gaze, preprocess, train, evaluate, attribute."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app

runner = CliRunner()


@pytest.mark.slow
def test_demo_quick_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.stderr  # the demo says plainly what it is
    for stage in (
        "rendering",
        "fitting the demo gaze estimator",
        "preprocessing",
        "training",
        "evaluating",
        "attributing",
    ):
        assert stage in result.stderr
    assert (out / "data" / "manifest.csv").exists() and (out / "cache" / "preprocessed.csv").exists()
    assert (out / "run" / "model" / "weights.safetensors").exists()
    report = json.loads((out / "results" / "evaluation.json").read_text())
    assert {s["name"] for s in report["sets"]} >= {"RealStudio", "FlowBlock", "RealWild"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "sha256" in html.lower()
    # The report embeds the analyses of Fig. 1 and Fig. 10, whose numbers lie beside it.
    analyses = html[html.index('id="analyses"') : html.index('id="provenance"')]
    assert analyses.count("data:image/png;base64,") == 2 and "t-SNE" in analyses
    distance = json.loads((out / "analysis" / "gaze-distance.json").read_text())
    assert {g["generator"] for g in distance["generators"]} >= {"GANCheckerboard", "FlowBlock"}
    assert json.loads((out / "analysis" / "features.json").read_text())["per_class"] == 12
    assert "analysing" in result.stderr
    assert "demo headline" in result.stdout and "HTML report" in result.stdout
