"""`gazeclip demo --quick` end to end: every stage, bit-identical reruns, the same figures on 1 and 2 threads."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app

runner = CliRunner()
TOLERANCE = 0.03  # the largest headline difference allowed between thread counts (issue 9)
# Held to TOLERANCE across threads (measured 2026-12-02, quick, seeds 0-2 x 1 and 2 threads:
# seen open-set ACC 0.971-1.000). Unseen rejection is not: each unseen generator falls wholly
# into one seen class's region or none, and which turns on the run (0.27-0.45 measured,
# docs/PERFORMANCE.md); each run is held to what makes it evidence instead.
FIGURES = ("seen_closed_set_acc", "seen_detection_auc", "seen_open_set_acc")


def _tables(stdout: str) -> str:
    """Everything the demo prints before its timing line (which may wrap)."""
    return stdout[: stdout.index("time: ")]


def _run(out, threads: int):
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--threads", str(threads)])
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "headline.json").read_text())


@pytest.mark.slow
def test_demo_quick_reruns_bit_identically_and_agrees_across_thread_counts(tmp_path):
    out = tmp_path / "demo"
    first, head = _run(out, threads=1)
    assert "synthetic" in first.stderr  # the demo says plainly what it is
    for stage in (
        "rendering",
        "fitting the demo gaze estimator",
        "preprocessing",
        "training",
        "evaluating",
        "attributing",
    ):
        assert stage in first.stderr
    assert (out / "data" / "manifest.csv").exists() and (out / "cache" / "preprocessed.csv").exists()
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
    assert "analysing" in first.stderr
    assert "demo headline" in first.stdout and "HTML report" in first.stdout
    assert "1 thread(s), CPU kernels" in first.stdout and head["threads"] == 1
    weights = (out / "run" / "model" / "weights.safetensors").read_bytes()
    estimator = (out / "gaze-estimator.safetensors").read_bytes()
    evaluation = (out / "results" / "evaluation.json").read_bytes()

    # The same threads again, into the same folder: the same bits everywhere.
    again, head_again = _run(out, threads=1)
    assert _tables(again.stdout) == _tables(first.stdout)
    assert (out / "run" / "model" / "weights.safetensors").read_bytes() == weights
    assert (out / "gaze-estimator.safetensors").read_bytes() == estimator
    assert (out / "results" / "evaluation.json").read_bytes() == evaluation
    assert {k: v for k, v in head_again.items() if "seconds" not in k} == {
        k: v for k, v in head.items() if "seconds" not in k
    }

    # Two threads sum training's floats in another order (the gaze fit runs on one thread at
    # any --threads), so the runs part; the learning must not care.
    _, head_two = _run(tmp_path / "two", threads=2)
    assert head_two["threads"] == 2
    for key in FIGURES:
        assert abs(head_two["headline"][key] - head["headline"][key]) <= TOLERANCE, key
    for run in (head, head_two):
        h = run["headline"]
        chance = h["chance_closed_set_acc"]
        for c in run["per_class"]:  # every seen class learned, the real one included
            # Measured at seeds 0-2: the generators 1.00, the real class 0.83-1.00 (chance 0.20).
            assert c["closed_set_acc"] >= chance + 0.5, (run["threads"], c)
        # The open-set figure is evidence: seen faces pass tau 0.9 (measured 0.97-1.00 at seeds
        # 0-2, 1 and 2 threads, 240 faces; 0.66-0.81 when quick decayed after 8 of 12 passes) and
        # some unseen ones are rejected, not all (0.27-0.45 of 192; 1.00 when nothing passed tau).
        assert h["seen_open_set_acc"] >= 0.9, run
        assert h["seen_test_faces"] == 240 and h["unseen_test_faces"] == 192, run
        assert 0.2 <= h["unseen_rejected_as_unknown"] < 1.0, run
