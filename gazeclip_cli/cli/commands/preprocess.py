"""``gazeclip preprocess``: face crops, normalised gaze patches and a failure list for a manifest or a folder.

Exit codes: 0 the run completed (inputs without a face or unreadable are listed in
``failures.csv``, not an error); 1 an error stopped it; 130 interrupted (Ctrl-C): run the
same command again, it continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gazeclip_cli.cli import options, output

if TYPE_CHECKING:
    from gazeclip_cli.core.data.preprocess import PreprocessProgress, PreprocessSummary

EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command("preprocess")(preprocess_command)


def preprocess_command(
    ctx: typer.Context,
    source: Path = typer.Argument(
        ...,
        metavar="SOURCE",
        help="Manifest CSV from `gazeclip build-benchmark`, or a folder of images and videos.",
        show_default=False,
    ),
    out: Path = options.out_option("DIR", "Output (cache) folder."),
    aligned: bool = typer.Option(
        False, "--aligned", help="Inputs already are aligned face crops (GenFace, FFHQ...): no detection."
    ),
    face_policy: str = typer.Option(
        "largest",
        "--face-policy",
        metavar="POLICY",
        help="Which faces to keep: largest, score (most confident) or all.",
    ),
    frames_per_video: int = options.frames_option(),
    frame_stride: int | None = typer.Option(
        None, "--frame-stride", metavar="K", help="Or: every K-th frame of each video.", min=1
    ),
    workers: int = typer.Option(2, "--workers", metavar="N", help="Threads reading and decoding files."),
    batch_size: int = typer.Option(
        16, "--batch-size", metavar="N", help="Same-size images per face-detection batch."
    ),
    device: str = options.device_option(),
    camera: Path | None = typer.Option(
        None,
        "--camera",
        metavar="FILE",
        help="TOML file with the camera's fx, fy, cx, cy in pixels (default: focal = image width, centre = image centre).",
    ),
    gaze_estimator: str | None = typer.Option(
        None,
        "--gaze-estimator",
        metavar="NAME",
        help="Also store (pitch, yaw) from this frozen estimator (listed by `gazeclip models`), "
        "so training never runs it again.",
    ),
    gaze_weights: Path | None = typer.Option(
        None,
        "--gaze-weights",
        metavar="FILE",
        help="The estimator's weight file (default: found in the weights folder).",
    ),
    weights_dir: Path | None = options.weights_dir_option(),
    engine: str = options.engine_option(),
    address: str | None = options.address_option(),
    actors: int = options.actors_option(),
    cpus_per_task: int = options.cpus_per_task_option(),
    fmt: str = options.format_option("the run's summary"),
    quiet: bool = options.quiet_option("No progress bar and no summary table (--format json still prints)."),
) -> None:
    """Detect faces, cut 256x256 crops and ETH-XGaze-normalised 224x224 gaze patches; cached and resumable."""
    # Imported here: torch and MTCNN load in seconds, and `gazeclip --help` should not wait.
    from gazeclip_cli.core.data.gaze_normalization import load_camera
    from gazeclip_cli.core.data.preprocess import PreprocessSettings, preprocess

    if frame_stride is not None and options.given(ctx, "frames_per_video"):
        raise typer.BadParameter("excludes --frames-per-video; give one of them", param_hint="--frame-stride")
    estimator_cfg = None
    if gaze_estimator is not None:
        from gazeclip_cli.core.errors import ConfigError
        from gazeclip_cli.core.model.gaze_estimator import estimator_config

        try:
            estimator_cfg = estimator_config(gaze_estimator)
        except ConfigError as exc:  # an unknown name: the command line is wrong
            raise typer.BadParameter(str(exc), param_hint="--gaze-estimator") from None
    # With Ray, files are read, hashed and decoded here (--workers threads) and every batch is
    # detected, prepared and estimated by the cluster's workers (docs/SCALE-OUT.md).
    ray = options.ray_options(ctx, device, local_flags=[])
    settings = PreprocessSettings(
        aligned=aligned,
        face_policy=face_policy,
        frames_per_video=None if frame_stride is not None else frames_per_video,
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
    if estimator_cfg is not None:
        from gazeclip_cli.core.model.builder import WeightSources, build_frozen_gaze_estimator

        overrides = {estimator_cfg.weights: gaze_weights} if gaze_weights else {}
        estimator, _ = build_frozen_gaze_estimator(
            estimator_cfg, WeightSources(directory=weights_dir, overrides=overrides)
        )
        kwargs["gaze_estimator"] = estimator
    try:
        with output.progress("preprocess", "inputs", quiet=quiet) as bar:

            def progress(p: PreprocessProgress) -> None:
                bar.update(p.done, p.total, status=bar_status(p))

            summary = preprocess(source, out, progress=progress if bar.enabled else None, **kwargs)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        output.error(f"interrupted; finished samples are cached in {out}: run the same command to continue")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    if fmt == "json":
        from dataclasses import asdict

        output.print_json(asdict(summary))
    elif not quiet:
        print_summary(summary)


def bar_status(p: PreprocessProgress) -> str:
    """The running counts beside the bar."""
    return f"new {p.new:,}, cached {p.cached:,}, failed {p.failed:,}"


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
    output.prose(f"cache: {summary.out_dir}")
    output.print_table("preprocess summary", ["", "count"], rows)
    output.prose(f"samples: {summary.preprocessed_csv}")
    if summary.failures:
        output.warn(
            f"{summary.failures:,} inputs, frames or faces gave no sample; reasons in {summary.failures_csv}"
        )
