"""`gazeclip demo`: the whole pipeline on the embedded synthetic benchmark, on the CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gazeclip_cli.cli import options, output
from gazeclip_cli.cli.commands.evaluate import bar_status as evaluate_status
from gazeclip_cli.cli.commands.evaluate import print_result as print_evaluation
from gazeclip_cli.cli.commands.preprocess import bar_status as preprocess_status
from gazeclip_cli.cli.commands.train import training_reporter

if TYPE_CHECKING:
    from gazeclip_cli.core.demo.pipeline import DemoResult

HONEST_NOTE = (
    "This demo is synthetic: procedurally rendered faces and made-up 'generators' with distinct traces, "
    "the demo-small architecture with randomly initialised frozen CLIP towers, and a gaze estimator fitted "
    "on the renders themselves (their gaze is known) instead of ETH-XGaze. It shows every stage working and "
    "learning; it says nothing about real deepfakes. Real use needs the CLIP and ETH-XGaze weights "
    "(`gazeclip weights`) and the datasets of the paper's protocol (`gazeclip build-benchmark`)."
)


def demo_command(
    out: Path = typer.Option(
        Path("demo-output"), "--out", "-o", metavar="DIR", help="Folder for everything the demo writes."
    ),
    quick: bool = typer.Option(False, "--quick", help="A smaller variant (what CI runs)."),
    seed: int = typer.Option(
        0, "--seed", metavar="N", help="Seed of the renders, the gaze fit and training."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        metavar="N",
        help="Torch threads of every stage (default: 1); the same count and CPU kernels give the same figures.",
        show_default=False,
    ),
    quiet: bool = options.quiet_option("No progress bar."),
) -> None:
    """Render a synthetic benchmark, preprocess, train, evaluate and attribute, end to end."""
    from gazeclip_cli.core.demo.pipeline import DemoConfig, run_demo

    config = (DemoConfig.quick if quick else DemoConfig.standard)(seed, threads=threads)
    output.prose(HONEST_NOTE, console=output.err)
    start = time.perf_counter()
    with output.progress("demo", "steps", quiet=quiet) as bar:
        result = run_demo(out, config, progress=demo_reporter(bar, start))
    _print_result(result, out)


def demo_reporter(bar: output.Bar, start: float) -> Callable[[str, dict[str, Any]], None]:
    """Each demo stage on the bar (a line when it starts); training as ``gazeclip train`` shows it."""
    train_report = training_reporter(bar)

    def report(kind: str, info: dict[str, Any]) -> None:
        if kind == "stage":
            bar.print(f"[{time.perf_counter() - start:6.1f} s] {info['text']}")
            bar.update(0, label=info["name"], status="", restart=True)
        elif kind == "render":
            bar.update(info["done"], info["total"], unit="images")
        elif kind == "gaze":
            bar.update(info["done"], info["total"], unit="images" if info["phase"] == "render" else "steps")
        elif kind == "preprocess":
            p = info["progress"]
            bar.update(p.done, p.total, unit="inputs", status=preprocess_status(p))
        elif kind == "evaluate":
            p = info["progress"]
            bar.update(p.done, p.total, unit="faces", status=evaluate_status(p))
        elif kind == "start":
            bar.update(unit="steps")
            train_report(kind, info)
        else:
            train_report(kind, info)

    return report


def _print_result(result: DemoResult, out: Path) -> None:
    print_evaluation(result.evaluation)
    output.print_table(
        "seen classes (held-out test renders)",
        ["class", "test renders", "closed-set attribution ACC", "attributed with p >= tau", "detection ACC"],
        [
            [c.name, c.num_samples, c.closed_set_acc, c.open_set_acc, c.detection_acc]
            for c in result.per_class
        ],
    )
    h = result.headline
    output.print_table(
        f"demo headline (held-out test renders; {result.threads} thread(s), CPU kernels {result.cpu_capability})",
        ["measure", "value", "reference"],
        [
            [
                "seen generators: closed-set attribution ACC",
                h["seen_closed_set_acc"],
                f"chance {h['chance_closed_set_acc']:.2f}",
            ],
            [
                "seen sets: attributed with p >= tau (open-set ACC)",
                h["seen_open_set_acc"],
                f"tau {result.evaluation.report.tau:g}; {h['seen_test_faces']} faces",
            ],
            ["seen sets: detection AUC", h["seen_detection_auc"], "chance 0.50"],
            [
                "unseen sets: rejected as unknown (open-set ACC)",
                h["unseen_rejected_as_unknown"],
                f"tau {result.evaluation.report.tau:g}; {h['unseen_test_faces']} faces",
            ],
            [
                "gaze estimator: held-out angular error (deg)",
                result.gaze_error_deg,
                f"mean-gaze baseline {result.gaze_baseline_deg:.1f}",
            ],
        ],
    )
    for item in result.attributed:
        file = Path(item["file"])
        shown = file.relative_to(out.resolve()) if file.is_absolute() else file
        for face in item["faces"]:
            output.prose(
                f"{shown}: {face['verdict']} (P(fake) {face['p_fake']:.2f}), attribution {face['attribution']} "
                f"(top class {face['generator']}, p {face['generator_probability']:.2f})"
            )
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    output.prose(
        f"time: {stages}; total {sum(result.seconds.values()):.0f} s wall, "
        f"{sum(result.cpu_seconds.values()):.0f} s CPU; {result.threads} thread(s), "
        f"CPU kernels {result.cpu_capability}"
    )
    output.prose(f"tables: {result.evaluation.written.markdown}")
    output.prose(f"HTML report: {result.report_html}")
    model = result.train.model_dir
    output.prose(f"analyses (Figs 1 and 10, with their CSV and JSON): {result.analysis_dir}")
    output.prose(f"model folder: {model}")
    output.prose(
        f"attribute with it: gazeclip attribute IMAGE --model {model} (the folder records that its faces are "
        "aligned crops, so no --aligned is needed)"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
