"""``gazeclip attribute PHOTO...``: verdict, generator, gaze and face box per face; text, JSON or HTML.

The model folder defaults to ``models/gazeclip`` (relative to the current folder), or
``$GAZECLIP_MODEL`` when set. Exit code 0 when every input was scored, 1 when one could
not be (the others are still reported) or on any error before scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gazeclip_cli.cli import output

if TYPE_CHECKING:
    from gazeclip_cli.core.inference.predictor import InputResult

DEFAULT_MODEL = "models/gazeclip"


def register(app: typer.Typer) -> None:
    app.command("attribute")(attribute_command)


def attribute_command(
    photos: list[str] = typer.Argument(..., help="Image (or video) files to attribute.", show_default=False),
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "-m",
        envvar="GAZECLIP_MODEL",
        help="Model folder (config.toml, weights.safetensors, meta.json).",
    ),
    threshold: float = typer.Option(
        0.9,
        "--threshold",
        help="Below this top attribution probability the generator is 'unknown generator'.",
    ),
    all_faces: bool = typer.Option(False, "--all-faces", help="Every face found, not only the largest."),
    aligned: bool = typer.Option(
        False,
        "--aligned",
        help="Inputs already are aligned face crops: no face detection (a model trained on aligned faces needs no flag).",
    ),
    fmt: str = typer.Option("text", "--format", help="text (tables) or json (stdout stays pure JSON)."),
    html_report: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML report (image, Grad-CAM heatmap, provenance)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
) -> None:
    """Attribute photos: real or fake, which generator (or unknown), gaze and face box per face."""
    if fmt not in ("text", "json"):
        raise typer.BadParameter("must be 'text' or 'json'", param_hint="--format")
    if html_report is not None and not html_report.parent.is_dir():
        raise typer.BadParameter(f"folder {html_report.parent} does not exist", param_hint="--html")
    # Imported here: torch and the detector load in seconds, and `gazeclip --help` should not wait.
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
    from gazeclip_cli.core.inference.report_html import attribute_with_report, write_report

    settings = PredictorSettings(
        threshold=threshold,
        faces="all" if all_faces else None,  # None: the model folder's face policy
        face_mode="aligned" if aligned else None,  # None: as the model folder's training cache
    )
    predictor = Predictor(model, device=device, settings=settings)
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
        output.print_json({"provenance": provenance.as_dict(), "results": [r.as_dict() for r in results]})
    else:
        _print_text(results, provenance.as_dict())
    failed = [r for r in results if r.error is not None]
    for r in failed:
        output.error(r.error or "")
    if failed:
        raise typer.Exit(code=1)


def face_fields(result: InputResult) -> list[tuple[str, list[list[object]]]]:
    """Per face, a title and (field, value) rows: what the JSON's faces hold, rounded for reading."""
    tables: list[tuple[str, list[list[object]]]] = []
    for f in result.faces:
        where = (
            f"face {f.face_index}" if f.frame_index is None else f"frame {f.frame_index}, face {f.face_index}"
        )
        rows: list[list[object]] = [
            ["verdict", f"{f.verdict} (P(fake) {f.p_fake:.4f})"],
            ["attribution", f"{f.attribution} (p {f.generator_probability:.4f})"],
            ["top 3", ", ".join(f"{c.name} {c.probability:.3f}" for c in f.top)],
            [
                "gaze pitch, yaw",
                "n/a" if f.gaze_pitch is None else f"{f.gaze_pitch:+.3f}, {f.gaze_yaw:+.3f} rad",
            ],
            ["face box", " ".join(f"{v:.0f}" for v in f.box)],
        ]
        tables.append((where, rows))
    for failure in result.face_failures:
        where = (
            f"face {failure.face_index}"
            if failure.frame_index is None
            else f"frame {failure.frame_index}, face {failure.face_index}"
        )
        tables.append(
            (where, [["error", failure.error], ["face box", " ".join(f"{v:.0f}" for v in failure.box)]])
        )
    return tables


def _print_text(results: list[InputResult], prov: dict) -> None:
    for r in results:
        if r.error is not None:
            continue
        output.out.print(f"[bold]{r.path}[/bold]  sha256 {r.sha256}")
        for where, rows in face_fields(r):
            output.print_table(where, ["field", "value"], rows)
        if r.video is not None:
            v = r.video
            output.out.print(
                f"video: {v.verdict} (mean P(fake) over {v.frames_scored} frames {v.p_fake:.4f}), "
                f"{v.attribution} (p {v.generator_probability:.4f})"
            )
    model = prov["model"]
    libs = ", ".join(f"{k} {v}" for k, v in prov["libraries"].items())
    output.out.print(
        f"model {model['path']} ({model['architecture']}, weights sha256 {model['weights_sha256']}); "
        f"gazeclip {prov['tool_version']}; {libs}; threshold {prov['settings']['threshold']}; "
        f"faces {prov['settings']['faces']}; device {prov['device']}; {prov['time_utc']}"
    )
