"""``gazeclip preprocess``: face crops, normalised gaze patches and a failure list for a manifest or a folder.

Exit codes: 0 the run completed (inputs without a face or unreadable are listed in
``failures.csv``, not an error); 1 an error stopped it; 130 interrupted (Ctrl-C): run the
same command again, it continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gazeclip_cli.cli import engine_options, output
from gazeclip_cli.core.errors import InputError

if TYPE_CHECKING:
    from gazeclip_cli.core.data.preprocess import PreprocessProgress, PreprocessSummary

EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command("preprocess")(preprocess_command)


def preprocess_command(
    source: Path = typer.Argument(
        ...,
        help="Manifest CSV from `gazeclip build-benchmark`, or a folder of images and videos.",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output (cache) folder.", show_default=False),
    aligned: bool = typer.Option(
        False, "--aligned", help="Inputs already are aligned face crops (GenFace, FFHQ...): no detection."
    ),
    face_policy: str = typer.Option(
        "largest", "--face-policy", help="Which faces to keep: largest, score (most confident) or all."
    ),
    frames_per_video: int | None = typer.Option(
        None, "--frames-per-video", help="Frames taken evenly from each video (default 10)."
    ),
    frame_stride: int | None = typer.Option(
        None, "--frame-stride", help="Or: every K-th frame of each video."
    ),
    workers: int = typer.Option(2, "--workers", help="Threads reading and decoding files."),
    batch_size: int = typer.Option(16, "--batch-size", help="Same-size images per face-detection batch."),
    device: str = typer.Option("cpu", "--device", help="Where MTCNN runs: cpu, cuda or cuda:N."),
    camera: Path | None = typer.Option(
        None,
        "--camera",
        help="TOML file with the camera's fx, fy, cx, cy in pixels (default: focal = image width, centre = image centre).",
    ),
    gaze_estimator: str | None = typer.Option(
        None,
        "--gaze-estimator",
        help=(
            "Also store (pitch, yaw) from this frozen estimator (eth-xgaze, puregaze, l2cs-gaze360, small-cnn), "
            "so training never runs it again."
        ),
    ),
    gaze_weights: Path | None = typer.Option(
        None, "--gaze-weights", help="The estimator's weight file (default: found in the weights folder)."
    ),
    weights_dir: Path | None = typer.Option(None, "--weights-dir", help="Pretrained weights folder."),
    engine: str = engine_options.engine_option(),
    address: str | None = engine_options.address_option(),
    actors: int = engine_options.actors_option(),
    cpus_per_task: int = engine_options.cpus_per_task_option(),
    fmt: str = typer.Option("table", "--format", help="Summary as a table or as json."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Detect faces, cut 256x256 crops and ETH-XGaze-normalised 224x224 gaze patches; cached and resumable."""
    # Imported here: torch and MTCNN load in seconds, and `gazeclip --help` should not wait.
    from gazeclip_cli.core.data.gaze_normalization import load_camera
    from gazeclip_cli.core.data.preprocess import PreprocessSettings, preprocess

    if fmt not in ("table", "json"):
        raise InputError(f"--format {fmt}: choose table or json")
    # With Ray, files are read, hashed and decoded here (--workers threads) and every batch is
    # detected, prepared and estimated by the cluster's workers (docs/SCALE-OUT.md).
    ray = engine_options.ray_options(engine, address, actors, cpus_per_task, device, local_flags=[])
    if frames_per_video is not None and frame_stride is not None:
        raise InputError("--frames-per-video and --frame-stride exclude each other; give one")
    settings = PreprocessSettings(
        aligned=aligned,
        face_policy=face_policy,
        frames_per_video=frames_per_video,
        frame_stride=frame_stride,
        camera=None if camera is None else load_camera(camera),
    )
    kwargs = {
        "settings": settings,
        "device": device,
        "workers": workers,
        "batch_size": batch_size,
        "ray": ray,
    }
    if gaze_estimator is not None:
        from gazeclip_cli.core.model.builder import WeightSources, build_frozen_gaze_estimator
        from gazeclip_cli.core.model.gaze_estimator import estimator_config

        cfg = estimator_config(gaze_estimator)
        overrides = {cfg.weights: gaze_weights} if gaze_weights else {}
        estimator, _ = build_frozen_gaze_estimator(
            cfg, WeightSources(directory=weights_dir, overrides=overrides)
        )
        kwargs["gaze_estimator"] = estimator
    try:
        if not quiet and output.err.is_terminal:
            summary = _with_bar(source, out, kwargs)
        else:
            summary = preprocess(source, out, **kwargs)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        output.error(f"interrupted; finished samples are cached in {out}: run the same command to continue")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    if quiet:
        return
    if fmt == "json":
        from dataclasses import asdict

        output.print_json(asdict(summary))
    else:
        print_summary(summary)


def _with_bar(source: Path, out: Path, kwargs: dict) -> PreprocessSummary:
    from gazeclip_cli.core.data.preprocess import preprocess

    with Progress(
        TextColumn("preprocess"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=output.err,
        transient=True,
    ) as bar:
        task = bar.add_task("preprocess", total=None, detail="")

        def progress(p: PreprocessProgress) -> None:
            detail = f"new {p.new:,}  cached {p.cached:,}  failed {p.failed:,}"
            bar.update(task, completed=p.done, total=p.total, detail=detail)

        return preprocess(source, out, progress=progress, **kwargs)


def print_summary(summary: PreprocessSummary) -> None:
    """The run's summary as a table, then where the outputs are."""
    rows: list[list[object]] = [
        ["inputs", summary.inputs],
        ["samples (faces) written", summary.samples],
        ["  computed now", summary.new],
        ["  taken from the cache", summary.cached],
        ["with gaze (pitch, yaw)", summary.gaze_samples],
        ["failures", summary.failures],
    ]
    rows += [[f"  {kind.replace('_', ' ')}", n] for kind, n in summary.failures_by_kind.items()]
    if summary.ignored_files:
        rows.append(["files ignored (no image or video extension)", summary.ignored_files])
    rows.append(["seconds", round(summary.seconds, 1)])
    output.print_table(f"preprocess -> {summary.out_dir}", ["", "count"], rows)
    output.out.print(f"samples: {summary.preprocessed_csv}")
    if summary.failures:
        output.warn(
            f"{summary.failures:,} inputs, frames or faces gave no sample; reasons in {summary.failures_csv}"
        )
