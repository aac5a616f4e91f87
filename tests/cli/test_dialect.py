"""One dialect across commands: -h, metavars, shared option defaults, one-line usage errors,
shell completion, and output (progress bars, tables, prose) that fits 80 columns untruncated."""

from __future__ import annotations

import re

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from gazeclip_cli.cli import options, output
from gazeclip_cli.cli.app import app

runner = CliRunner()


def _command_paths() -> list[list[str]]:
    paths = [[]]
    for name, cmd in get_command(app).commands.items():
        paths.append([name])
        paths += [[name, sub] for sub in getattr(cmd, "commands", {})]
    return paths


COMMANDS = _command_paths()


def _params(path: list[str]) -> list:
    cmd = get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd.params


@pytest.fixture
def width80(monkeypatch):
    """stdout and stderr consoles 80 columns wide, whatever terminal the tests run in."""
    monkeypatch.setattr(output.out, "_width", 80)
    monkeypatch.setattr(output.err, "_width", 80)


def _fits(text: str, width: int = 80) -> None:
    assert "…" not in text, text
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"


def test_every_command_takes_h_as_well_as_help():
    assert {"models", "env"} <= {p[0] for p in COMMANDS if p}
    for path in COMMANDS:
        short, long = runner.invoke(app, [*path, "-h"]), runner.invoke(app, [*path, "--help"])
        assert short.exit_code == 0 and long.exit_code == 0, path
        assert short.stdout == long.stdout and "Usage:" in short.stdout


def test_help_says_what_to_pass():
    for path in COMMANDS:
        text = runner.invoke(app, [*path, "--help"]).stdout
        # no bare Python types (<bool>, <list[str]>, <path>...) and no {argument} braces
        assert not re.search(r"<(bool|str|int|float|path|list\[[^\]]*\])>|\{\w", text), (path, text)
        for param in _params(path):
            if not getattr(param, "is_flag", False):
                assert param.metavar, (path, param.name)  # every value says what it is


def test_device_is_auto_with_one_help_text_in_every_command():
    with_device = {}
    for path in COMMANDS:
        for param in _params(path):
            if "--device" in getattr(param, "opts", []):
                with_device[" ".join(path)] = (param.default, param.help, param.metavar)
    analyses = {" ".join(p) for p in COMMANDS if p[:1] == ["analyze"] and len(p) == 2}
    commands = {"preprocess", "train", "evaluate", "attribute", "scan"}
    assert commands <= set(with_device) and set(with_device) - commands <= analyses
    assert set(with_device.values()) == {("auto", options.DEVICE_HELP, "DEVICE")}
    for name in with_device:
        help_text = runner.invoke(app, [*name.split(), "--help"]).stdout
        text = " ".join(w for w in help_text.split() if w != "│")  # the words, without the panel's border
        assert "auto (CUDA when present, else the CPU), cpu, cuda or cuda:N. [default: auto]" in text


def test_shared_options_have_one_spelling_and_one_default():
    seen: dict[str, set] = {
        "--model": set(),
        "--format": set(),
        "--frames-per-video": set(),
        "--engine": set(),
        "--actors": set(),
    }
    for path in COMMANDS:
        for param in _params(path):
            opts = getattr(param, "opts", [])
            assert "--video-frames" not in opts
            for name in seen:
                if name in opts and not (name == "--model" and path[:1] == ["analyze"]):
                    seen[name].add((param.default, param.metavar, getattr(param, "envvar", None)))
                elif name in opts:  # analyze takes several model folders: repeatable, no default
                    assert param.multiple and param.metavar == "DIR", (path, param)
    assert seen["--model"] == {(options.DEFAULT_MODEL, "DIR", options.MODEL_ENV)}
    assert seen["--format"] == {("table", "table|json", None)}
    assert seen["--frames-per-video"] == {(10, "N", None)}
    assert seen["--engine"] == {("local", "local|ray", None)} and seen["--actors"] == {(0, "N", None)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attribute", "x.jpg", "--format", "xml"], "Invalid value for '--format': 'xml': use table or json"),
        (["attribute", "x.jpg", "--threshold", "abc"], "Invalid value for '--threshold'"),
        (["scan", "evidence"], "Missing option '--out'"),
        (["evaluate"], "Missing argument 'CACHE'"),
        (["train", "cache", "--out", "run", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
        (["weights", "--format", "csv"], "'csv': use table or json"),
        (
            ["preprocess", "faces", "-o", "cache", "--gaze-estimator", "bogus"],
            "Invalid value for --gaze-estimator: unknown gaze estimator 'bogus' "
            "(known: eth-xgaze, l2cs-gaze360, puregaze, small-cnn)",
        ),
        (["scan", "evidence", "-o", "r.csv", "--engine", "spark"], "'--engine': 'spark': use local or ray"),
        (
            ["preprocess", "faces", "-o", "cache", "--actors", "2"],
            "--actors: Ray engine options; add --engine ray",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and "--help" in line
    assert result.stdout == ""


def test_shell_completion_completes_commands_and_options():
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
    # (--show-completion detects the shell from the parent process, so it is not run here)

    def complete(words: str) -> list[str]:
        env = {
            "_GAZECLIP_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        return runner.invoke(app, [], prog_name="gazeclip", env=env).stdout.split()

    assert complete("gazeclip att") == ["attribute"]
    assert complete("gazeclip scan --frames") == ["--frames-per-video"]


# Progress: the one shape, every command's content, at 80 columns.


def _statuses() -> list[tuple[str, str, str]]:
    """(label, unit, status) of every command's bar, filled with large counts."""
    from gazeclip_cli.cli.commands import evaluate, preprocess, scan
    from gazeclip_cli.core.data.preprocess import PreprocessProgress
    from gazeclip_cli.core.evaluate.runner import EvaluateProgress
    from gazeclip_cli.core.inference.scan import ScanProgress

    return [
        (
            "scanning",
            "files",
            scan.bar_status(ScanProgress(1_234_567, 0, 2_345_678, 345_678, 45_678, "x.jpg")),
        ),
        (
            "preprocess",
            "inputs",
            preprocess.bar_status(PreprocessProgress(1, 2, "x", 123_456, 654_321, 12_345)),
        ),
        (
            "evaluate",
            "faces",
            evaluate.bar_status(EvaluateProgress("Gaussian blur, severity 5", 51, 51, 10, 25)),
        ),
        ("epoch 29/29", "steps", "loss 12.3456, 1,234.5 img/s"),
        ("sampling Real3DPortrait", "sets", ""),
        ("hashing for duplicates", "files", ""),
    ]


@pytest.mark.parametrize(("label", "unit", "status"), _statuses())
def test_every_progress_bar_fits_80_columns_dropping_the_least_useful_first(label, unit, status):
    bar = output.Bar(label, unit, enabled=False)
    bar.update(123_456, 2_000_000, status=status)
    for width in (80, 60):
        frame = bar.frame(width)
        _fits(frame, width)
        assert frame.startswith(label) and f"123,456/2,000,000 {unit}" in frame  # never dropped
    wide = bar.frame(250)
    assert status in wide and "ETA" in wide and "━" in wide  # room for every piece
    roomy = output.Bar("scanning", "files", enabled=False)
    roomy.update(5, 10, status="1 fake of 5, 0 failed")
    frame = roomy.frame(80)  # a realistic line keeps the bar and the ETA, drops the elapsed time first
    assert "━" in frame and "ETA" in frame and "1 fake of 5, 0 failed" in frame


def test_training_progress_reads_the_trainers_reports():
    from gazeclip_cli.cli.commands.train import epoch_line, training_reporter

    bar = output.Bar("epoch", "steps", enabled=False)
    report = training_reporter(bar)
    report("start", {"train": 10, "val": 2, "device": "cpu", "epochs": 30, "state": {"epoch": 0}})
    report(
        "step", {"epoch": 3, "step_in_epoch": 7, "steps_in_epoch": 313, "loss": 0.25, "images_per_s": 812.0}
    )
    frame = bar.frame(80)
    _fits(frame)
    assert frame.startswith("epoch 3/29") and "7/313 steps" in frame and "loss 0.2500, 812.0 img/s" in frame
    line = epoch_line(
        {
            "epoch": 3,
            "train_loss": 0.5,
            "val_closed_set_acc": 0.75,
            "val_auc": float("nan"),
            "seconds": 2.0,
            "best_epoch": 3,
        }
    )
    assert line == "epoch 3: loss 0.5000; closed_set_acc 0.750; 2.0 s (best)"  # NaN metrics left out


def test_a_scan_draws_its_bar_within_80_columns(tmp_path, monkeypatch):
    from tests.inference.conftest import aligned_images, make_model_folder

    model = make_model_folder(tmp_path / "model")
    aligned_images(tmp_path / "in", 3)
    buf = __import__("io").StringIO()
    terminal = Console(file=buf, force_terminal=True, width=80, color_system=None)
    monkeypatch.setattr(output, "err", terminal)
    result = runner.invoke(
        app, ["scan", str(tmp_path / "in"), "-o", str(tmp_path / "r.csv"), "-m", str(model), "--aligned"]
    )
    assert result.exit_code == 0, result.output
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue()).replace("\r", "\n")
    assert "scanning" in drawn and "3/3 files" in drawn
    _fits(drawn)


# Tables and prose.


def test_a_wide_table_splits_and_truncates_nothing(width80):
    names = ["Real3DPortrait", "LivePortrait", "DiffusionAct", "WildDeepfake", "CelebA-HQ"]
    columns = ["Set", *(f"Attribution ACC (open set, tau = 0.9) {i}" for i in range(7))]
    rows = [[name, *(100.0 * i / 7 for i in range(7))] for name in names]
    sha = "ab" * 32
    with runner.isolation() as (out, _err, _):
        output.print_table("Unseen sets, test split (layout of Tables II and III)", columns, rows)
        output.print_table("hashes", ["file", "sha256"], [["x.jpg", sha]])
        output.prose("word " * 40 + "supercalifragilistic")
        text = out.getvalue().decode()
    _fits(text)
    assert "(1 of 2)" in text and "(2 of 2)" in text  # split, the Set column repeated
    for name in names:
        assert sum(line.count(f" {name} ") for line in text.splitlines()) == 2  # whole, once per split
    assert sha in text  # a hash stays on one line
    assert "85.71" in text  # 100 * 6 / 7, right where it belongs
    assert "supercalifragilistic" in text  # wrapped at a word boundary, never inside a word


def test_engine_help_keeps_the_extras_brackets():
    for name in ("scan", "preprocess"):
        text = " ".join(w for w in runner.invoke(app, [name, "-h"]).stdout.split() if w != "│")
        assert 'ray: a Ray cluster (the extra: pip install "gazeclip[ray]")' in text, name
