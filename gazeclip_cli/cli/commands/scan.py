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

from gazeclip_cli.cli import options, output

if TYPE_CHECKING:
    from gazeclip_cli.core.inference.predictor import Predictor
    from gazeclip_cli.core.inference.scan import ScanProgress, ScanSummary

EXIT_FAKE_FOUND = 3
EXIT_FILES_FAILED = 4
EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)


def scan_command(
    ctx: typer.Context,
    dirs: list[str] = typer.Argument(
        ..., metavar="PATH...", help="Folders (scanned recursively) and files.", show_default=False
    ),
    out: Path = options.out_option("FILE", "Results file, .csv or .jsonl."),
    model: str = options.model_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue the scan whose results file this is."),
    batch_size: int = typer.Option(16, "--batch-size", metavar="N", help="Faces per forward pass."),
    workers: int = typer.Option(
        -1,
        "--workers",
        metavar="N",
        help="Threads preparing files and, on a CPU, running the model's batches "
        "(-1: the CPU cores, at most 8; 0: all in one thread).",
        show_default=False,
    ),
    threshold: float = options.threshold_option(),
    all_faces: bool = typer.Option(False, "--all-faces", help="Every face found, not only the largest."),
    aligned: bool = typer.Option(
        False,
        "--aligned",
        help="Inputs already are aligned face crops: no detection (a model trained on aligned faces needs no flag).",
    ),
    threads: int = typer.Option(
        0,
        "--threads",
        metavar="N",
        help="Intra-op threads of each forward (0: the CPU cores divided among --workers, at least 1).",
        show_default=False,
    ),
    frames_per_video: int = options.frames_option(),
    device: str = options.device_option(),
    runtime: str = options.runtime_option(),
    engine: str = options.engine_option(),
    address: str | None = options.address_option(),
    actors: int = options.actors_option(),
    cpus_per_task: int = options.cpus_per_task_option(),
    files_per_task: int = options.files_per_task_option(),
    fmt: str = options.format_option("the end-of-scan summary"),
    fail_on_fake: bool = typer.Option(False, "--fail-on-fake", help="Exit with 3 when any fake is found."),
    fail_on_error: bool = typer.Option(False, "--fail-on-error", help="Exit with 4 when any file failed."),
    quiet: bool = options.quiet_option("No progress bar and no summary tables (--format json still prints)."),
) -> None:
    """Scan folders: one row per face (verdict, P(fake), generator, gaze) appended to CSV or JSONL as it goes."""
    # Imported here: torch and the detector load in seconds, and `gazeclip --help` should not wait.
    from gazeclip_cli.core.devices import resolve_device
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings, absent_experts_note
    from gazeclip_cli.core.inference.scan import check_output, scan
    from gazeclip_cli.core.model.folder import read_meta

    local_flags = [
        flag
        for name, flag in (("workers", "--workers"), ("threads", "--threads"))
        if options.given(ctx, name)
    ]
    ray = options.ray_options(ctx, device, local_flags)
    settings = PredictorSettings(
        threshold=threshold,
        faces="all" if all_faces else None,  # None: the model folder's face policy
        face_mode="aligned" if aligned else None,  # None: as the model folder's training cache
        batch_size=batch_size,
        video_frames=frames_per_video,
        runtime=runtime,
    )
    # Everything cheap first, so that a mistake fails at once rather than after the model loads.
    if ray is None:
        resolve_device(device)  # with Ray the model workers place themselves (docs/SCALE-OUT.md)
    read_meta(model)
    check_output(out, resume)
    # With Ray the model runs in the cluster's workers; this process only needs its description.
    predictor = Predictor(model, device="cpu" if ray else device, settings=settings)
    if fail_on_fake and "detection" not in predictor.model.experts:
        raise typer.BadParameter(
            "this model has no detection expert (experts = ['attribution']), so it finds no fakes",
            param_hint="--fail-on-fake",
        )
    note = absent_experts_note(predictor.model.experts)
    if note and not quiet:
        output.warn(note)
    scan_options: dict = {"resume": resume}
    if ray is not None:
        from gazeclip_cli.core.inference.scan_ray import RayScanEngine

        scan_options["engine"] = RayScanEngine(ray)
    else:
        scan_options["workers"] = None if workers == -1 else workers  # other negatives: the core says why not
        scan_options["model_threads"] = None if threads == 0 else threads  # negatives: the core says why not
    try:
        with output.progress("scanning", "files", quiet=quiet) as bar:
            summary = (
                _scan_with_bar(predictor, dirs, out, scan_options, bar)
                if bar.enabled
                else scan(predictor, dirs, out, **scan_options)
            )
    except KeyboardInterrupt:
        output.error(f"interrupted; finished files are in {out}: continue with --resume")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    notice = predictor.provenance().notice
    if fmt == "json":
        output.print_json({"notice": notice, **summary.as_dict()})
    elif not quiet:
        print_summary(summary)
        if notice:
            output.prose(f"NOTE: {notice}.", style="bold yellow")
    if fail_on_fake and summary.fakes:
        raise typer.Exit(code=EXIT_FAKE_FOUND)
    if fail_on_error and (summary.files_failed or summary.face_errors):
        raise typer.Exit(code=EXIT_FILES_FAILED)


def bar_status(p: ScanProgress) -> str:
    """The running counts beside the scan's bar."""
    return f"{p.fakes:,} fake of {p.faces:,}, {p.failed:,} failed"


def _scan_with_bar(
    predictor: Predictor, dirs: list[str], out: Path, scan_options: dict, bar: output.Bar
) -> ScanSummary:
    from gazeclip_cli.core.inference.scan import count_inputs, scan

    # The scan starts at once; a second walk counts the files beside it and gives the bar
    # its total (and ETA) when done: on a tree of millions of files that takes minutes.
    def count() -> None:
        try:
            bar.update(total=count_inputs(dirs))
        except OSError:  # the scan itself reports unreadable paths; the bar just has no total
            pass

    counter = threading.Thread(target=count, name="gazeclip-count", daemon=True)
    counter.start()

    def progress(p: ScanProgress) -> None:
        bar.update(p.files_done + p.files_skipped, status=bar_status(p))

    summary = scan(predictor, dirs, out, progress=progress, **scan_options)
    counter.join()  # the last frame shows the real total
    return summary


def print_summary(summary: ScanSummary) -> None:
    """The end-of-scan tables: verdicts, attributions, failures."""
    output.prose(f"results: {summary.out}")
    output.print_table(
        "scan summary",
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
