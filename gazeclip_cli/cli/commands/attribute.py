"""``gazeclip attribute PHOTO...``: verdict, generator, gaze and face box per face; table, JSON or HTML.

The model folder defaults to ``models/gazeclip`` (relative to the current folder), or
``$GAZECLIP_MODEL`` when set. Exit code 0 when every input was scored, 1 when one could
not be (the others are still reported) or on any error before scoring, 2 on a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gazeclip_cli.cli import options, output
from gazeclip_cli.cli.options import DEFAULT_MODEL
from gazeclip_cli.core.errors import InputError

if TYPE_CHECKING:
    from gazeclip_cli.core.inference.predictor import InputResult, Predictor
    from gazeclip_cli.core.inference.provenance import Provenance

__all__ = ["DEFAULT_MODEL", "attribute_command", "face_fields", "register"]


def register(app: typer.Typer) -> None:
    app.command("attribute")(attribute_command)


def attribute_command(
    photos: list[str] = typer.Argument(
        ..., metavar="PHOTO...", help="Image (or video) files to attribute.", show_default=False
    ),
    model: str = options.model_option(),
    threshold: float = options.threshold_option(),
    all_faces: bool = typer.Option(False, "--all-faces", help="Every face found, not only the largest."),
    aligned: bool = typer.Option(
        False,
        "--aligned",
        help="Inputs already are aligned face crops: no face detection (a model trained on aligned faces needs no flag).",
    ),
    fmt: str = options.format_option("the verdicts and their provenance"),
    html_report: Path | None = typer.Option(
        None,
        "--html",
        metavar="FILE",
        help="Also write a self-contained HTML report (image, Grad-CAM heatmap, provenance).",
    ),
    device: str = options.device_option(),
    runtime: str = options.runtime_option(),
) -> None:
    """Attribute photos: real or fake, which generator (or unknown), gaze and face box per face."""
    if html_report is not None and not html_report.parent.is_dir():
        raise typer.BadParameter(f"folder {html_report.parent} does not exist", param_hint="--html")
    # Imported here: torch and the detector load in seconds, and `gazeclip --help` should not wait.
    from gazeclip_cli.core.devices import resolve_device
    from gazeclip_cli.core.inference.predictor import (
        Predictor,
        PredictorSettings,
        absent_experts_note,
        input_problems,
    )
    from gazeclip_cli.core.inference.report_html import attribute_with_report, write_report
    from gazeclip_cli.core.model.folder import read_meta

    settings = PredictorSettings(
        threshold=threshold,
        faces="all" if all_faces else None,  # None: the model folder's face policy
        face_mode="aligned" if aligned else None,  # None: as the model folder's training cache
        runtime=runtime,
    )
    # Everything cheap first, so that a typo fails at once rather than after the model loads.
    resolve_device(device)
    read_meta(model)
    problems = input_problems(photos)
    if len(problems) == len(photos):
        for message in problems[1:]:
            output.error(message)
        raise InputError(
            problems[0] if len(photos) == 1 else f"{problems[0]} (and no other input is readable)"
        )
    predictor = Predictor(model, device=device, settings=settings)
    note = absent_experts_note(predictor.experts)
    if note:
        output.warn(note)
    provenance = predictor.provenance({"command": "attribute"})
    results: list[InputResult] = []
    entries = []
    for photo in photos:
        if html_report is not None:
            entries.append(attribute_with_report(predictor, photo))
            results.append(entries[-1].result)
        else:
            prepared = predictor.prepare(photo)
            results.append(
                predictor.result(prepared, predictor.predict_faces(prepared.faces) if prepared.faces else [])
            )
    if html_report is not None:
        path = write_report(html_report, entries, provenance)
        output.info(f"HTML report written to {path}")
    if fmt == "json":
        output.print_json(
            {
                "notice": provenance.notice,
                "provenance": provenance.as_dict(),
                "results": [r.as_dict() for r in results],
            }
        )
    else:
        print_results(predictor, results, provenance)
    failed = [r for r in results if r.error is not None]
    for r in failed:
        output.error(r.error or "")
    if failed:
        raise typer.Exit(code=1)


NO_DETECTION = "absent: the model has no detection expert"
NO_ATTRIBUTION = "absent: the model has no attribution expert"


def _verdict_text(v) -> str:
    return NO_DETECTION if v.p_fake is None else f"{v.verdict} (P(fake) {v.p_fake:.4f})"


def _attribution_text(v) -> str:
    return (
        NO_ATTRIBUTION
        if v.generator_probability is None
        else f"{v.attribution} (p {v.generator_probability:.4f})"
    )


def _where(face_index: int, frame_index: int | None) -> str:
    return f"face {face_index}" if frame_index is None else f"frame {frame_index}, face {face_index}"


def face_fields(predictor: Predictor, result: InputResult) -> list[tuple[str, list[list[object]]]]:
    """Per face, a title (where, and the verdict in words) and (field, value) rows: what the JSON's
    faces hold, rounded for reading."""
    tables: list[tuple[str, list[list[object]]]] = []
    for f in result.faces:
        rows: list[list[object]] = [
            ["verdict", _verdict_text(f)],
            ["attribution", _attribution_text(f)],
            ["top 3", ", ".join(f"{c.name} {c.probability:.3f}" for c in f.top) if f.top else NO_ATTRIBUTION],
            [
                "gaze pitch, yaw",
                "n/a" if f.gaze_pitch is None else f"{f.gaze_pitch:+.3f}, {f.gaze_yaw:+.3f} rad",
            ],
            ["face box", " ".join(f"{v:.0f}" for v in f.box)],
        ]
        tables.append((f"{_where(f.face_index, f.frame_index)}: {predictor.describe(f)}", rows))
    for failure in result.face_failures:
        tables.append(
            (
                f"{_where(failure.face_index, failure.frame_index)}: not scored",
                [["error", failure.error], ["face box", " ".join(f"{v:.0f}" for v in failure.box)]],
            )
        )
    return tables


def print_results(predictor: Predictor, results: list[InputResult], provenance: Provenance) -> None:
    """The table view: the synthetic notice first when it applies, per file its faces, then the provenance."""
    if provenance.notice:
        output.prose(f"NOTE: {provenance.notice}.", style="bold yellow")
    for r in results:
        if r.error is not None:
            continue
        output.prose(r.path, style="bold")
        output.out.print(f"sha256 {r.sha256}")
        for title, rows in face_fields(predictor, r):
            output.print_table(title, ["field", "value"], rows)
        if r.video is not None:
            v = r.video
            verdict = (
                NO_DETECTION
                if v.p_fake is None
                else f"mean P(fake) over {v.frames_scored} frames {v.p_fake:.4f}"
            )
            output.prose(f"video: {predictor.describe(v)} ({verdict}; attribution {_attribution_text(v)})")
    if provenance.notice:
        output.prose(f"NOTE: {provenance.notice}.", style="bold yellow")
    print_provenance(provenance)


def print_provenance(provenance: Provenance) -> None:
    """The provenance in a few lines, each word whole (a hash or a version never split)."""
    prov = provenance.as_dict()
    model = prov["model"]
    libs = ", ".join(f"{k}=={v}" for k, v in prov["libraries"].items())  # pip's spelling: never split
    settings = prov["settings"]
    output.prose(f"model {model['path']} ({model['architecture']})")
    output.out.print(f"weights sha256 {model['weights_sha256']}")
    output.prose(f"gazeclip {prov['tool_version']}; {libs}")
    output.prose(
        f"threshold {settings['threshold']}; faces {settings['faces']}; device {prov['device']}; {prov['time_utc']}"
    )
