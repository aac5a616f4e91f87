"""`gazeclip export MODEL_DIR`: convert a model folder's test path once for a fast runtime (ONNX Runtime)."""

from __future__ import annotations

import tempfile
from dataclasses import replace

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
        metavar="onnx|onnx-int8|onnx-int8-static",
        callback=_check_export_runtime,
        help=(
            "onnx: the same fp32 forward run by ONNX Runtime; onnx-int8: its transformer matmuls in int8 "
            "(dynamic); onnx-int8-static: the convolutions too, with activation ranges calibrated on faces."
        ),
    ),
    calibration: list[str] | None = typer.Option(
        None,
        "--calibration",
        metavar="PATH",
        help=(
            "onnx-int8-static: face images or videos (files or folders, walked as scan walks them) like the "
            "ones you will scan, prepared as scan prepares them; repeatable. Default: the demo's synthetic "
            "renders, fit for models trained on the demo only."
        ),
        show_default=False,
    ),
    aligned: bool = typer.Option(
        False, "--aligned", help="The calibration files are aligned face crops (as scan --aligned)."
    ),
    weights_dir: str | None = options.weights_dir_option(),
    fmt: str = options.format_option("the export's record"),
) -> None:
    """Write <runtime>.onnx and its record (weights checksum, runtime versions) into the model folder.

    `attribute` and `scan` run it with --runtime (auto picks the onnx export on the CPU); after the
    weights change the export is stale and is refused until it is made again.
    """
    from gazeclip_cli.core.inference.fast_cpu import (
        CALIBRATED,
        calibration_from,
        export_files,
        export_model_folder,
    )
    from gazeclip_cli.core.model.builder import WeightSources

    if runtime not in CALIBRATED and (calibration or aligned):
        raise typer.BadParameter(
            f"is for --runtime {', '.join(CALIBRATED)} only", param_hint="--calibration, --aligned"
        )
    weights = WeightSources(directory=weights_dir)
    if runtime not in CALIBRATED:
        record = export_model_folder(model_dir, runtime, weights)
    elif calibration:
        record = export_model_folder(model_dir, runtime, weights, calibration_from(calibration, aligned))
    else:
        from gazeclip_cli.core.demo.calibration import demo_calibration

        with tempfile.TemporaryDirectory(prefix="gazeclip-calibration-") as tmp:
            renders = demo_calibration(tmp)
            if aligned:
                renders = replace(renders, aligned=True)
            record = export_model_folder(model_dir, runtime, weights, renders)
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
            *_calibration_rows(record.calibration),
        ],
    )


def _calibration_rows(calibration: dict | None) -> list[list[str]]:
    if calibration is None:
        return []
    worst = ", ".join(f"{name} {value:.2e}" for name, value in calibration["max_abs_diff"].items())
    return [
        ["calibration", calibration["source"]],
        [
            "calibration faces",
            f"{calibration['faces']} from {calibration['files']} files ({calibration['face_mode']})",
        ],
        ["largest |difference| from torch on them", worst],
    ]


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
