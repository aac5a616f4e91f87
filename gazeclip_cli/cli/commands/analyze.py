"""`gazeclip analyze <analysis>`: the paper's figures, with the numbers behind them, from caches and model folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gazeclip_cli.cli import options, output

if TYPE_CHECKING:
    from gazeclip_cli.core.analyze.common import AnalysisFiles, AnalysisProgress
    from gazeclip_cli.core.evaluate.tables import Table

analyze_app = typer.Typer(
    help="The paper's figures (Figs 1, 7, 8, 10, 11) and the gaze estimators side by side: PNG/SVG, CSV, JSON.",
    no_args_is_help=True,
)

CACHES = typer.Argument(
    ..., metavar="CACHE...", help="Cache folder(s) from `gazeclip preprocess`; rows of several are pooled."
)
OUT = typer.Option(
    Path("analysis"), "--out", "-o", metavar="DIR", help="Folder for the figure, CSV and JSON."
)
FIGURE = typer.Option("png", "--figure", metavar="png|svg", help="Figure format: png or svg.")
SEED = typer.Option(0, "--seed", metavar="N", help="Seed of every random choice (samples, bootstrap, t-SNE).")
DEVICE = options.device_option()
BATCH = typer.Option(32, "--batch-size", metavar="N", help="Batch size of model and estimator passes.")
WEIGHTS_DIR = options.weights_dir_option()
QUIET = options.quiet_option("No progress bar.")
MODELS = typer.Option(
    ..., "--model", "-m", metavar="DIR", help="Model folder (repeat for one row or panel each)."
)
BOOTSTRAP = typer.Option(
    1000, "--bootstrap", metavar="N", help="Bootstrap resamples for the interval (0: none)."
)
CONFIDENCE = typer.Option(0.95, "--confidence", metavar="P", help="Confidence of the bootstrap interval.")
SPLITS = typer.Option(
    None, "--split", metavar="SPLIT", help="Only rows of this split (repeat); default every split."
)
REAL = typer.Option(
    None, "--real", metavar="SET", help="Real set(s) to compare with (repeat); default every real set."
)
PAIRS = typer.Option(
    None, "--pairs", metavar="CSV", help="CSV of fake/target pairs: columns fake, real (source paths)."
)
GAZE_ESTIMATOR = typer.Option(
    None,
    "--gaze-estimator",
    metavar="NAME",
    help="Estimate gaze from the cached patches with this registered estimator.",
)
GAZE_WEIGHTS = typer.Option(
    None, "--gaze-weights", metavar="FILE", help="That estimator's weight file (default: weights folder)."
)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[AnalysisProgress], None]]:
    with output.progress("analyze", "steps", quiet=quiet) as bar:
        current: list[str] = []

        def update(p: AnalysisProgress) -> None:
            restart = current != [p.stage]
            current[:] = [p.stage]
            bar.update(p.done, p.total, label=f"analyze: {p.stage}", restart=restart)

        yield update


def _show(table: Table, files: AnalysisFiles) -> None:
    output.print_table(table.title, list(table.columns), [list(r) for r in table.rows], digits=3)
    for note in table.notes:
        output.out.print(f"  {note}")
    written = [files.figure, *files.csv, files.json, *files.extra]
    output.out.print(f"written: {', '.join(str(p) for p in written)}")


def _weights(weights_dir: Path | None, overrides: dict[str, Any] | None = None) -> Any:
    from gazeclip_cli.core.model.builder import WeightSources

    return WeightSources(directory=weights_dir, overrides=overrides or {})


def _angles(
    selection: Any,
    estimator: str | None,
    estimator_file: Path | None,
    weights_dir: Path | None,
    device: str,
    batch_size: int,
    progress: Callable[[AnalysisProgress], None],
) -> Any:
    """The cache's gaze angles, or ``--gaze-estimator``'s on the cached patches."""
    from gazeclip_cli.core.analyze.gaze_source import gaze_for
    from gazeclip_cli.core.devices import resolve_device

    overrides = {estimator: estimator_file} if estimator and estimator_file else {}
    return gaze_for(
        selection, estimator, _weights(weights_dir, overrides), resolve_device(device), batch_size, progress
    )


def _with_models(
    caches: list[Path], split: str, models: list[Path], weights_dir: Path | None, device: str, figure: str
) -> tuple[Any, Any, Any]:
    """The rows of one split, the model folders loaded on the device, and the device; the figure format checked."""
    from gazeclip_cli.core.analyze.common import check_preparation_of, load_models, select
    from gazeclip_cli.core.devices import resolve_device
    from gazeclip_cli.core.figures import check_figure_format

    check_figure_format(figure)
    selection = select(caches, [split])
    dev = resolve_device(device)
    folders = load_models(models, _weights(weights_dir), device=dev)
    for note in check_preparation_of(selection, folders):
        output.warn(note)
    return selection, folders, dev


def _models_record(selection: Any, folders: Any) -> dict[str, Any]:
    from gazeclip_cli.core.analyze.common import check_preparation_of, model_record

    return {
        **selection.record(),
        "models": [model_record(f, label) for f, label in folders],
        "preparation_notes": check_preparation_of(selection, folders),
    }


def _named_files(items: list[str] | None, flag: str) -> dict[str, Path]:
    out = {}
    for item in items or []:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise typer.BadParameter(f"'{item}': expected NAME=FILE", param_hint=flag)
        out[name] = Path(file)
    return out


def gaze_distance_command(
    caches: list[Path] = CACHES,
    split: list[str] = SPLITS,
    real: list[str] = REAL,
    samples: int | None = typer.Option(
        None,
        "--samples",
        metavar="N",
        help="Rows drawn per side, seeded (the paper: 10000); default every row.",
    ),
    bootstrap: int = BOOTSTRAP,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
    gaze_estimator: str | None = GAZE_ESTIMATOR,
    gaze_weights: Path | None = GAZE_WEIGHTS,
    weights_dir: Path | None = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH,
    out: Path = OUT,
    figure: str = FIGURE,
    quiet: bool = QUIET,
) -> None:
    """Fig. 1: Fréchet distance between the reals' and each generator's (pitch, yaw) Gaussian, with a bootstrap interval."""
    from gazeclip_cli.core.analyze.common import select
    from gazeclip_cli.core.analyze.gaze_distance import gaze_distance, write_gaze_distance
    from gazeclip_cli.core.figures import check_figure_format

    check_figure_format(figure)
    selection = select(caches, split)
    with _progress(quiet) as progress:
        angles = _angles(selection, gaze_estimator, gaze_weights, weights_dir, device, batch_size, progress)
        result = gaze_distance(
            selection.rows, angles.angles, gaze=angles.describe(), real=real, samples=samples, bootstrap=bootstrap,
            confidence=confidence, seed=seed, where=selection.where, progress=progress,
        )  # fmt: skip
    result.inputs = selection.record()
    _show(result.table(), write_gaze_distance(result, out, figure))


def gaze_agreement_command(
    caches: list[Path] = CACHES,
    pairs: Path | None = PAIRS,
    name_rules: bool = typer.Option(
        True, "--name-rules/--no-name-rules", help="Also pair by the Celeb-DF++ and DF40 file names."
    ),
    split: list[str] = SPLITS,
    samples: int | None = typer.Option(
        None,
        "--samples",
        metavar="N",
        help="Pairs drawn per generator, seeded (the paper: 10000 in all); default every pair.",
    ),
    bootstrap: int = BOOTSTRAP,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
    gaze_estimator: str | None = GAZE_ESTIMATOR,
    gaze_weights: Path | None = GAZE_WEIGHTS,
    weights_dir: Path | None = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH,
    out: Path = OUT,
    figure: str = FIGURE,
    quiet: bool = QUIET,
) -> None:
    """Fig. 7: mean cosine between the gaze of each fake and of the real face it was made from, per generator."""
    from gazeclip_cli.core.analyze.common import select
    from gazeclip_cli.core.analyze.gaze_agreement import gaze_agreement, write_gaze_agreement
    from gazeclip_cli.core.analyze.pairs import NAME_RULES, find_pairs
    from gazeclip_cli.core.figures import check_figure_format

    check_figure_format(figure)
    selection = select(caches, split)
    pairing = find_pairs(selection.rows, pairs, NAME_RULES if name_rules else ())
    with _progress(quiet) as progress:
        angles = _angles(selection, gaze_estimator, gaze_weights, weights_dir, device, batch_size, progress)
        result = gaze_agreement(
            selection.rows, angles.angles, pairing, gaze=angles.describe(), samples=samples, bootstrap=bootstrap,
            confidence=confidence, seed=seed, where=selection.where, progress=progress,
        )  # fmt: skip
    result.inputs = {
        **selection.record(),
        "pairs_csv": str(pairs) if pairs else None,
        "name_rules": name_rules,
    }
    _show(result.table(), write_gaze_agreement(result, selection.rows, angles.angles, out, figure))
    missed = sum(pairing.unmatched.values()) + sum(pairing.ambiguous.values()) + len(pairing.csv_missing)
    if missed:
        output.warn(f"{missed} fakes or CSV lines found no single target; counts per generator in the JSON")


def heatmaps_command(
    caches: list[Path] = CACHES,
    model: list[Path] = MODELS,
    split: str = typer.Option("test", "--split", metavar="SPLIT", help="Cache split the samples come from."),
    per_generator: int = typer.Option(
        1, "--per-generator", metavar="N", help="Samples (columns) per generator."
    ),
    generator: list[str] = typer.Option(
        None, "--generator", metavar="NAME", help="Only these generators, in this order (repeat)."
    ),
    seed: int = SEED,
    device: str = DEVICE,
    weights_dir: Path | None = WEIGHTS_DIR,
    out: Path = OUT,
    figure: str = FIGURE,
    quiet: bool = QUIET,
) -> None:
    """Fig. 8: Grad-CAM grid, one row per model folder (e.g. with and without gaze), samples chosen from the seed."""
    from gazeclip_cli.core.analyze.heatmaps import heatmaps, write_heatmaps

    selection, folders, dev = _with_models(caches, split, model, weights_dir, device, figure)
    with _progress(quiet) as progress:
        result = heatmaps(
            folders, selection.rows, per_generator=per_generator, generators=generator, seed=seed, device=dev,
            where=selection.where, progress=progress,
        )  # fmt: skip
    result.inputs = _models_record(selection, folders)
    _show(result.table(selection.rows), write_heatmaps(result, selection.rows, out, figure))


def features_command(
    caches: list[Path] = CACHES,
    model: list[Path] = MODELS,
    split: str = typer.Option("test", "--split", metavar="SPLIT", help="Cache split the samples come from."),
    per_class: int = typer.Option(
        500, "--per-class", metavar="N", help="Samples per generator, seeded (the paper: 500)."
    ),
    perplexity: float = typer.Option(
        30.0, "--perplexity", metavar="P", help="t-SNE perplexity (capped at (N - 1) / 3)."
    ),
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int = BATCH,
    weights_dir: Path | None = WEIGHTS_DIR,
    out: Path = OUT,
    figure: str = FIGURE,
    quiet: bool = QUIET,
) -> None:
    """Fig. 10: t-SNE of the visual features I_v_g, one panel per model folder, by generator and forgery type."""
    from gazeclip_cli.core.analyze.features import feature_map, write_features

    selection, folders, dev = _with_models(caches, split, model, weights_dir, device, figure)
    with _progress(quiet) as progress:
        result = feature_map(
            folders, selection.rows, per_class=per_class, perplexity=perplexity, seed=seed, device=dev,
            batch_size=batch_size, settings=[c.settings for c in selection.caches], where=selection.where,
            progress=progress,
        )  # fmt: skip
    result.inputs = _models_record(selection, folders)
    _show(result.table(), write_features(result, selection.rows, out, figure))


def aws_weights_command(
    model: list[Path] = typer.Option(
        ...,
        "--model",
        "-m",
        metavar="DIR",
        help="A folder trained with AWS; repeat to compare others (e.g. without AWS).",
    ),
    class_name: str | None = typer.Option(
        None,
        "--class",
        metavar="NAME",
        help="The class whose prompts are shown (default: the first fake class).",
    ),
    weights_dir: Path | None = WEIGHTS_DIR,
    out: Path = OUT,
    figure: str = FIGURE,
    quiet: bool = QUIET,
) -> None:
    """Fig. 11: the learnt AWS diagonal of every text block over the tokens of a class's prompts."""
    from gazeclip_cli.core.analyze.aws import aws_weights, write_aws
    from gazeclip_cli.core.analyze.common import load_models, model_record
    from gazeclip_cli.core.figures import check_figure_format

    check_figure_format(figure)
    folders = load_models(model, _weights(weights_dir), device="cpu", with_text=True)
    with _progress(quiet) as progress:
        result = aws_weights(folders, class_name, progress)
    result.inputs = {"models": [model_record(f, label) for f, label in folders]}
    _show(result.table(), write_aws(result, out, figure))


def estimators_command(
    caches: list[Path] = CACHES,
    estimator: list[str] = typer.Option(
        None,
        "--estimator",
        metavar="NAME",
        help="Only these registered estimators (repeat); default every one with weights.",
    ),
    estimator_weights: list[str] = typer.Option(
        None,
        "--estimator-weights",
        metavar="NAME=FILE",
        help="NAME=FILE: an estimator's weight file (repeat).",
    ),
    pairs: Path | None = PAIRS,
    split: list[str] = SPLITS,
    real: list[str] = REAL,
    samples: int | None = typer.Option(
        None, "--samples", metavar="N", help="Rows per side and pairs per generator, seeded."
    ),
    bootstrap: int = BOOTSTRAP,
    seed: int = SEED,
    weights_dir: Path | None = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH,
    out: Path = OUT,
    figure: str = FIGURE,
    quiet: bool = QUIET,
) -> None:
    """Table V's estimators, Fig. 7's rows: the gaze analyses for every estimator whose weights are present."""
    from gazeclip_cli.core.analyze.common import select
    from gazeclip_cli.core.analyze.estimators import compare_estimators, write_estimators
    from gazeclip_cli.core.analyze.pairs import find_pairs
    from gazeclip_cli.core.devices import resolve_device
    from gazeclip_cli.core.figures import check_figure_format

    check_figure_format(figure)
    selection = select(caches, split)
    pairing = find_pairs(selection.rows, pairs)
    weights = _weights(weights_dir, _named_files(estimator_weights, "--estimator-weights"))
    with _progress(quiet) as progress:
        result = compare_estimators(
            selection, pairing, weights=weights, names=estimator or None, real=real, samples=samples,
            bootstrap=bootstrap, seed=seed, device=resolve_device(device), batch_size=batch_size, progress=progress,
        )  # fmt: skip
    result.inputs = {**selection.record(), "pairs_csv": str(pairs) if pairs else None}
    _show(result.table(), write_estimators(result, out, figure))


def all_command(
    caches: list[Path] = CACHES,
    model: list[Path] = typer.Option(
        None, "--model", "-m", metavar="DIR", help="Model folder(s) for Figs 8, 10, 11 (repeat)."
    ),
    pairs: Path | None = PAIRS,
    split: list[str] = typer.Option(
        None, "--split", metavar="SPLIT", help="Gaze analyses: only these splits (repeat)."
    ),
    model_split: str = typer.Option(
        "test", "--model-split", metavar="SPLIT", help="Split of the heatmap and t-SNE samples."
    ),
    samples: int | None = typer.Option(
        None, "--samples", metavar="N", help="Gaze analyses: rows per side / pairs per generator."
    ),
    bootstrap: int = BOOTSTRAP,
    per_generator: int = typer.Option(
        1, "--per-generator", metavar="N", help="Heatmap samples per generator."
    ),
    per_class: int = typer.Option(500, "--per-class", metavar="N", help="t-SNE samples per generator."),
    perplexity: float = typer.Option(30.0, "--perplexity", metavar="P", help="t-SNE perplexity."),
    class_name: str | None = typer.Option(
        None, "--class", metavar="NAME", help="AWS: the class whose prompts are shown."
    ),
    estimators: bool = typer.Option(
        True, "--estimators/--no-estimators", help="Also the estimator comparison."
    ),
    estimator_weights: list[str] = typer.Option(
        None,
        "--estimator-weights",
        metavar="NAME=FILE",
        help="NAME=FILE: a gaze estimator's weight file (repeat).",
    ),
    seed: int = SEED,
    weights_dir: Path | None = WEIGHTS_DIR,
    device: str = DEVICE,
    batch_size: int = BATCH,
    out: Path = OUT,
    figure: str = FIGURE,
    quiet: bool = QUIET,
) -> None:
    """Every analysis the inputs support, and index.html: one self-contained page with every figure and table."""
    from gazeclip_cli.core.analyze.report import AllSettings, run_all
    from gazeclip_cli.core.devices import resolve_device
    from gazeclip_cli.core.figures import check_figure_format

    settings = AllSettings(
        splits=tuple(split or ()), model_split=model_split, samples=samples, bootstrap=bootstrap,
        per_generator=per_generator, per_class=per_class, perplexity=perplexity, aws_class=class_name,
        pairs_csv=pairs, seed=seed, batch_size=batch_size, figure_format=check_figure_format(figure),
        estimators=estimators,
    )  # fmt: skip
    weights = _weights(weights_dir, _named_files(estimator_weights, "--estimator-weights"))
    with _progress(quiet) as progress:
        result = run_all(
            caches,
            model or [],
            out,
            settings,
            weights=weights,
            device=resolve_device(device),
            progress=progress,
        )
    for section in result.sections:
        if section.skipped is not None:
            output.warn(f"{section.key} not run: {section.skipped}")
            continue
        for table in section.tables:
            output.print_table(table.title, list(table.columns), [list(r) for r in table.rows], digits=3)
    output.out.print(f"HTML page: {result.index}")


def register(app: typer.Typer) -> None:
    analyze_app.command("gaze-distance")(gaze_distance_command)
    analyze_app.command("gaze-agreement")(gaze_agreement_command)
    analyze_app.command("heatmaps")(heatmaps_command)
    analyze_app.command("features")(features_command)
    analyze_app.command("aws-weights")(aws_weights_command)
    analyze_app.command("estimators")(estimators_command)
    analyze_app.command("all")(all_command)
    app.add_typer(analyze_app, name="analyze")
