"""Gaze estimators side by side, and `analyze all` with its self-contained HTML page."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.analyze.common import select
from gazeclip_cli.core.analyze.estimators import compare_estimators
from gazeclip_cli.core.analyze.gaze_distance import gaze_distance
from gazeclip_cli.core.analyze.pairs import find_pairs
from gazeclip_cli.core.data.cache import load_rgb
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.model.builder import WeightSources, build_frozen_gaze_estimator
from gazeclip_cli.core.model.gaze_estimator import estimator_config
from tests.analyze.conftest import small_estimator, write_cache
from tests.model.test_gaze_estimators import puregaze_release

runner = CliRunner()


def test_every_estimator_with_weights_runs_on_the_cached_patches(synthetic, tmp_path):
    selection = select([synthetic.cache])
    result = compare_estimators(
        selection, None, weights=WeightSources(directory=synthetic.weights), bootstrap=0
    )
    assert result.estimators == ["small-cnn"] and "eth-xgaze" in result.skipped
    assert result.agreement_note and not result.agreements  # the synthetic benchmark has no fake/target pairs
    # The estimator's own angles from the patches, then the same analysis: the same numbers.
    estimator = small_estimator()
    with torch.no_grad():
        angles = estimator(torch.stack([load_rgb(r.patch, 224) for r in selection.rows])).numpy()
    direct = gaze_distance(selection.rows, angles, gaze={}, bootstrap=0)
    got = {g.generator: g.distance for g in result.distances["small-cnn"].generators}
    assert got == pytest.approx({g.generator: g.distance for g in direct.generators}, rel=1e-4)
    # They are also the angles the cache stored (preprocess ran this estimator).
    cached = np.array([r.gaze for r in selection.rows])
    np.testing.assert_allclose(angles, cached, atol=1e-5)
    with pytest.raises(DataError, match="no gaze estimator has its weights here"):
        compare_estimators(selection, None, weights=WeightSources(directory=tmp_path))


def test_estimators_cli_table_and_files(synthetic, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["analyze", "estimators", str(synthetic.cache), "--weights-dir", str(tmp_path / "none"),
         "--estimator-weights", f"small-cnn={synthetic.weights / 'small-cnn.safetensors'}",
         "--bootstrap", "0", "--device", "cpu", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "small-cnn FD" in result.stdout and "left out: eth-xgaze" in result.stdout
    data = json.loads((out / "estimators.json").read_text())
    assert data["estimators"] == ["small-cnn"]
    record = data["gaze_distance"]["small-cnn"]["gaze"]
    assert record["kind"] == "estimator" and len(record["weights_sha256"]) == 64
    assert (out / "estimators.png").is_file() and (out / "estimators.csv").is_file()


def _small_cache(folder):
    rng = np.random.default_rng(5)
    rows = [
        {"generator": "Real", "dfd": 0, "gaze": rng.normal(0, 0.2, 2), "path": f"real/{i}.png"}
        for i in range(4)
    ]
    rows += [
        {"generator": "GenA", "dfd": 1, "gaze": rng.normal(0.1, 0.2, 2), "path": f"a/{i}.png"}
        for i in range(4)
    ]
    rows += [
        {"generator": "GenB", "dfd": 1, "gaze": rng.normal(0, 0.1, 2), "path": f"b/{i}.png"} for i in range(4)
    ]
    cache = write_cache(folder, rows)
    (cache / "pairs.csv").write_text("fake,real\n" + "".join(f"a/{i}.png,real/{i}.png\n" for i in range(4)))
    return cache


def _frechet_2x2(a, b):
    """FID's formula for 2-D samples, by hand: Tr (S_a S_b)^(1/2) = sqrt(tr M + 2 sqrt(det M)), M = S_a S_b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    m = s_a @ s_b
    root_trace = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * root_trace)


def _vector(pitchyaw):
    p, y = pitchyaw[:, 0], pitchyaw[:, 1]
    return np.stack([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)], axis=1)


@pytest.mark.slow  # two ResNet-50 forwards on a loaded CPU: ~30 s
def test_a_released_estimator_in_the_weights_folder_joins_the_comparison(synthetic, tmp_path):
    # PureGaze's release (a plain torch state dict) beside small-cnn: both run, L2CS-Net (no file) is left out.
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(puregaze_release(torch.Generator().manual_seed(1)), weights / "puregaze.pt")
    (weights / "small-cnn.safetensors").symlink_to(synthetic.weights / "small-cnn.safetensors")
    rows = [{"generator": "Real", "dfd": 0, "path": f"real/{i}.png"} for i in range(3)]
    rows += [{"generator": "GenA", "dfd": 1, "path": f"a/{i}.png"} for i in range(3)]
    cache = write_cache(tmp_path / "cache", rows, seed=2)  # no cached angles: only the estimators give them
    (cache / "pairs.csv").write_text("fake,real\n" + "".join(f"a/{i}.png,real/{i}.png\n" for i in range(3)))
    selection = select([cache])
    pairing = find_pairs(selection.rows, cache / "pairs.csv", rules=())
    result = compare_estimators(selection, pairing, weights=WeightSources(directory=weights), bootstrap=0)
    assert result.estimators == ["puregaze", "small-cnn"]
    assert set(result.skipped) == {"eth-xgaze", "l2cs-gaze360"}
    assert "'l2cs-gaze360'" in result.skipped["l2cs-gaze360"]
    patches = torch.stack([load_rgb(r.patch, 224) for r in selection.rows])
    for name in ("puregaze", "small-cnn"):
        estimator, _ = build_frozen_gaze_estimator(estimator_config(name), WeightSources(directory=weights))
        with torch.no_grad():
            angles = estimator(patches).double().numpy()  # (6, 2) radians, rows in cache order
        (dist,) = result.distances[name].generators
        assert dist.distance == pytest.approx(
            _frechet_2x2(np.degrees(angles[:3]), np.degrees(angles[3:])), rel=1e-4
        )
        (agree,) = result.agreements[name].generators
        cosine = np.sum(_vector(angles[3:]) * _vector(angles[:3]), axis=1)  # a/i against real/i
        assert agree.pairs == 3 and agree.mean_cosine == pytest.approx(float(cosine.mean()), abs=1e-6)
    assert result.distances["puregaze"].gaze["estimator"] == "puregaze"


def test_all_writes_one_self_contained_page(synthetic, tmp_path):
    cache = _small_cache(tmp_path / "cache")
    out = tmp_path / "all"
    result = runner.invoke(
        app,
        ["analyze", "all", str(cache), "-m", str(synthetic.model), "-m", str(synthetic.model_no_aws),
         "--pairs", str(cache / "pairs.csv"), "--per-class", "4", "--perplexity", "3", "--bootstrap", "20",
         "--weights-dir", str(synthetic.weights), "--device", "cpu", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 6 and "Not run" not in page  # every analysis, each figure embedded
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    for stem in ("gaze-distance", "gaze-agreement", "heatmaps", "features", "aws-weights", "estimators"):
        assert (out / f"{stem}.json").is_file() and f"id='{stem}'" in page
    agreement = json.loads((out / "gaze-agreement.json").read_text())
    assert agreement["generators"][0]["pairs"] == 4 and "small-cnn cos" in result.stdout


def test_all_says_which_analyses_the_inputs_cannot_support(tmp_path):
    cache = _small_cache(tmp_path / "cache")
    out = tmp_path / "all"
    result = runner.invoke(
        app,
        [
            "analyze",
            "all",
            str(cache),
            "--no-estimators",
            "--bootstrap",
            "0",
            "--out",
            str(out),
            "--figure",
            "svg",
        ],
    )
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    assert page.count("src='data:image/svg+xml;base64,") == 1  # only the gaze distance could run
    assert page.count("Not run: no model folder given") == 3 and "no fake/target pairs found" in page
    assert "heatmaps not run: no model folder given" in result.stderr
    nothing = write_cache(tmp_path / "bare", [{"generator": "Real", "dfd": 0}, {"generator": "G", "dfd": 1}])
    refused = runner.invoke(
        app, ["analyze", "all", str(nothing), "--no-estimators", "--out", str(tmp_path / "x")]
    )
    assert refused.exit_code == 1 and "no analysis could run" in refused.stderr


def test_the_demos_figures_go_into_the_attribute_report(synthetic, tmp_path):
    from gazeclip_cli.core.analyze.report import demo_figures
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
    from gazeclip_cli.core.inference.report_html import attribute_with_report, write_report

    figures = demo_figures(synthetic.cache, synthetic.model, tmp_path / "analysis", per_class=2, bootstrap=10)
    assert [f.path.name for f in figures] == ["gaze-distance.png", "features.png"]
    predictor = Predictor(synthetic.model, device="cpu", settings=PredictorSettings(face_mode="aligned"))
    entry = attribute_with_report(
        predictor, next((synthetic.bench / "images" / "SwapBlend").glob("test-*.png"))
    )
    page = write_report(tmp_path / "r.html", [entry], predictor.provenance({}), figures).read_text()
    section = page[page.index('id="analyses"') : page.index('id="provenance"')]
    assert section.count("data:image/png;base64,") == 2
    assert base64.b64encode(figures[0].path.read_bytes()).decode() in section
