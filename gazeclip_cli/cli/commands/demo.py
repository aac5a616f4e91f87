"""`gazeclip demo`: the whole pipeline on the embedded synthetic benchmark, on the CPU."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from gazeclip_cli.cli import output

HONEST_NOTE = (
    "This demo is synthetic: procedurally rendered faces and made-up 'generators' with distinct traces, "
    "the demo-small architecture with randomly initialised frozen CLIP towers, and a gaze estimator fitted "
    "on the renders themselves (their gaze is known) instead of ETH-XGaze. It shows every stage working and "
    "learning; it says nothing about real deepfakes. Real use needs the CLIP and ETH-XGaze weights "
    "(`gazeclip weights`) and the datasets of the paper's protocol (`gazeclip build-benchmark`)."
)


def demo_command(
    out: Path = typer.Option(
        Path("demo-output"), "--out", "-o", help="Folder for everything the demo writes."
    ),
    quick: bool = typer.Option(False, "--quick", help="A smaller variant (what CI runs)."),
    seed: int = typer.Option(0, help="Seed of the renders, the gaze fit and training."),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="Torch threads of every stage (default: 1); the same count and CPU kernels give the same figures.",
        show_default=False,
    ),
) -> None:
    """Render a synthetic benchmark, preprocess, train, evaluate and attribute, end to end."""
    from gazeclip_cli.core.demo.pipeline import DemoConfig, run_demo

    config = (DemoConfig.quick if quick else DemoConfig.standard)(seed, threads=threads)
    output.info(HONEST_NOTE)
    start = time.perf_counter()

    def report(kind: str, info: dict[str, Any]) -> None:
        if kind == "stage":
            output.info(f"[{time.perf_counter() - start:6.1f} s] {info['text']}")
        elif kind == "epoch":
            output.info(
                f"         epoch {info['epoch']}: loss {info['train_loss']:.3f}, "
                f"val closed-set acc {info.get('val_seen_closed_set_acc', float('nan')):.3f}, "
                f"val detection AUC {info.get('val_seen_detection_auc', float('nan')):.3f}"
            )

    result = run_demo(out, config, progress=report)
    for table in result.evaluation.written.tables:
        output.print_table(table.title, list(table.columns), [list(r) for r in table.rows])
    output.print_table(
        "seen classes (held-out test renders)",
        ["class", "test renders", "closed-set attribution ACC", "detection ACC"],
        [[c.name, c.num_samples, c.closed_set_acc, c.detection_acc] for c in result.per_class],
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
            ["seen sets: detection AUC", h["seen_detection_auc"], "chance 0.50"],
            [
                "unseen generators: rejected as unknown (open-set ACC)",
                h["unseen_rejected_as_unknown"],
                "tau 0.9",
            ],
            [
                "gaze estimator: held-out angular error (deg)",
                result.gaze_error_deg,
                f"mean-gaze baseline {result.gaze_baseline_deg:.1f}",
            ],
        ],
    )
    for item in result.attributed:
        for face in item["faces"]:
            output.out.print(
                f"{Path(item['file']).relative_to(out.resolve()) if Path(item['file']).is_absolute() else item['file']}: "
                f"{face['verdict']} (P(fake) {face['p_fake']:.2f}), {face['attribution']} "
                f"(top {face['generator']} {face['generator_probability']:.2f})"
            )
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    output.out.print(
        f"time: {stages}; total {sum(result.seconds.values()):.0f} s wall, "
        f"{sum(result.cpu_seconds.values()):.0f} s CPU; {result.threads} thread(s), "
        f"CPU kernels {result.cpu_capability}"
    )
    output.out.print(f"tables: {result.evaluation.written.markdown}; HTML report: {result.report_html}")
    output.out.print(f"model folder: {result.train.model_dir}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
