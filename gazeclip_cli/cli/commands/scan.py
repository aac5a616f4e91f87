"""``gazeclip scan DIR...``: batch scan of folders to CSV or JSONL, resumable, with a summary.

Exit codes: 0 the scan completed (files that could not be scored are error rows, not a
failure); 1 an error stopped it before or during the scan (bad model folder, output
exists without --resume, ...); 3 with ``--fail-on-fake`` when any face or video in the
output is fake; 4 with ``--fail-on-error`` when any file could not be scored (3 wins when
both apply); 130 interrupted (Ctrl-C): rerun with ``--resume``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from gazeclip_cli.cli import engine_options, output
from gazeclip_cli.cli.commands.attribute import DEFAULT_MODEL

if TYPE_CHECKING:
    from gazeclip_cli.core.inference.predictor import Predictor
    from gazeclip_cli.core.inference.scan import ScanProgress, ScanSummary

EXIT_FAKE_FOUND = 3
EXIT_FILES_FAILED = 4
EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)


class _RateColumn(ProgressColumn):
    """Files per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  -  files/s" if speed is None else f"{speed:6.1f} files/s")


def scan_command(
    dirs: list[str] = typer.Argument(
        ..., help="Folders (scanned recursively) and files.", show_default=False
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Results file, .csv or .jsonl.", show_default=False),
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "-m",
        envvar="GAZECLIP_MODEL",
        help="Model folder (see `gazeclip attribute`).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the scan whose results file this is."),
    batch_size: int = typer.Option(16, "--batch-size", help="Faces per forward pass."),
    workers: int = typer.Option(
        -1,
        "--workers",
        help="Threads preparing files and, on a CPU, running the model's batches "
        "(-1: the CPU cores, at most 8; 0: all in one thread).",
        show_default=False,
    ),
    threshold: float = typer.Option(
        0.9, "--threshold", help="Below this, the generator is 'unknown generator'."
    ),
    all_faces: bool = typer.Option(False, "--all-faces", help="Every face found, not only the largest."),
    aligned: bool = typer.Option(
        False,
        "--aligned",
        help="Inputs already are aligned face crops: no detection (a model trained on aligned faces needs no flag).",
    ),
    threads: int = typer.Option(
        0,
        "--threads",
        help="Intra-op threads of each forward (0: the CPU cores divided among --workers, at least 1).",
        show_default=False,
    ),
    video_frames: int = typer.Option(8, "--video-frames", help="Frames sampled evenly from each video."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    engine: str = engine_options.engine_option(),
    address: str | None = engine_options.address_option(),
    actors: int = engine_options.actors_option(),
    cpus_per_task: int = engine_options.cpus_per_task_option(),
    fail_on_fake: bool = typer.Option(False, "--fail-on-fake", help="Exit with 3 when any fake is found."),
    fail_on_error: bool = typer.Option(False, "--fail-on-error", help="Exit with 4 when any file failed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Scan folders: one row per face (verdict, P(fake), generator, gaze) appended to CSV or JSONL as it goes."""
    # Imported here: torch and the detector load in seconds, and `gazeclip --help` should not wait.
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
    from gazeclip_cli.core.inference.scan import scan

    local_flags = [f for f, given in (("--workers", workers != -1), ("--threads", threads != 0)) if given]
    ray = engine_options.ray_options(engine, address, actors, cpus_per_task, device, local_flags)
    settings = PredictorSettings(
        threshold=threshold,
        faces="all" if all_faces else None,  # None: the model folder's face policy
        face_mode="aligned" if aligned else None,  # None: as the model folder's training cache
        batch_size=batch_size,
        video_frames=video_frames,
    )
    # With Ray the model runs in the cluster's workers; this process only needs its description.
    predictor = Predictor(model, device="cpu" if ray else device, settings=settings)
    show_bar = not quiet and output.err.is_terminal
    options: dict = {"resume": resume}
    if ray is not None:
        from gazeclip_cli.core.inference.scan_ray import RayScanEngine

        options["engine"] = RayScanEngine(ray)
    else:
        options["workers"] = None if workers == -1 else workers  # other negatives: the core says why not
        options["model_threads"] = None if threads == 0 else threads  # negatives: the core says why not
    try:
        if show_bar:
            summary = _scan_with_bar(predictor, dirs, out, options)
        else:
            summary = scan(predictor, dirs, out, **options)
    except KeyboardInterrupt:
        output.error(f"interrupted; finished files are in {out}: continue with --resume")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    if not quiet:
        print_summary(summary)
    if fail_on_fake and summary.fakes:
        raise typer.Exit(code=EXIT_FAKE_FOUND)
    if fail_on_error and (summary.files_failed or summary.face_errors):
        raise typer.Exit(code=EXIT_FILES_FAILED)


def _scan_with_bar(predictor: Predictor, dirs: list[str], out: Path, options: dict) -> ScanSummary:
    from gazeclip_cli.core.inference.scan import count_inputs, scan

    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=output.err,
        transient=True,
    ) as bar:
        # The scan starts at once; a second walk counts the files beside it and gives the bar
        # its total (and ETA) when done: on a tree of millions of files that takes minutes.
        task = bar.add_task("scan", total=None, status="")

        def count() -> None:
            try:
                bar.update(task, total=count_inputs(dirs))
            except OSError:  # the scan itself reports unreadable paths; the bar just has no total
                pass

        counter = threading.Thread(target=count, name="gazeclip-count", daemon=True)
        counter.start()

        def progress(p: ScanProgress) -> None:
            status = f"{p.fakes} fake / {p.faces} scored, {p.failed} failed"
            bar.update(task, completed=p.files_done + p.files_skipped, status=status)

        summary = scan(predictor, dirs, out, progress=progress, **options)
        counter.join()  # the last frame shows the real total
        bar.refresh()
        return summary


def print_summary(summary: ScanSummary) -> None:
    """The end-of-scan tables: verdicts, attributions, failures."""
    output.print_table(
        f"scan summary ({summary.out})",
        ["", "count"],
        [
            ["files in results", summary.files],
            ["scanned by this run", summary.files_this_run],
            ["skipped (already done)", summary.files_skipped],
            ["failed", summary.files_failed],
            ["faces scored (images)", summary.faces],
            ["videos scored", summary.videos],
            ["faces that failed", summary.face_errors],
            ["other files ignored", summary.ignored],
        ],
    )
    if summary.verdicts:
        output.print_table("verdicts", ["verdict", "count"], [[k, v] for k, v in summary.verdicts.items()])
    if summary.generators:
        output.print_table(
            "attribution", ["generator", "count"], [[k, v] for k, v in summary.generators.items()]
        )
    if summary.failures:
        output.print_table("failures", ["reason", "count"], [[k, v] for k, v in summary.failures.items()])
    rate = summary.files_this_run / summary.seconds if summary.seconds > 0 else 0.0
    output.out.print(f"{summary.files_this_run} files in {summary.seconds:.1f} s ({rate:.1f} files/s)")
