"""`gazeclip evaluate`: the paper's tables for a model folder on a preprocessed test split."""

from __future__ import annotations

from pathlib import Path

import typer

from gazeclip_cli.cli import output


def evaluate_command(
    cache: Path = typer.Argument(..., help="A `gazeclip preprocess` output folder with a test split."),
    model: Path = typer.Option(Path("models/gazeclip"), "--model", "-m", help="Model folder."),
    out: Path = typer.Option(
        Path("evaluation"), "--out", "-o", help="Folder for the tables (Markdown, CSV, JSON)."
    ),
    threshold: float = typer.Option(
        0.9, "--threshold", help="Open-set threshold tau on the top attribution probability."
    ),
    split: str = typer.Option("test", help="Cache split to evaluate."),
    batch_size: int = typer.Option(32, help="Batch size."),
    workers: int = typer.Option(0, help="DataLoader workers."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    robustness: bool = typer.Option(
        False, "--robustness", help="Also the ten corruptions at severities 1-5 (Fig. 6)."
    ),
    corruption: list[str] = typer.Option(
        None, "--corruption", help="Limit robustness to these corruptions (names in docs/EVALUATION.md)."
    ),
    efficiency: bool = typer.Option(
        False, "--efficiency", help="Also parameters, FLOPs and seconds per image (Table VII)."
    ),
    weights_dir: Path | None = typer.Option(None, "--weights-dir", help="Pretrained weights folder."),
) -> None:
    """Open-set attribution ACC per unseen set, seen-set ACC, detection ACC/AUC, averages, AUROC and OSCR."""
    from gazeclip_cli.core.evaluate.corruptions import CORRUPTION_NAMES
    from gazeclip_cli.core.evaluate.runner import evaluate_model
    from gazeclip_cli.core.model.builder import WeightSources

    for name in corruption or []:
        if name not in CORRUPTION_NAMES:
            raise typer.BadParameter(
                f"unknown corruption '{name}' (known: {', '.join(CORRUPTION_NAMES)})",
                param_hint="--corruption",
            )
    result = evaluate_model(
        model,
        cache,
        out,
        tau=threshold,
        split=split,
        batch_size=batch_size,
        workers=workers,
        device=device,
        robustness=robustness,
        corruptions=tuple(corruption) if corruption else CORRUPTION_NAMES,
        efficiency=efficiency,
        weights=WeightSources(directory=weights_dir),
    )
    if result.preprocessing_note:
        output.warn(result.preprocessing_note)
    tables = list(result.written.tables) + (list(result.robustness.tables) if result.robustness else [])
    for table in tables:
        output.print_table(table.title, list(table.columns), [list(r) for r in table.rows])
        for note in table.notes:
            output.out.print(f"  {note}")
    if result.efficiency:
        e = result.efficiency
        output.print_table(
            "efficiency (Table VII)",
            ["params (M)", "GFLOPs", "s/image (batch 1)", f"s/image (batch {e.batch_size})", "device"],
            [
                [
                    e.params_m,
                    e.gflops_test_path,
                    round(e.seconds_per_image_batch1, 4),
                    round(e.seconds_per_image_batched, 4),
                    e.device,
                ]
            ],
        )
    output.out.print(f"tables written to {result.written.markdown.parent}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
