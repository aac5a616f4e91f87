"""`gazeclip evaluate`: the paper's tables for a model folder on a preprocessed test split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gazeclip_cli.cli import options, output

if TYPE_CHECKING:
    from gazeclip_cli.core.evaluate.runner import EvaluateProgress, EvaluateResult
    from gazeclip_cli.core.evaluate.tables import Table


def evaluate_command(
    cache: Path = typer.Argument(
        ..., metavar="CACHE", help="A `gazeclip preprocess` output folder with a test split."
    ),
    model: str = options.model_option(),
    out: Path = typer.Option(
        Path("evaluation"), "--out", "-o", metavar="DIR", help="Folder for the tables (Markdown, CSV, JSON)."
    ),
    threshold: float = options.threshold_option(),
    split: str = typer.Option("test", "--split", metavar="NAME", help="Cache split to evaluate."),
    batch_size: int = typer.Option(32, "--batch-size", metavar="N", help="Batch size."),
    workers: int = typer.Option(0, "--workers", metavar="N", help="DataLoader workers."),
    device: str = options.device_option(),
    robustness: bool = typer.Option(
        False, "--robustness", help="Also the ten corruptions at severities 1-5 (Fig. 6)."
    ),
    corruption: list[str] = typer.Option(
        None,
        "--corruption",
        metavar="NAME",
        help="Limit robustness to this corruption (repeatable; names in docs/EVALUATION.md).",
        show_default=False,
    ),
    efficiency: bool = typer.Option(
        False, "--efficiency", help="Also parameters, FLOPs and seconds per image (Table VII)."
    ),
    weights_dir: Path | None = options.weights_dir_option(),
    fmt: str = options.format_option("every result, as the JSON files hold it"),
    quiet: bool = options.quiet_option("No progress bar."),
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
    with output.progress("evaluate", "faces", quiet=quiet) as bar:

        def progress(p: EvaluateProgress) -> None:
            bar.update((p.pass_index - 1) * p.total + p.done, p.passes * p.total, status=bar_status(p))

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
            progress=progress,
        )
    if result.preprocessing_note:
        output.warn(result.preprocessing_note)
    if fmt == "json":
        output.print_json(result_json(result))
        output.info(f"tables written to {result.written.markdown.parent}")
        return
    print_result(result)
    output.prose(f"tables written to {result.written.markdown.parent}")


def bar_status(p: EvaluateProgress) -> str:
    """Which pass over the split is running (the clean one, then each corruption x severity)."""
    return p.pass_name if p.passes == 1 else f"pass {p.pass_index}/{p.passes}: {p.pass_name}"


def result_json(result: EvaluateResult) -> dict[str, Any]:
    """Everything ``evaluate`` computed, as the JSON files beside the tables hold it."""
    written = result.written
    files = {
        "markdown": str(written.markdown),
        "csv": [str(p) for p in written.csv],
        "json": str(written.json),
    }
    return {
        "notice": result.notice,
        "split": result.split,
        "evaluation": result.report.to_dict(),
        "robustness": None if result.robustness is None else json.loads(result.robustness.json.read_text()),
        "efficiency": None if result.efficiency is None else result.efficiency.as_dict(),
        "files": files,
    }


def by_set(table: Table) -> tuple[list[str], list[list[Any]]]:
    """A paper-layout table (metrics as rows, sets as columns) turned for a terminal: one row per set."""
    metrics = [str(row[0]) for row in table.rows]
    columns = ["Set", *metrics]
    rows = [[name, *(row[i] for row in table.rows)] for i, name in enumerate(table.columns[1:], start=1)]
    return columns, rows


def print_result(result: EvaluateResult) -> None:
    """The tables at the terminal's width: a row per test set, metrics as columns; notes as prose."""
    if result.notice:
        output.prose(f"NOTE: {result.notice}.", style="bold yellow")
    for table in result.written.tables:
        output.print_table(table.title, *by_set(table))
        _notes(table)
    if result.robustness:
        for table in result.robustness.tables:
            output.print_table(table.title, list(table.columns), [list(r) for r in table.rows])
            _notes(table)
    if result.efficiency:
        e = result.efficiency
        output.print_table(
            "Efficiency (Table VII)",
            [
                "params (M)",
                "GFLOPs",
                "GMACs",
                "s/image (batch 1)",
                f"s/image (batch {e.batch_size})",
                "device",
            ],
            [
                [
                    e.params_m,
                    e.gflops_test_path,
                    e.gmacs_test_path,
                    f"{e.seconds_per_image_batch1:.4f}",
                    f"{e.seconds_per_image_batched:.4f}",
                    e.device,
                ]
            ],
        )


def _notes(table: Table) -> None:
    for note in table.notes:
        output.prose(f"- {note}", indent=2)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
