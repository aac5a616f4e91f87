"""`gazeclip export MODEL_DIR`: convert a model folder's test path once for a fast runtime (ONNX Runtime)."""

from __future__ import annotations

import typer

from gazeclip_cli.cli import options, output


def _check_export_runtime(value: str) -> str:
    from gazeclip_cli.core.inference.fast_cpu import EXPORT_RUNTIMES

    if value not in EXPORT_RUNTIMES:
        raise typer.BadParameter(f"'{value}': use {' or '.join(EXPORT_RUNTIMES)}")
    return value


def export_command(
    model_dir: str = typer.Argument(
        ..., metavar="MODEL_DIR", help="Model folder to convert.", show_default=False
    ),
    runtime: str = typer.Option(
        "onnx",
        "--runtime",
        metavar="onnx|onnx-int8",
        callback=_check_export_runtime,
        help="onnx: the same fp32 forward run by ONNX Runtime; onnx-int8: its transformer matmuls in int8.",
    ),
    weights_dir: str | None = options.weights_dir_option(),
    fmt: str = options.format_option("the export's record"),
) -> None:
    """Write <runtime>.onnx and its record (weights checksum, runtime versions) into the model folder.

    `attribute` and `scan` run it with --runtime (auto picks the onnx export on the CPU); after the
    weights change the export is stale and is refused until it is made again.
    """
    from gazeclip_cli.core.inference.fast_cpu import export_files, export_model_folder
    from gazeclip_cli.core.model.builder import WeightSources

    record = export_model_folder(model_dir, runtime, WeightSources(directory=weights_dir))
    if fmt == "json":
        output.print_json(record.as_dict())
        return
    graph, record_file = export_files(model_dir, runtime)
    output.print_table(
        f"export of {model_dir}",
        ["", "value"],
        [
            ["runtime", record.runtime],
            ["graph", str(graph)],
            ["record", str(record_file)],
            ["weights sha256", record.weights_sha256],
            ["onnxruntime", record.onnxruntime_version],
            [
                "largest |difference| from torch",
                f"{record.check_max_abs_diff:.2e} (random inputs, every output)",
            ],
        ],
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
