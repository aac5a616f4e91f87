"""Tables: paper layout, Markdown/CSV/JSON files that round-trip, the robustness table and plot."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.metrics import RobustnessResult, evaluate_sets
from gazeclip_cli.core.evaluate.tables import (
    load_report,
    load_robustness,
    report_tables,
    robustness_table,
    to_markdown,
    write_report,
    write_robustness,
)


@pytest.fixture
def report(hand_sets):
    return evaluate_sets(
        hand_sets, tau=0.9, pair_reals={"UnseenX": "FFHQ", "UnseenY": "FFHQ", "GenA": "CelebA-HQ"}
    )


@pytest.fixture
def robustness():
    return RobustnessResult(
        metric="unseen.open_set_acc",
        corruptions=("jpeg", "gaussian_blur"),
        severities=(0, 1, 2, 3, 4, 5),
        values=((0.9, 0.8, 0.7, 0.6, 0.5, 0.4), (0.9, 0.9, None, 0.6, 0.6, 0.6)),
    )


def test_unseen_table_has_the_paper_layout(report):
    unseen, seen = report_tables(report)
    assert unseen.key == "unseen" and seen.key == "seen"
    assert unseen.columns == ("Metric", "FFHQ", "UnseenX", "UnseenY", "Average")
    rows = {row[0]: row[1:] for row in unseen.rows}
    # open-set ACC 0.5, 0.75, 0.5 in % and their mean (see test_metrics for the working)
    assert rows["Attribution ACC (open set, tau = 0.9)"] == pytest.approx((50.0, 75.0, 50.0, 175 / 3))
    # AUC: FFHQ has none of its own; the average is over the two paired fake sets
    assert rows["Detection AUC"][0] is None
    assert rows["Detection AUC"][1:] == pytest.approx((87.5, 75.0, 81.25))
    assert "Attribution ACC (closed set)" not in rows  # unseen sets have no true class
    assert "Video-level AUC" not in rows  # still images only
    assert any("UnseenX, UnseenY" in note and "FFHQ" in note for note in unseen.notes)
    seen_rows = {row[0]: row[1:] for row in seen.rows}
    assert seen_rows["Attribution ACC (closed set)"] == pytest.approx((100.0, 50.0, 75.0))


def test_written_files_round_trip(report, tmp_path):
    written = write_report(report, tmp_path / "out")
    assert written.markdown.name == "evaluation.md"
    assert [p.name for p in written.csv] == ["evaluation-unseen.csv", "evaluation-seen.csv"]

    assert load_report(written.json) == report
    data = json.loads(written.json.read_text())
    by_name = {s["name"]: s for s in data["sets"]}
    assert by_name["UnseenX"]["detection_auc"] == 7 / 8
    assert data["unseen_average"]["open_set_acc"] == report.unseen_average.open_set_acc

    markdown = written.markdown.read_text()
    assert "| Metric | FFHQ | UnseenX | UnseenY | Average |" in markdown
    assert "| --- | ---: | ---: | ---: | ---: |" in markdown
    assert "| Attribution ACC (open set, tau = 0.9) | 50.00 | 75.00 | 50.00 | 58.33 |" in markdown
    assert "| Detection AUC | - | 87.50 | 75.00 | 81.25 |" in markdown

    with written.csv[0].open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Metric", "FFHQ", "UnseenX", "UnseenY", "Average"]
    assert ["Detection AUC", "", "87.50", "75.00", "81.25"] in rows


def test_markdown_escapes_pipes():
    from gazeclip_cli.core.evaluate.tables import Table

    text = to_markdown([Table(key="t", title="T", columns=("Metric", "a|b"), rows=(("x", 0.5),))])
    assert r"| Metric | a\|b |" in text and "| x | 0.50 |" in text


def test_robustness_table_and_files(robustness, tmp_path):
    table = robustness_table(robustness)
    assert table.columns[0] == "Corruption" and table.columns[-1] == "Mean 1-5"
    jpeg, blur = table.rows
    # JPEG: 0.8, 0.7, 0.6, 0.5, 0.4 -> mean 0.6; blur skips the missing level: (0.9 + 0.6 * 3) / 4
    assert jpeg[0] == "JPEG compression" and jpeg[-1] == pytest.approx(60.0)
    assert blur[2] == pytest.approx(90.0) and blur[3] is None and blur[-1] == pytest.approx(67.5)

    written = write_robustness(robustness, tmp_path)
    assert load_robustness(written.json) == robustness
    assert (
        "| Corruption | Severity 0 | Severity 1 | Severity 2 | Severity 3 | Severity 4 | Severity 5 | Mean 1-5 |"
        in (written.markdown.read_text())
    )
    assert written.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_without_the_plot(robustness, tmp_path):
    written = write_robustness(robustness, tmp_path, plot=False)
    assert written.plot is None and written.json.is_file() and not (tmp_path / "robustness.png").exists()


def test_bad_json_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_report(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match="not a readable JSON"):
        load_report(broken)
    grid = tmp_path / "grid.json"
    grid.write_text(
        json.dumps(
            {
                "format": "gazeclip-robustness/1",
                "metric": "m",
                "corruptions": ["jpeg"],
                "severities": [0, 1],
                "values": [[0.5]],
            }
        )
    )
    with pytest.raises(DataError, match="1 x 2 grid"):
        load_robustness(grid)


def test_output_folder_that_is_a_file(report, tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(DataError, match="not a folder"):
        write_report(report, target)


def test_importing_tables_does_not_import_matplotlib():
    code = "import sys, gazeclip_cli.core.evaluate.tables; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_titles_name_the_split(report, robustness):
    assert [t.title for t in report_tables(report, split="val")] == [
        "Unseen sets, val split (layout of Tables II and III)",
        "Seen sets, val split",
    ]
    assert robustness_table(robustness, split="val").title.startswith("Robustness, val split: ")


def test_paper_sized_tables_read_whole_at_80_columns(hand_sets, monkeypatch):
    """Twenty unseen sets with the paper's names: one row per set, nothing cut, no line over 80."""
    from typer.testing import CliRunner

    from gazeclip_cli.cli import output
    from gazeclip_cli.cli.commands.evaluate import by_set

    names = ["VQGAN", "SD-2.1", "DiT", "SiT", "SimSwap", "UniFace", "InSwapper", "e4s", "REFace"]
    names += ["LivePortrait", "LIA", "FSRT", "Real3DPortrait", "AniTalker", "FLOAT", "EDTalk", "DiffusionAct"]
    sets = {"CelebA-HQ": hand_sets["CelebA-HQ"], "GenA": hand_sets["GenA"], "FFHQ": hand_sets["FFHQ"]}
    sets |= {name: hand_sets["UnseenX"] for name in names}
    wide = evaluate_sets(sets, tau=0.9, pair_reals={name: "FFHQ" for name in names})
    monkeypatch.setattr(output.out, "_width", 80)
    with CliRunner().isolation() as (out, _err, _):
        for table in report_tables(wide):
            output.print_table(table.title, *by_set(table))
            for note in table.notes:
                output.prose(f"- {note}", indent=2)
        text = out.getvalue().decode()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    rows = [line for line in text.splitlines() if line.startswith("│ ")]
    for name in names:
        (first, *_) = [r for r in rows if r.startswith(f"│ {name} ")]
        cells = [c.strip() for c in first.split("│")[1:-1]]
        # The first metric is UnseenX's open-set ACC: 3 of its 4 tops are below tau (0.5, 0.6, 0.7).
        assert cells[:2] == [name, "75.00"]
    assert "OSCR" in text and "Unknown AUROC (MSP)" in " ".join(text.split())
