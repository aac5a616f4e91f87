"""Result tables in the paper's layout (one column per test set, then Average) and the robustness plot.

:func:`report_tables` and :func:`robustness_table` turn results into :class:`Table` rows the CLI
can print; :func:`write_report` and :func:`write_robustness` write them as Markdown, CSV and
JSON (the JSON keeps full precision and reloads with :func:`load_report` / :func:`load_robustness`).
Table cells are percentages, like the paper's. matplotlib is imported only inside
:func:`plot_robustness`, so importing this module stays light.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.metrics import (
    HEADS,
    EvaluationReport,
    GroupAverage,
    RobustnessResult,
    SetMetrics,
    expert_of,
)

Cell = str | float | None


@dataclass(frozen=True)
class Table:
    """One table: a label column, then numbers in percent (``None`` = not defined for that column)."""

    key: str  # short id used in file names, e.g. "unseen"
    title: str
    columns: tuple[str, ...]  # header, first the label column's name
    rows: tuple[tuple[Cell, ...], ...]  # first cell the row label, then one value per column
    notes: tuple[str, ...] = ()  # lines printed under the table
    marks: tuple[tuple[str, ...], ...] = ()  # per row and column: "best", "second" or ""; empty = none

    def mark(self, row: int, column: int) -> str:
        """ "best", "second" or "" for one cell."""
        return self.marks[row][column] if self.marks else ""


@dataclass(frozen=True)
class WrittenTables:
    """The tables and the files they were written to."""

    tables: tuple[Table, ...]
    markdown: Path
    csv: tuple[Path, ...]
    json: Path
    plot: Path | None = None


# (SetMetrics field, row label, which kinds of set show it)
_ROWS = (
    ("open_set_acc", "Attribution ACC (open set)", ("seen", "unseen")),
    ("closed_set_acc", "Attribution ACC (closed set)", ("seen",)),
    ("detection_acc", "Detection ACC", ("seen", "unseen")),
    ("detection_auc", "Detection AUC", ("seen", "unseen")),
    ("detection_eer", "Detection EER", ("seen", "unseen")),
    ("detection_ap", "Detection AP", ("seen", "unseen")),
    ("video_auc", "Video-level AUC", ("seen", "unseen")),
    ("unknown_auroc", "Unknown AUROC (MSP)", ("unseen",)),
    ("oscr", "OSCR", ("unseen",)),
)
_LABELS = {name: label for name, label, _ in _ROWS}

_TITLES = {
    "unseen": "Unseen sets, {split} split (layout of Tables II and III)",
    "seen": "Seen sets, {split} split",
}


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _group_table(report: EvaluationReport, kind: str, average: GroupAverage, split: str) -> Table:
    members = [s for s in report.sets if s.kind == kind]
    rows: list[tuple[Cell, ...]] = []
    for name, label, kinds in _ROWS:
        if kind not in kinds or expert_of(name) not in report.heads:
            continue
        values = [getattr(s, name) for s in members]
        if name not in ("open_set_acc", "detection_acc") and all(v is None for v in values):
            continue  # e.g. no video-level AUC for still-image sets
        if name == "open_set_acc":
            label = f"Attribution ACC (open set, tau = {report.tau:g})"
        rows.append((label, *(_percent(v) for v in values), _percent(getattr(average, name))))
    return Table(
        key=kind,
        title=_TITLES[kind].format(split=split),
        columns=("Metric", *(s.name for s in members), "Average"),
        rows=tuple(rows),
        notes=_notes(report, kind, members),
    )


def _notes(report: EvaluationReport, kind: str, members: Sequence[SetMetrics]) -> tuple[str, ...]:
    notes = ["Values in %. Average: mean over the sets of this table where the metric is defined."]
    for head in HEADS:
        if head not in report.heads:
            notes.append(
                f"No {head} rows: this model has no {head} expert (trained with experts = "
                f"{list(report.heads)}, the paper's Fig. 9 ablation)."
            )
    paired: dict[str, list[str]] = {}
    for s in members:
        if s.paired_with is not None:
            paired.setdefault(s.paired_with, []).append(s.name)
    for real, fakes in paired.items():
        notes.append(
            f"Detection AUC, EER and AP of {', '.join(fakes)} are computed together with the reals of {real} "
            "(an all-fake set has no negatives of its own)."
        )
    partners = {s.paired_with for s in report.sets}
    alone = [
        s.name
        for s in members
        if "detection" in report.heads
        and s.detection_auc is None
        and s.paired_with is None
        and s.name not in partners
    ]
    if alone:
        notes.append(
            f"No detection AUC, EER or AP for {', '.join(alone)}: one class only and no pairing given."
        )
    if kind == "unseen" and (report.unknown_auroc is not None or report.oscr is not None):
        auroc = "-" if report.unknown_auroc is None else f"{100 * report.unknown_auroc:.2f}"
        oscr = "-" if report.oscr is None else f"{100 * report.oscr:.2f}"
        notes.append(
            f"Unknown AUROC and OSCR per set are measured against all seen sets; pooled over all unseen sets: "
            f"unknown AUROC {auroc}, OSCR {oscr}."
        )
    return tuple(notes)


def report_tables(report: EvaluationReport, split: str = "test") -> tuple[Table, ...]:
    """The unseen-set table (Tables II and III) and the seen-set table, whichever have sets; the
    titles name the cache split evaluated."""
    tables = []
    for kind, average in (("unseen", report.unseen_average), ("seen", report.seen_average)):
        if average is not None:
            tables.append(_group_table(report, kind, average, split))
    return tuple(tables)


def _metric_label(metric: str) -> str:
    group, _, field = metric.partition(".")
    return f"{_LABELS.get(field, field)}, mean over {group} sets"


def robustness_table(result: RobustnessResult, split: str = "test") -> Table:
    """Corruption x severity table of the robustness metric, with the mean over severities >= 1."""
    from gazeclip_cli.core.evaluate.corruptions import CORRUPTIONS

    rows = []
    for name, values in zip(result.corruptions, result.values, strict=True):
        title = CORRUPTIONS[name].title if name in CORRUPTIONS else name
        corrupted = [v for s, v in zip(result.severities, values, strict=True) if s > 0 and v is not None]
        mean = sum(corrupted) / len(corrupted) if corrupted else None
        rows.append((title, *(_percent(v) for v in values), _percent(mean)))
    return Table(
        key="robustness",
        title=f"Robustness, {split} split: {_metric_label(result.metric)} (layout of Fig. 6)",
        columns=("Corruption", *(f"Severity {s}" for s in result.severities), "Mean 1-5"),
        rows=tuple(rows),
        notes=("Values in %. Severity 0 is the clean test data.",),
    )


def _format(cell: Cell, digits: int) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, float):
        return f"{cell:.{digits}f}"
    return str(cell)


def _marked(text: str, mark: str) -> str:
    """Bold for the best value, underline for the second best, as the paper's tables."""
    return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)


def to_markdown(tables: Sequence[Table], digits: int = 2) -> str:
    """All tables as Markdown: a heading, a pipe table (numbers right-aligned, marks in bold / underline), the notes."""
    parts = []
    for table in tables:
        escape = str.maketrans({"|": r"\|"})
        lines = [f"## {table.title}", ""]
        lines.append("| " + " | ".join(c.translate(escape) for c in table.columns) + " |")
        lines.append("| --- |" + " ---: |" * (len(table.columns) - 1))
        for r, row in enumerate(table.rows):
            cells = [
                _marked(_format(c, digits).translate(escape), table.mark(r, i)) for i, c in enumerate(row)
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if table.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in table.notes)
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _write_csv(table: Table, path: Path, digits: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow("" if c is None else _format(c, digits) for c in row)


def _prepare(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; choose another output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def write_tables(
    tables: tuple[Table, ...],
    payload: dict[str, Any],
    out_dir: Path,
    stem: str,
    csv_names: Sequence[str],
    digits: int,
) -> WrittenTables:
    """Write ``<stem>.md`` (all tables), one CSV per table (``csv_names``) and ``<stem>.json`` (``payload``)."""
    out_dir = _prepare(out_dir)
    markdown = out_dir / f"{stem}.md"
    json_path = out_dir / f"{stem}.json"
    csv_paths = tuple(out_dir / name for name in csv_names)
    try:
        markdown.write_text(to_markdown(tables, digits), encoding="utf-8")
        for table, path in zip(tables, csv_paths, strict=True):
            _write_csv(table, path, digits)
        # allow_nan=False: a NaN here would be a bug upstream and would make the file invalid JSON.
        json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(
            f"{out_dir}: cannot write the result tables ({exc.strerror}); check the folder"
        ) from exc
    return WrittenTables(tables=tables, markdown=markdown, csv=csv_paths, json=json_path)


def write_report(
    report: EvaluationReport, out_dir: Path, stem: str = "evaluation", digits: int = 2, split: str = "test"
) -> WrittenTables:
    """Write ``<stem>.md``, ``<stem>-<table key>.csv`` per table and ``<stem>.json`` into ``out_dir``.

    Args:
        report: what :func:`~gazeclip_cli.core.evaluate.metrics.evaluate_sets` returned.
        out_dir: folder, created if missing.
        stem: file-name stem.
        digits: decimals of the percentages in Markdown and CSV (JSON keeps full precision).
        split: the cache split evaluated, named in the titles.

    Returns:
        The tables (for the CLI to print) and the paths written.
    """
    tables = report_tables(report, split)
    return write_tables(
        tables, report.to_dict(), out_dir, stem, [f"{stem}-{t.key}.csv" for t in tables], digits
    )


def write_robustness(
    result: RobustnessResult,
    out_dir: Path,
    stem: str = "robustness",
    plot: bool = True,
    digits: int = 2,
    split: str = "test",
) -> WrittenTables:
    """Write ``<stem>.md``, ``<stem>.csv``, ``<stem>.json`` and, with ``plot``, ``<stem>.png``.

    Raises:
        DataError: the folder cannot be written.
    """
    tables = (robustness_table(result, split),)
    written = write_tables(tables, result.to_dict(), out_dir, stem, [f"{stem}.csv"], digits)
    if not plot:
        return written
    png = plot_robustness(result, Path(out_dir) / f"{stem}.png", split)
    return WrittenTables(
        tables=written.tables, markdown=written.markdown, csv=written.csv, json=written.json, plot=png
    )


def _read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file; run gazeclip evaluate to write it") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: not a readable JSON file ({exc}); write it again with gazeclip evaluate"
        ) from exc


def load_report(path: Path) -> EvaluationReport:
    """Read an evaluation JSON written by :func:`write_report`."""
    return EvaluationReport.from_dict(_read_json(path), where=str(path))


def load_robustness(path: Path) -> RobustnessResult:
    """Read a robustness JSON written by :func:`write_robustness`."""
    return RobustnessResult.from_dict(_read_json(path), where=str(path))


def plot_robustness(
    result: RobustnessResult | Mapping[str, RobustnessResult], path: Path, split: str | None = None
) -> Path:
    """Draw one panel per corruption, the metric (%) against severity, as in Fig. 6; save as PNG.

    ``result`` is one model's result, or several by label (one line each, as Fig. 6 compares
    methods); several results must share corruptions, severities and metric. Drawn on
    matplotlib's Agg canvas (:func:`~gazeclip_cli.core.figures.new_figure`).

    Raises:
        DataError: the file cannot be written.
    """
    from gazeclip_cli.core.evaluate.corruptions import CORRUPTIONS
    from gazeclip_cli.core.figures import new_figure

    series = {"": result} if isinstance(result, RobustnessResult) else dict(result)
    first = next(iter(series.values()))
    n = len(first.corruptions)
    ncols = min(5, max(n, 1))
    nrows = max(1, math.ceil(n / ncols))
    fig = new_figure(3.0 * ncols, 2.6 * nrows + (0.4 if len(series) > 1 else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        name = first.corruptions[i]
        for label, res in series.items():
            points = [
                (s, 100.0 * v) for s, v in zip(res.severities, res.values[i], strict=True) if v is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=label or None)
        ax.set_title(CORRUPTIONS[name].title if name in CORRUPTIONS else name, fontsize=9)
        ax.set_xticks(list(first.severities))
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("%")
        if i >= n - ncols:
            ax.set_xlabel("severity")
    if len(series) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(series), 6), fontsize=8)
    prefix = "" if split is None else f"{split} split: "  # compare's runs may come from several splits
    fig.suptitle(prefix + _metric_label(first.metric), fontsize=10)
    path = Path(path)
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot write the robustness plot ({exc.strerror}); check the folder"
        ) from exc
    return path
