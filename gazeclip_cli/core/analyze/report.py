"""`gazeclip analyze all`: every analysis the inputs support, and one self-contained HTML page gathering them.

The page embeds each figure (base64 PNG or SVG) and table; nothing is fetched from elsewhere.
An analysis the inputs cannot support is listed with the reason instead.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gazeclip_cli import __version__
from gazeclip_cli.core.analyze.common import (
    AnalysisFiles,
    ProgressFn,
    check_preparation_of,
    load_models,
    model_record,
    prepare_out,
    select,
)
from gazeclip_cli.core.errors import DataError, GazeclipError
from gazeclip_cli.core.evaluate.tables import Table
from gazeclip_cli.core.inference.report_html import ReportFigure, figure_data_uri
from gazeclip_cli.core.model.builder import WeightSources

INDEX = "index.html"

CAPTIONS = {
    "gaze-distance": "Fig. 1: Fréchet distance between the Gaussian fits of the reals' and each generator's "
    "(pitch, yaw), in square degrees, with the bootstrap interval. Higher: the generator's gaze is "
    "further from real gaze.",
    "gaze-agreement": "Fig. 7: mean cosine similarity between the gaze of each fake and of the real face "
    "it was made from. Higher: the generator keeps the target's gaze.",
    "heatmaps": "Fig. 8: Grad-CAM of the predicted attribution class over the GIE's patch grid, one row "
    "per model folder.",
    "features": "Fig. 10: t-SNE of the visual features I_v_g, coloured by generator, marked by forgery type.",
    "aws-weights": "Fig. 11: the learnt AWS diagonal of every text block over one class's prompt tokens, "
    "and the token feature norms of the folders compared.",
    "estimators": "Table V's estimators, Fig. 7's rows: the gaze analyses for every gaze estimator whose "
    "weights are present.",
}
TITLES = {
    "gaze-distance": "Gaze distribution distance per generator",
    "gaze-agreement": "Gaze agreement of fake/target pairs",
    "heatmaps": "Grad-CAM heatmaps",
    "features": "Feature map (t-SNE)",
    "aws-weights": "AWS word weights",
    "estimators": "Gaze estimators side by side",
}


@dataclass
class Section:
    """One analysis on the page: its files and table, or why it was left out."""

    key: str
    files: AnalysisFiles | None = None
    tables: tuple[Table, ...] = ()
    skipped: str | None = None


@dataclass
class AllResult:
    sections: list[Section]
    index: Path
    inputs: dict[str, Any] = field(default_factory=dict)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in table.rows)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
    return f"<h3>{html.escape(table.title)}</h3><table class='data'><tr>{head}</tr>{body}</table>" + (
        f"<ul class='notes'>{notes}</ul>" if notes else ""
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1em}
img{max-width:100%;border:1px solid #ddd}.caption{color:#555;font-size:.9em}
table.data{border-collapse:collapse;font-size:.85em}table.data td,table.data th{border:1px solid #ddd;padding:2px 6px}
table.data td{text-align:right;font-variant-numeric:tabular-nums}table.data td:first-child{text-align:left}
.notes{font-size:.8em;color:#555}.skipped{color:#a60}pre{font-size:.75em;background:#f6f6f6;padding:.5em;overflow:auto}
"""


def render_index(sections: Sequence[Section], inputs: dict[str, Any]) -> str:
    """The page as one HTML string."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>gazeclip analyses</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>gazeclip analyses: the paper's figures</h1>",
        f"<p>Written by gazeclip {html.escape(__version__)}. Every number is also in the CSV and JSON "
        "files beside this page.</p>",
    ]
    for s in sections:
        parts.append(f"<h2 id='{s.key}'>{html.escape(TITLES.get(s.key, s.key))}</h2>")
        parts.append(f"<p class='caption'>{html.escape(CAPTIONS.get(s.key, ''))}</p>")
        if s.skipped is not None:
            parts.append(f"<p class='skipped'>Not run: {html.escape(s.skipped)}</p>")
            continue
        assert s.files is not None
        parts.append(f"<img alt='{html.escape(s.key)}' src='{figure_data_uri(s.files.figure)}'>")
        parts.extend(_table_html(t) for t in s.tables)
        names = [p.name for p in (s.files.figure, *s.files.csv, s.files.json, *s.files.extra)]
        parts.append(f"<p class='caption'>Files: {html.escape(', '.join(names))}</p>")
    parts.append("<h2 id='inputs'>Inputs</h2><pre>" + html.escape(json.dumps(inputs, indent=2)) + "</pre>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_index(out_dir: Path, sections: Sequence[Section], inputs: dict[str, Any]) -> Path:
    """Write ``index.html`` atomically."""
    path = out_dir / INDEX
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(render_index(sections, inputs), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror}); check the folder") from None
    return path


@dataclass(frozen=True)
class AllSettings:
    """What ``analyze all`` runs with; each field is the flag of the subcommand of the same name."""

    splits: tuple[str, ...] = ()  # gaze analyses: every split
    model_split: str = "test"  # heatmaps and features read this split
    samples: int | None = None  # gaze analyses, per side / pairs per generator
    bootstrap: int = 1000
    per_generator: int = 1  # heatmaps
    per_class: int | None = 500  # features
    perplexity: float = 30.0
    aws_class: str | None = None
    pairs_csv: Path | None = None
    seed: int = 0
    batch_size: int = 32
    figure_format: str = "png"
    estimators: bool = True  # also the estimator comparison, if any estimator's weights are present


def run_all(
    caches: Sequence[str | os.PathLike[str]],
    models: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: AllSettings = AllSettings(),
    *,
    weights: WeightSources | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> AllResult:
    """Run each analysis the inputs support into ``out_dir`` and write ``index.html``.

    Inputs that do not load (a missing cache or model folder) are errors; an analysis those
    inputs cannot support (no gaze angles, no pairs, no LRE, too few samples) is a section
    saying why.

    Raises:
        DataError: no analysis could run.
    """
    from gazeclip_cli.core.analyze import aws, estimators, features, gaze_agreement, gaze_distance, heatmaps
    from gazeclip_cli.core.analyze.gaze_source import gaze_for
    from gazeclip_cli.core.analyze.pairs import find_pairs

    weights = weights or WeightSources()
    out = prepare_out(out_dir)
    fmt = settings.figure_format
    selection = select(caches, settings.splits)
    folders = load_models(models, weights, device=device, with_text=True) if models else []
    sections: list[Section] = []

    def attempt(key: str, run: Any) -> None:
        try:
            files, tables = run()
            sections.append(Section(key, files=files, tables=tables))
        except GazeclipError as exc:
            sections.append(Section(key, skipped=str(exc)))

    angles_holder: dict[str, Any] = {}

    def distance() -> tuple[AnalysisFiles, tuple[Table, ...]]:
        angles = gaze_for(selection)
        angles_holder["angles"] = angles
        result = gaze_distance.gaze_distance(
            selection.rows, angles.angles, gaze=angles.describe(), samples=settings.samples,
            bootstrap=settings.bootstrap, seed=settings.seed, where=selection.where, progress=progress,
        )  # fmt: skip
        result.inputs = selection.record()
        return gaze_distance.write_gaze_distance(result, out, fmt), (result.table(),)

    pairing = find_pairs(selection.rows, settings.pairs_csv)

    def agreement() -> tuple[AnalysisFiles, tuple[Table, ...]]:
        angles = angles_holder.get("angles") or gaze_for(selection)
        result = gaze_agreement.gaze_agreement(
            selection.rows, angles.angles, pairing, gaze=angles.describe(), samples=settings.samples,
            bootstrap=settings.bootstrap, seed=settings.seed, where=selection.where, progress=progress,
        )  # fmt: skip
        result.inputs = {
            **selection.record(),
            "pairs_csv": str(settings.pairs_csv) if settings.pairs_csv else None,
        }
        return gaze_agreement.write_gaze_agreement(result, selection.rows, angles.angles, out, fmt), (
            result.table(),
        )

    attempt("gaze-distance", distance)
    attempt("gaze-agreement", agreement)

    model_rows = [r for r in selection.rows if r.split == settings.model_split]
    model_inputs = {
        **selection.record(),
        "split": settings.model_split,
        "models": [model_record(f, label) for f, label in folders],
    }
    if not folders:
        for key in ("heatmaps", "features", "aws-weights"):
            sections.append(Section(key, skipped="no model folder given (--model)"))
    elif not model_rows:
        for key in ("heatmaps", "features"):
            sections.append(
                Section(key, skipped=f"{selection.where}: no rows in the '{settings.model_split}' split")
            )
    if folders and model_rows:
        preparation = check_preparation_of(selection, folders)  # a cache prepared otherwise is an error
        model_inputs["preparation_notes"] = preparation

        def heat() -> tuple[AnalysisFiles, tuple[Table, ...]]:
            result = heatmaps.heatmaps(
                folders, model_rows, per_generator=settings.per_generator, seed=settings.seed, device=device,
                where=selection.where, progress=progress,
            )  # fmt: skip
            result.inputs = model_inputs
            return heatmaps.write_heatmaps(result, model_rows, out, fmt), (result.table(model_rows),)

        def feats() -> tuple[AnalysisFiles, tuple[Table, ...]]:
            result = features.feature_map(
                folders, model_rows, per_class=settings.per_class, perplexity=settings.perplexity,
                seed=settings.seed, device=device, batch_size=settings.batch_size,
                settings=[c.settings for c in selection.caches], where=selection.where, progress=progress,
            )  # fmt: skip
            result.inputs = model_inputs
            return features.write_features(result, model_rows, out, fmt), (result.table(),)

        attempt("heatmaps", heat)
        attempt("features", feats)
    if folders:

        def words() -> tuple[AnalysisFiles, tuple[Table, ...]]:
            with_text = [item for item in folders if getattr(item[0].model, "lre", None) is not None]
            first = next((k for k, (f, _) in enumerate(with_text) if f.model.lre.selectors is not None), None)
            if first is None:
                raise DataError("no model folder given was trained with the LRE and AWS")
            ordered = [with_text[first], *(item for k, item in enumerate(with_text) if k != first)]
            result = aws.aws_weights(ordered, settings.aws_class, progress)
            result.inputs = {"models": [model_record(f, label) for f, label in ordered]}
            return aws.write_aws(result, out, fmt), (result.table(),)

        attempt("aws-weights", words)
    if settings.estimators:

        def compare() -> tuple[AnalysisFiles, tuple[Table, ...]]:
            result = estimators.compare_estimators(
                selection, pairing, weights=weights, samples=settings.samples, bootstrap=settings.bootstrap,
                seed=settings.seed, device=device, batch_size=settings.batch_size, progress=progress,
            )  # fmt: skip
            result.inputs = selection.record()
            return estimators.write_estimators(result, out, fmt), (result.table(),)

        attempt("estimators", compare)
    if all(s.skipped is not None for s in sections):
        raise DataError(
            f"{selection.where}: no analysis could run ({'; '.join(f'{s.key}: {s.skipped}' for s in sections[:2])})"
        )
    inputs = {
        **selection.record(),
        "models": model_inputs.get("models", []),
        "settings": _settings_record(settings),
    }
    index = write_index(out, sections, inputs)
    return AllResult(sections=sections, index=index, inputs=inputs)


def _settings_record(settings: AllSettings) -> dict[str, Any]:
    from dataclasses import asdict

    record = asdict(settings)
    record["pairs_csv"] = str(settings.pairs_csv) if settings.pairs_csv else None
    record["splits"] = list(settings.splits)
    return record


def demo_figures(
    cache: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    per_class: int,
    seed: int = 0,
    bootstrap: int = 200,
    device: torch.device | str = "cpu",
) -> list[ReportFigure]:
    """The demo's analyses: Fig. 1 on the whole cache and Fig. 10 on its test split, for its HTML report."""
    from gazeclip_cli.core.analyze import features, gaze_distance
    from gazeclip_cli.core.analyze.gaze_source import gaze_for

    out = prepare_out(out_dir)
    selection = select([cache])
    angles = gaze_for(selection)
    distance = gaze_distance.gaze_distance(
        selection.rows,
        angles.angles,
        gaze=angles.describe(),
        bootstrap=bootstrap,
        seed=seed,
        where=selection.where,
    )
    distance.inputs = selection.record()
    distance_files = gaze_distance.write_gaze_distance(distance, out)
    test = [r for r in selection.rows if r.split == "test"]
    folders = load_models([model_dir], device=device)
    check_preparation_of(selection, folders)
    feature_result = features.feature_map(
        folders, test, per_class=per_class, seed=seed, device=device, settings=[selection.caches[0].settings]
    )
    feature_result.inputs = {
        **selection.record(),
        "split": "test",
        "models": [model_record(f, label) for f, label in folders],
    }
    feature_files = features.write_features(feature_result, test, out)
    return [
        ReportFigure(TITLES[k], files.figure, CAPTIONS[k])
        for k, files in (("gaze-distance", distance_files), ("features", feature_files))
    ]
