"""Fig. 1: the Fréchet distance of Gaussian fits, its interval, its files, its refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.analyze.common import select
from gazeclip_cli.core.analyze.gaze_distance import fit_gaussian, frechet_distance, gaze_distance
from gazeclip_cli.core.analyze.gaze_source import gaze_for
from gazeclip_cli.core.errors import DataError
from tests.analyze.conftest import write_cache

runner = CliRunner()


def test_frechet_distance_of_known_gaussians():
    # Commuting covariances: Tr sqrt(S1 S2) = sqrt(1*4) + sqrt(4*1) = 4, so FD = |mu|^2 + 5 + 5 - 8.
    assert frechet_distance([0, 0], np.diag([1.0, 4.0]), [3, 4], np.diag([4.0, 1.0])) == pytest.approx(25 + 2)
    # Identical Gaussians: 0. Same covariance, shifted mean: the squared shift.
    s = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_distance([1, 2], s, [1, 2], s) == pytest.approx(0.0, abs=1e-12)
    assert frechet_distance([1, 2], s, [2, 0], s) == pytest.approx(5.0)
    # Non-commuting covariances, against the 2x2 closed form Tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    s1, s2 = np.array([[2.0, 0.3], [0.3, 0.5]]), np.array([[1.0, -0.4], [-0.4, 3.0]])
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    expected = 0.5**2 + 0.25**2 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance([0.0, 0.0], s1, [0.5, -0.25], s2) == pytest.approx(expected, rel=1e-12)
    # A stack of pairs at once.
    stacked = frechet_distance(np.zeros((2, 2)), np.stack([s1, s1]), np.zeros((2, 2)), np.stack([s1, s2]))
    assert stacked == pytest.approx([0.0, expected - 0.5**2 - 0.25**2], abs=1e-9)


REAL_DEG = [(0.0, 0.0), (2.0, 1.0), (-1.0, 3.0), (1.0, -2.0)]
FAKE_DEG = [(5.0, 5.0), (6.0, 4.0), (4.0, 7.0)]


def _hand_cache(folder):
    rows = [{"generator": "Real", "dfd": 0, "gaze": np.radians(g)} for g in REAL_DEG]
    rows += [{"generator": "GenX", "dfd": 1, "gaze": np.radians(g)} for g in FAKE_DEG]
    rows += [{"generator": "GenY", "dfd": 1, "gaze": np.radians(g)} for g in REAL_DEG]  # same as the reals
    return write_cache(folder, rows)


def _by_hand(a, b):
    a, b = np.array(a), np.array(b)
    ma, mb = a.mean(0), b.mean(0)
    sa, sb = np.cov(a.T, ddof=1), np.cov(b.T, ddof=1)
    tr_sqrt = np.sqrt(np.trace(sa @ sb) + 2 * np.sqrt(np.linalg.det(sa) * np.linalg.det(sb)))
    return float(((ma - mb) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * tr_sqrt)


def test_distance_per_generator_matches_a_direct_computation(tmp_path):
    selection = select([_hand_cache(tmp_path / "c")])
    angles = gaze_for(selection)
    events = []
    result = gaze_distance(
        selection.rows, angles.angles, gaze=angles.describe(), bootstrap=200, seed=3, progress=events.append
    )
    assert [(e.done, e.total) for e in events] == [(1, 2), (2, 2)]  # one step per generator
    by_name = {g.generator: g for g in result.generators}
    assert result.real_sets == ("Real",) and result.n_real == 4
    assert by_name["GenX"].distance == pytest.approx(_by_hand(REAL_DEG, FAKE_DEG), rel=1e-9)
    assert by_name["GenY"].distance == pytest.approx(0.0, abs=1e-9)
    assert by_name["GenX"].n == 3 and by_name["GenX"].forgery_type == "FS"
    low, high = by_name["GenX"].ci_low, by_name["GenX"].ci_high
    assert 0 <= low <= high
    again = gaze_distance(selection.rows, angles.angles, gaze=angles.describe(), bootstrap=200, seed=3)
    assert again.generators[0].ci_low == low  # the seed fixes the bootstrap
    assert gaze_distance(selection.rows, angles.angles, gaze={}, bootstrap=0).generators[0].ci_low is None


def test_samples_draw_per_side_and_refuse_more_than_there_are(tmp_path):
    selection = select([_hand_cache(tmp_path / "c")])
    angles = gaze_for(selection).angles
    result = gaze_distance(selection.rows, angles, gaze={}, samples=3, bootstrap=0, seed=1)
    assert result.n_real == 3 and all(g.n == 3 for g in result.generators)
    with pytest.raises(DataError, match=r"fewer rows than the 4 asked \(--samples\): GenX 3"):
        gaze_distance(selection.rows, angles, gaze={}, samples=4, bootstrap=0)
    with pytest.raises(DataError, match="'GenX' is not a real set"):
        gaze_distance(selection.rows, angles, gaze={}, real=["GenX"])


def test_a_cache_without_gaze_angles_is_refused_in_one_line(tmp_path):
    cache = write_cache(tmp_path / "c", [{"generator": "Real", "dfd": 0}, {"generator": "G", "dfd": 1}])
    result = runner.invoke(app, ["analyze", "gaze-distance", str(cache), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "no gaze angles" in message and "--gaze-estimator" in message


def test_cli_writes_figure_csv_json_on_the_synthetic_benchmark(synthetic, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "analyze",
            "gaze-distance",
            str(synthetic.cache),
            "--out",
            str(out),
            "--bootstrap",
            "50",
            "--seed",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "gaze-distance.json").read_text())
    assert data["inputs"]["caches"][0]["index_sha256"].startswith("sha256:")
    assert data["gaze"]["estimator"] == "small-cnn" and data["seed"] == 2
    assert data["real"]["sets"] == ["RealStudio", "RealWild"]
    with open(out / "gaze-distance.csv", newline="") as fh:
        rows = {r["generator"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"GANCheckerboard", "DiffusionRing", "SwapBlend", "AttributeEdit", "FlowBlock",
                         "DiffusionLowRing", "ReenactWarp"}  # fmt: skip
    # The printed and written distance is the Fréchet distance of the cached angles, by hand.
    from gazeclip_cli.core.data.cache import read_cache

    cache_rows = read_cache(synthetic.cache).rows
    real = [np.degrees(r.gaze) for r in cache_rows if r.dfd == 0]
    swap = [np.degrees(r.gaze) for r in cache_rows if r.generator == "SwapBlend"]
    expected = _by_hand(real, swap)
    assert float(rows["SwapBlend"]["frechet_distance_deg2"]) == pytest.approx(expected, rel=1e-9)
    assert f"{expected:.3f}" in result.stdout
    assert (out / "gaze-distance.png").stat().st_size > 10_000


def test_fit_gaussian_is_mean_and_unbiased_covariance():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 2.0]])
    fit = fit_gaussian(x)
    assert fit.mean == pytest.approx([2.0, 2.0])
    assert fit.cov == pytest.approx(np.array([[4.0, 1.0], [1.0, 1.0]]))  # sums of products / (3 - 1)
