"""Fig. 7: cosine of the gaze vectors of known fake/target pairs, the files, the refusals."""

from __future__ import annotations

import csv
import json
import math

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.analyze.common import select
from gazeclip_cli.core.analyze.gaze_agreement import gaze_agreement
from gazeclip_cli.core.analyze.gaze_source import gaze_for
from gazeclip_cli.core.analyze.pairs import find_pairs
from gazeclip_cli.core.errors import DataError
from tests.analyze.conftest import write_cache

runner = CliRunner()


def _known(tmp_path):
    """Targets look straight ahead or 0.2 rad up; GenA's fakes are off by 0.5 rad of yaw and 0.3 rad of pitch,
    GenB's look exactly like their targets."""
    rows = [
        {"generator": "Real", "dfd": 0, "gaze": (0.0, 0.0), "path": "real/a.png"},
        {"generator": "Real", "dfd": 0, "gaze": (0.2, 0.0), "path": "real/b.png"},
        {"generator": "GenA", "dfd": 1, "gaze": (0.0, 0.5), "path": "a/1.png"},
        {"generator": "GenA", "dfd": 1, "gaze": (0.5, 0.0), "path": "a/2.png"},
        {"generator": "GenB", "dfd": 1, "gaze": (0.2, 0.0), "path": "b/1.png"},
    ]
    cache = write_cache(tmp_path / "cache", rows)
    pairs = cache / "pairs.csv"
    pairs.write_text("fake,real\nsrc/../a/1.png,real/a.png\na/2.png,real/b.png\nb/1.png,real/b.png\n")
    return cache, pairs


def test_mean_cosine_per_generator_is_the_cosine_of_known_vectors(tmp_path):
    cache, pairs = _known(tmp_path)
    selection = select([cache])
    angles = gaze_for(selection)
    pairing = find_pairs(selection.rows, pairs)
    assert len(pairing.pairs) == 3
    result = gaze_agreement(selection.rows, angles.angles, pairing, gaze=angles.describe(), bootstrap=100)
    by = {g.generator: g for g in result.generators}
    # (0, 0.5) vs (0, 0): yaw differs by 0.5 rad at zero pitch; (0.5, 0) vs (0.2, 0): pitch differs by 0.3 rad.
    assert by["GenA"].mean_cosine == pytest.approx((math.cos(0.5) + math.cos(0.3)) / 2, rel=1e-12)
    assert by["GenA"].mean_angle_deg == pytest.approx((math.degrees(0.5) + math.degrees(0.3)) / 2, rel=1e-9)
    assert by["GenB"].mean_cosine == pytest.approx(1.0) and by["GenB"].pairs == 1
    assert by["GenA"].ci_low <= by["GenA"].mean_cosine <= by["GenA"].ci_high
    with pytest.raises(DataError, match=r"fewer pairs than the 2 asked \(--samples\): GenB 1"):
        gaze_agreement(selection.rows, angles.angles, pairing, gaze={}, samples=2)


def test_cli_writes_files_and_prints_the_cosines(tmp_path):
    cache, pairs = _known(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["analyze", "gaze-agreement", str(cache), "--pairs", str(pairs), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"{(math.cos(0.5) + math.cos(0.3)) / 2:.3f}" in result.stdout
    data = json.loads((out / "gaze-agreement.json").read_text())
    assert data["pairing"]["by_rule"] == {"csv": 3} and data["inputs"]["pairs_csv"] == str(pairs)
    with open(out / "gaze-agreement-pairs.csv", newline="") as fh:
        per_pair = list(csv.DictReader(fh))
    assert [float(r["cosine"]) for r in per_pair] == pytest.approx([math.cos(0.5), math.cos(0.3), 1.0])
    assert (out / "gaze-agreement.png").is_file() and (out / "gaze-agreement.csv").is_file()


def test_no_pairs_is_refused_in_one_line(synthetic, tmp_path):
    result = runner.invoke(app, ["analyze", "gaze-agreement", str(synthetic.cache), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "no fake/target pairs found" in result.stderr
