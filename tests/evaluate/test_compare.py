"""`gazeclip compare` on result folders written here with hand-made numbers.

Every expected cell is worked out by hand beside the numbers it comes from.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.evaluate.compare import compare, load_rows, rank_marks, write_comparison
from gazeclip_cli.core.evaluate.metrics import EvaluationReport, RobustnessResult, SetMetrics
from gazeclip_cli.core.evaluate.result_folder import write_efficiency, write_provenance
from gazeclip_cli.core.evaluate.tables import write_report, write_robustness
from gazeclip_cli.core.model.config import load_architecture

runner = CliRunner()


def _set(
    name: str, open_acc: float, det_acc: float, det_auc: float | None, kind: str = "unseen"
) -> SetMetrics:
    return SetMetrics(
        name=name,
        kind=kind,
        num_samples=10,
        open_set_acc=open_acc,
        closed_set_acc=None,
        detection_acc=det_acc,
        detection_auc=det_auc,
        detection_eer=None,
        detection_ap=None,
        video_auc=None,
        num_videos=0,
        paired_with="FFHQ" if det_auc is not None else None,
        unknown_auroc=None,
        oscr=None,
    )


def result_folder(
    root: Path,
    name: str,
    sets: dict[str, tuple[float, float, float | None]],
    *,
    arch: str = "tiny-test-resnet",
    cfg=None,
    tau: float = 0.9,
    index: str = "a" * 64,
    split: str = "test",
    efficiency: dict | None = None,
    robustness: RobustnessResult | None = None,
) -> Path:
    """An evaluate folder: evaluation.json from ``sets`` (open ACC, detection ACC, AUC), provenance.json."""
    out = root / name
    report = EvaluationReport(
        tau=tau,
        sets=tuple(_set(n, *v) for n, v in sets.items()),
        unseen_average=None,
        seen_average=None,
        unknown_auroc=None,
        oscr=None,
    )
    write_report(report, out)
    if efficiency is not None:
        write_efficiency(out, efficiency)
    if robustness is not None:
        write_robustness(robustness, out, plot=False)
    write_provenance(
        out,
        cfg=cfg or load_architecture(arch),
        model_dir=root / f"{name}-model",
        model_meta={"weight_files": {}},
        model_sha256=name[0] * 64,
        weights_sha256="w" * 64,
        cache_dir=root / "cache",
        cache_index_sha256=index,
        split=split,
        set_sizes={n: 10 for n in sets},
        tau=tau,
        device="cpu",
        robustness=None if robustness is None else {"corruptions": list(robustness.corruptions)},
    )
    return out


#                 FFHQ: open, det ACC, AUC | SimSwap          | FLUX
METHODS = {
    "resnet": {"FFHQ": (0.40, 0.70, None), "SimSwap": (0.50, 0.80, 0.60), "FLUX": (0.10, 0.50, 0.40)},
    "vit": {"FFHQ": (0.60, 0.60, None), "SimSwap": (0.50, 0.90, 0.70), "FLUX": (0.30, 0.40, 0.50)},
    "gazeclip": {"FFHQ": (0.05, 0.80, None), "SimSwap": (0.90, 0.85, 0.80), "FLUX": (0.70, 0.60, 0.90)},
}
ARCHS = {"resnet": "tiny-test-resnet", "vit": "tiny-test-vit", "gazeclip": "tiny-test"}


@pytest.fixture
def folders(tmp_path):
    return [result_folder(tmp_path, m, sets, arch=ARCHS[m]) for m, sets in METHODS.items()]


def test_attribution_layout_cells_averages_and_marks(folders, tmp_path):
    rows = load_rows([(None, f) for f in folders])
    assert [r.label for r in rows] == ["tiny-test-resnet", "tiny-test-vit", "tiny-test"]  # architectures
    table = compare(rows, "attribution").table
    assert table.columns == ("Method", "FFHQ", "SimSwap", "FLUX", "Average", "Detection ACC", "Detection AUC")
    by = {r[0]: r[1:] for r in table.rows}
    # resnet: open (40 + 50 + 10) / 3 = 33.33; detection ACC (70 + 80 + 50) / 3 = 66.67; AUC over
    # the two sets that have one: (60 + 40) / 2 = 50
    assert by["tiny-test-resnet"] == pytest.approx((40, 50, 10, 100 / 3, 200 / 3, 50))
    # vit: (60 + 50 + 30) / 3 = 46.67; (60 + 90 + 40) / 3 = 63.33; (70 + 50) / 2 = 60
    assert by["tiny-test-vit"] == pytest.approx((60, 50, 30, 140 / 3, 190 / 3, 60))
    # gazeclip: (5 + 90 + 70) / 3 = 55; (80 + 85 + 60) / 3 = 75; (80 + 90) / 2 = 85
    assert by["tiny-test"] == pytest.approx((5, 90, 70, 55, 75, 85))
    marks = {r[0]: table.marks[i][1:] for i, r in enumerate(table.rows)}
    # FFHQ 40 / 60 / 5: vit best, resnet second. SimSwap 50 / 50 / 90: gazeclip best, the tie second.
    assert marks["tiny-test-vit"][0] == "best" and marks["tiny-test-resnet"][0] == "second"
    assert marks["tiny-test"][0] == "" and marks["tiny-test"][1] == "best"
    assert marks["tiny-test-resnet"][1] == marks["tiny-test-vit"][1] == "second"
    # Average 33.33 / 46.67 / 55: gazeclip, vit. Detection ACC 66.67 / 63.33 / 75: gazeclip, resnet.
    assert [marks[m][3] for m in ("tiny-test-resnet", "tiny-test-vit", "tiny-test")] == ["", "second", "best"]
    assert [marks[m][4] for m in ("tiny-test-resnet", "tiny-test-vit", "tiny-test")] == ["second", "", "best"]

    written = write_comparison(compare(rows, "attribution"), tmp_path / "out")
    md = written.markdown.read_text(encoding="utf-8")
    assert "| tiny-test | 5.00 | **90.00** | **70.00** | **55.00** | **75.00** | **85.00** |" in md
    assert "| tiny-test-resnet | <u>40.00</u> | <u>50.00</u> | 10.00 | 33.33 | <u>66.67</u> | 50.00 |" in md
    with written.csv.open(encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    assert lines[0][0] == "Method" and lines[2] == [
        "tiny-test-vit",
        "60.00",
        "50.00",
        "30.00",
        "46.67",
        "63.33",
        "60.00",
    ]
    data = json.loads(written.json.read_text())
    assert data["layout"] == "attribution" and [r["label"] for r in data["rows"]][0] == "tiny-test-resnet"
    assert data["rows"][2]["marks"][1] == "best" and data["rows"][0]["cells"][0] == pytest.approx(40.0)
    assert data["rows"][0]["model_sha256"] == "r" * 64 and data["test"]["index_sha256"] == "a" * 64


def test_columns_in_the_order_given_and_averaged_over_them(folders):
    rows = load_rows([("ResNet", folders[0]), ("ViT", folders[1])])  # labels given: rows keep them
    table = compare(rows, "attribution", sets=["FLUX", "SimSwap"]).table
    assert table.columns[1:4] == ("FLUX", "SimSwap", "Average")
    # ResNet over FLUX and SimSwap only: (10 + 50) / 2 = 30; AUC (40 + 60) / 2 = 50
    assert table.rows[0] == (
        "ResNet",
        pytest.approx(10),
        pytest.approx(50),
        pytest.approx(30),
        pytest.approx(65),
        pytest.approx(50),
    )
    with pytest.raises(ConfigError, match="no test set 'SimSwp'.*did you mean 'SimSwap'"):
        compare(rows, "attribution", sets=["SimSwp"])
    with pytest.raises(ConfigError, match="unknown layout 'atribution'.*did you mean 'attribution'"):
        compare(rows, "atribution")


def test_detection_layout(folders):
    table = compare(load_rows([(None, f) for f in folders]), "detection", sets=["SimSwap", "FLUX"]).table
    assert table.columns == (
        "Method",
        "SimSwap ACC",
        "SimSwap AUC",
        "FLUX ACC",
        "FLUX AUC",
        "Average ACC",
        "Average AUC",
    )
    # vit: 90, 70, 40, 50; averages (90 + 40) / 2 = 65, (70 + 50) / 2 = 60
    assert table.rows[1][1:] == pytest.approx((90, 70, 40, 50, 65, 60))
    assert [m[1] for m in table.marks] == ["", "best", "second"]  # SimSwap ACC 80 / 90 / 85


def test_folders_of_other_test_data_or_thresholds_are_refused(tmp_path):
    base = result_folder(tmp_path, "a", METHODS["resnet"])
    cases = {
        "b": ({"index": "b" * 64}, r"different test sets \(cache index SHA-256 bbbbbbbbbbbb\.\.\."),
        "c": ({"tau": 0.5}, r"different thresholds \(tau 0.5 and 0.9\)"),
        "d": ({"split": "val"}, r"different splits \('val' and 'test'\)"),
    }
    for name, (kwargs, message) in cases.items():
        other = result_folder(tmp_path, name, METHODS["vit"], arch="tiny-test-vit", **kwargs)
        with pytest.raises(DataError, match=message) as err:
            compare(load_rows([(None, base), (None, other)]))
        assert str(other) in str(err.value) and str(base) in str(err.value)
    fewer = result_folder(
        tmp_path, "e", {k: METHODS["vit"][k] for k in ("FFHQ", "SimSwap")}, arch="tiny-test-vit"
    )
    with pytest.raises(DataError, match="'FLUX' has no samples in the first and 10 in the second"):
        compare(load_rows([(None, base), (None, fewer)]))


def test_wild_layout_adds_cost_columns_which_are_not_marked(tmp_path):
    eff = {"params_m": 11.18, "gflops_test_path": 3.64, "seconds_per_image_batch1": 0.02, "device": "cpu"}
    a = result_folder(tmp_path, "a", METHODS["resnet"], efficiency=eff)
    b = result_folder(tmp_path, "b", METHODS["vit"], arch="tiny-test-vit")
    table = compare(load_rows([(None, a), (None, b)]), "wild").table
    assert table.columns[-4:] == ("Params (M)", "GMACs", "GFLOPs", "s / image")
    assert table.rows[0][-4:] == pytest.approx((11.18, 1.82, 3.64, 0.02))  # GMACs = GFLOPs / 2
    assert table.rows[1][-4:] == (None, None, None, None)
    assert all(m[-4:] == ("", "", "", "") for m in table.marks)
    assert any("evaluate with --efficiency" in n and "tiny-test-vit" in n for n in table.notes)


def test_ablation_rows_are_runs_and_the_differing_settings_are_columns(tmp_path):
    cfg = load_architecture("tiny-test")
    runs = {
        "w-aws": (replace(cfg, aws=True), {"FFHQ": (0.2, 0.9, None), "FLUX": (0.8, 0.9, 0.7)}),
        "wo-aws": (replace(cfg, aws=False), {"FFHQ": (0.1, 0.8, None), "FLUX": (0.5, 0.7, 0.6)}),
        "wo-aws-between": (
            replace(cfg, aws=False, aws_placement="between"),
            {"FFHQ": (0.3, 0.7, None), "FLUX": (0.6, 0.8, 0.5)},
        ),
    }
    folders = [result_folder(tmp_path, n, sets, cfg=c) for n, (c, sets) in runs.items()]
    rows = load_rows([(None, f) for f in folders])
    assert [r.label for r in rows] == list(runs)  # one architecture: rows named by folder
    table = compare(rows, "ablation").table
    assert table.columns == (
        "Run",
        "aws",
        "aws_placement",
        "Attribution ACC",
        "Detection ACC",
        "Detection AUC",
    )
    assert table.rows[0][:3] == ("w-aws", "✓", "before") and table.rows[2][:3] == (
        "wo-aws-between",
        "✗",
        "between",
    )
    # w-aws: (20 + 80) / 2 = 50, (90 + 90) / 2 = 90, AUC 70; wo-aws: 30, 75, 60; between: 45, 75, 50
    assert table.rows[1][3:] == pytest.approx((30, 75, 60))
    assert [m[3] for m in table.marks] == ["best", "", "second"]
    assert [m[4] for m in table.marks] == ["best", "second", "second"]  # the tie at 75 shares the mark
    assert all(m[1] == m[2] == "" for m in table.marks)  # settings are not ranked


def _robustness(values_jpeg, values_blur) -> RobustnessResult:
    return RobustnessResult(
        metric="unseen.open_set_acc",
        corruptions=("jpeg", "gaussian_blur"),
        severities=(0, 1, 2),
        values=(tuple(values_jpeg), tuple(values_blur)),
    )


def test_robustness_of_several_methods_in_one_table_and_one_figure(tmp_path):
    a = result_folder(
        tmp_path, "a", METHODS["resnet"], robustness=_robustness([0.5, 0.4, 0.2], [0.5, 0.3, 0.3])
    )
    b = result_folder(
        tmp_path,
        "b",
        METHODS["vit"],
        arch="tiny-test-vit",
        robustness=_robustness([0.6, 0.6, 0.4], [0.6, 0.1, 0.1]),
    )
    comparison = compare(load_rows([(None, a), (None, b)]), "robustness")
    table = comparison.table
    assert table.columns == ("Method", "Clean", "JPEG compression", "Gaussian blur", "Mean 1-2")
    # resnet: JPEG (40 + 20) / 2 = 30, blur (30 + 30) / 2 = 30, mean of the four = 30
    assert table.rows[0][1:] == pytest.approx((50, 30, 30, 30))
    # vit: JPEG 50, blur 10, mean (60 + 40 + 10 + 10) / 4 = 30: tied with resnet, both marked best
    assert table.rows[1][1:] == pytest.approx((60, 50, 10, 30))
    assert [m[4] for m in table.marks] == ["best", "best"]
    written = write_comparison(comparison, tmp_path / "out")
    assert written.plot is not None and written.plot.stat().st_size > 1000
    other = result_folder(
        tmp_path,
        "c",
        METHODS["gazeclip"],
        arch="tiny-test",
        robustness=RobustnessResult("unseen.open_set_acc", ("jpeg",), (0, 1, 2), ((0.5, 0.4, 0.3),)),
    )
    with pytest.raises(DataError, match="different robustness corruptions"):
        compare(load_rows([(None, a), (None, other)]), "robustness")
    plain = result_folder(tmp_path, "d", METHODS["gazeclip"], arch="tiny-test")
    with pytest.raises(DataError, match="no robustness.json; evaluate with --robustness"):
        compare(load_rows([(None, a), (None, plain)]), "robustness")


def test_rank_marks_at_the_printed_precision():
    assert rank_marks([1.0, 3.0, 2.0]) == ["", "best", "second"]
    assert rank_marks([80.664, 80.661, 70.0]) == ["best", "best", "second"]  # both print 80.66
    assert rank_marks([None, 5.0, 5.0]) == ["", "best", "best"]
    assert rank_marks([5.0, None]) == ["", ""]  # one value: nothing to compare


def test_compare_cli_writes_the_table_and_refuses_a_mismatch(folders, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", f"ResNet={folders[0]}", str(folders[2]), "--out", str(out), "--sets", "SimSwap,FLUX"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ResNet" in result.stdout and (out / "compare-attribution.md").exists()
    assert (out / "compare-attribution.csv").exists() and (out / "compare-attribution.json").exists()
    md = (out / "compare-attribution.md").read_text(encoding="utf-8")
    assert "| ResNet | <u>50.00</u> | <u>10.00</u> |" in md
    other = result_folder(tmp_path, "x", METHODS["vit"], arch="tiny-test-vit", tau=0.5)
    bad = runner.invoke(app, ["compare", str(folders[0]), str(other), "--out", str(out)])
    assert bad.exit_code == 1 and "different thresholds" in bad.stderr and "Traceback" not in bad.output
    missing = runner.invoke(app, ["compare", str(tmp_path / "nowhere"), "--out", str(out)])
    assert missing.exit_code == 1 and "no such result folder" in missing.stderr


def test_compare_takes_the_columns_of_a_protocol_group(tmp_path):
    sets = {
        "VAE": (0.6, 0.5, 0.4),
        "HART": (0.8, 0.5, 0.3),
        "FLUX": (0.7, 0.5, 0.5),
        "FFHQ": (0.1, 0.9, None),
    }
    a = result_folder(tmp_path, "a", sets)
    protocol = Path(__file__).resolve().parents[2] / "configs" / "protocol.toml"
    out = tmp_path / "cmp"
    result = runner.invoke(
        app, ["compare", str(a), "--out", str(out), "--group", "table8", "--protocol", str(protocol)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "compare-attribution.json").read_text())
    assert data["columns"][1:5] == ["VAE", "HART", "FLUX", "Average"] and data["title"].startswith(
        "Table VIII"
    )
    assert data["rows"][0]["cells"][3] == pytest.approx(70.0)  # (60 + 80 + 70) / 3, FFHQ left out
