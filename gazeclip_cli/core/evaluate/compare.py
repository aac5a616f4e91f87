"""Comparison tables across `evaluate` result folders, one row per folder, in the paper's layouts.

Layouts: ``attribution`` (Tables II, III, VIII), ``detection`` (per-set ACC and AUC),
``wild`` (Table VII, with parameters, MACs and seconds per image), ``ablation`` (Tables IV-VI,
IX-XIII: rows are runs, the settings that differ are columns) and ``robustness`` (Fig. 6 for
several methods). Best and second best of each metric column are marked. Folders evaluated on
different test data or thresholds are refused, naming the difference. docs/EVALUATION.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.evaluate.metrics import RobustnessResult, SetMetrics
from gazeclip_cli.core.evaluate.result_folder import ResultFolder, read_result_folder
from gazeclip_cli.core.evaluate.tables import Cell, Table, plot_robustness, write_tables

LAYOUTS = ("attribution", "detection", "wild", "ablation", "robustness")
COMPARISON_FORMAT = "gazeclip-comparison/1"
_UNCOMPARED_KEYS = ("name", "classes")  # config keys never shown as ablation settings


@dataclass(frozen=True)
class CompareRow:
    """One row: a result folder and its label."""

    label: str
    result: ResultFolder


@dataclass(frozen=True)
class Comparison:
    """A built comparison: the table (with marks) and what it was built from."""

    layout: str
    table: Table
    rows: tuple[CompareRow, ...]
    sets: tuple[str, ...]
    marked_columns: tuple[int, ...]  # column indices whose best and second best are marked

    def to_dict(self) -> dict[str, Any]:
        first = self.rows[0].result.provenance
        return {
            "format": COMPARISON_FORMAT,
            "layout": self.layout,
            "title": self.table.title,
            "columns": list(self.table.columns),
            "sets": list(self.sets),
            "tau": first["tau"],
            "test": first["test"],
            "rows": [
                {
                    "label": row.label,
                    "folder": str(row.result.path),
                    "architecture": row.result.architecture,
                    "model_sha256": row.result.provenance["model"].get("sha256", ""),
                    "cells": list(cells[1:]),
                    "marks": list(self.table.marks[i][1:]),
                }
                for i, (row, cells) in enumerate(zip(self.rows, self.table.rows, strict=True))
            ],
            "notes": list(self.table.notes),
        }


@dataclass(frozen=True)
class WrittenComparison:
    comparison: Comparison
    markdown: Path
    csv: Path
    json: Path
    plot: Path | None


def parse_folder_spec(spec: str) -> tuple[str | None, Path]:
    """``LABEL=DIR`` or ``DIR`` (a folder whose own name has ``=`` is read as a folder)."""
    if "=" in spec and not Path(spec).is_dir():
        label, _, folder = spec.partition("=")
        if not label or not folder:
            raise ConfigError(f"'{spec}': expected LABEL=FOLDER or FOLDER")
        return label, Path(folder)
    return None, Path(spec)


def load_rows(specs: Sequence[tuple[str | None, Path]]) -> list[CompareRow]:
    """Read the folders; rows are labelled by architecture, or by folder name where architectures repeat."""
    if not specs:
        raise ConfigError("give at least one result folder")
    results = [(label, read_result_folder(folder)) for label, folder in specs]
    architectures = [r.architecture for _, r in results]
    rows = []
    for label, r in results:
        default = r.architecture if architectures.count(r.architecture) == 1 else r.path.name
        rows.append(CompareRow(label or default, r))
    labels = [r.label for r in rows]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ConfigError(f"two rows are labelled '{twice[0]}'; label them with LABEL=FOLDER")
    return rows


def check_comparable(rows: Sequence[CompareRow]) -> None:
    """Every folder evaluated on the same test data at the same threshold; DataError naming the difference."""
    first = rows[0].result
    a = first.provenance["test"]
    for row in rows[1:]:
        other = row.result
        b = other.provenance["test"]
        where = f"{other.path} and {first.path}"
        if b.get("split") != a.get("split"):
            raise DataError(
                f"{where} were evaluated on different splits ('{b.get('split')}' and '{a.get('split')}'); "
                "compare results of one test set"
            )
        if b.get("index_sha256") != a.get("index_sha256"):
            raise DataError(
                f"{where} were evaluated on different test sets (cache index SHA-256 "
                f"{str(b.get('index_sha256'))[:12]}... in {b.get('cache')} and {str(a.get('index_sha256'))[:12]}... "
                f"in {a.get('cache')}); compare results of one test set"
            )
        if other.provenance["tau"] != first.provenance["tau"]:
            raise DataError(
                f"{where} were evaluated at different thresholds (tau {other.provenance['tau']:g} and "
                f"{first.provenance['tau']:g}); evaluate them at one --threshold"
            )
        sa, sb = dict(a.get("sets", {})), dict(b.get("sets", {}))
        if sa != sb:
            name = next(n for n in [*sa, *sb] if sa.get(n) != sb.get(n))
            raise DataError(
                f"{where} have different test sets: '{name}' has {sb.get(name, 'no')} samples in the first "
                f"and {sa.get(name, 'no')} in the second; compare results of one test set"
            )


def _pick_sets(rows: Sequence[CompareRow], sets: Sequence[str] | None) -> tuple[str, ...]:
    report = rows[0].result.report
    names = [s.name for s in report.sets]
    if not sets:
        unseen = tuple(s.name for s in report.sets if s.kind == "unseen")
        if not unseen:
            raise ConfigError(f"{rows[0].result.path}: no unseen test sets; name the columns with --sets")
        return unseen
    for name in sets:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (sets: {', '.join(names)})"
            raise ConfigError(f"no test set '{name}' in {rows[0].result.path}{hint}")
    return tuple(sets)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _set_metrics(row: CompareRow, sets: Sequence[str]) -> list[SetMetrics]:
    return [row.result.report.set(name) for name in sets]


def _averages(members: Sequence[SetMetrics]) -> tuple[float | None, float | None, float | None]:
    """Open-set attribution ACC, detection ACC and AUC, each the mean over the sets where defined (%)."""
    return (
        _pct(_mean([s.open_set_acc for s in members])),
        _pct(_mean([s.detection_acc for s in members])),
        _pct(_mean([s.detection_auc for s in members])),
    )


def _efficiency(row: CompareRow) -> tuple[Cell, Cell, Cell, Cell]:
    """Params (M), GMACs, GFLOPs and seconds per image at batch 1, or '-' cells without --efficiency."""
    e = row.result.efficiency
    if e is None:
        return None, None, None, None
    gflops = float(e["gflops_test_path"])
    return float(e["params_m"]), gflops / 2, gflops, float(e["seconds_per_image_batch1"])


def _efficiency_notes(rows: Sequence[CompareRow]) -> list[str]:
    notes = []
    missing = [r.label for r in rows if r.result.efficiency is None]
    if missing:
        notes.append(f"No efficiency figures for {', '.join(missing)}: evaluate with --efficiency.")
    timed = {r.label: r.result.efficiency["device"] for r in rows if r.result.efficiency is not None}
    if timed:
        devices = sorted(set(timed.values()))
        notes.append(
            "Seconds per image at batch 1 on " + ", ".join(devices) + " (the paper's: an A100); "
            "GMACs = GFLOPs / 2, the paper's 'FLOPs' are multiply-adds."
        )
    return notes


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def _setting(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting(v) for v in value)
    return str(value)


def _differing_settings(rows: Sequence[CompareRow]) -> list[str]:
    configs = [_flat({k: v for k, v in r.result.config.items() if k not in _UNCOMPARED_KEYS}) for r in rows]
    keys: list[str] = []
    for cfg in configs:
        keys += [k for k in cfg if k not in keys]
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def _check_robustness(rows: Sequence[CompareRow]) -> dict[str, RobustnessResult]:
    results: dict[str, RobustnessResult] = {}
    for row in rows:
        if row.result.robustness is None:
            raise DataError(f"{row.result.path}: no robustness.json; evaluate with --robustness into it")
        results[row.label] = row.result.robustness
    first_label, first = next(iter(results.items()))
    for label, res in results.items():
        for what in ("metric", "corruptions", "severities"):
            if getattr(res, what) != getattr(first, what):
                raise DataError(
                    f"rows '{label}' and '{first_label}' have different robustness {what} "
                    f"({getattr(res, what)} and {getattr(first, what)}); evaluate them alike"
                )
    return results


def rank_marks(values: Sequence[float | None], digits: int = 2) -> list[str]:
    """ "best" / "second" / "" per value: the highest and the next lower distinct value at ``digits``.

    Values equal at the printed precision share a mark; with fewer than two values nothing is marked.
    """
    shown = [None if v is None else round(v, digits) for v in values]
    distinct = sorted({v for v in shown if v is not None}, reverse=True)
    if sum(v is not None for v in shown) < 2:
        return [""] * len(values)
    best, second = distinct[0], (distinct[1] if len(distinct) > 1 else None)
    return [
        "best" if v == best and v is not None else "second" if v == second and v is not None else ""
        for v in shown
    ]


def compare(
    rows: Sequence[CompareRow],
    layout: str = "attribution",
    sets: Sequence[str] | None = None,
    title: str | None = None,
    digits: int = 2,
) -> Comparison:
    """Build one comparison table from the rows, in the order given.

    Args:
        rows: what :func:`load_rows` returned.
        layout: one of :data:`LAYOUTS`.
        sets: the test sets shown as columns and averaged, in this order; default the unseen sets.
        title: the table's title; default names the layout.
        digits: decimals at which best and second best are decided (as printed).

    Raises:
        ConfigError: unknown layout or set, or sets given for the robustness layout.
        DataError: folders that are not comparable (different test data, threshold, robustness grid).
    """
    if layout not in LAYOUTS:
        close = difflib.get_close_matches(layout, LAYOUTS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown layout '{layout}'{hint}; use one of {', '.join(LAYOUTS)}")
    rows = list(rows)
    check_comparable(rows)
    tau = rows[0].result.provenance["tau"]
    notes = ["Values in %. Rows in the order given; bold: best, underlined: second best."]
    if layout == "robustness":
        if sets:
            raise ConfigError(
                "--sets does not apply to the robustness layout (its metric is set by evaluate)"
            )
        return _robustness(rows, title, digits, notes)
    chosen = _pick_sets(rows, sets)
    cells: list[tuple[Cell, ...]] = []
    if layout == "attribution":
        columns = ("Method", *chosen, "Average", "Detection ACC", "Detection AUC")
        for row in rows:
            members = _set_metrics(row, chosen)
            cells.append((row.label, *(_pct(s.open_set_acc) for s in members), *_averages(members)))
        marked = tuple(range(1, len(columns)))
        default_title = f"Open-set attribution ACC (tau = {tau:g}) and detection, averaged over the sets"
        notes.append(
            "Detection ACC and AUC: means over the sets shown where defined (all-fake sets paired as evaluated)."
        )
    elif layout == "detection":
        columns = (
            "Method",
            *(f"{n} {m}" for n in chosen for m in ("ACC", "AUC")),
            "Average ACC",
            "Average AUC",
        )
        for row in rows:
            members = _set_metrics(row, chosen)
            per_set = [v for s in members for v in (_pct(s.detection_acc), _pct(s.detection_auc))]
            _, acc, auc = _averages(members)
            cells.append((row.label, *per_set, acc, auc))
        marked = tuple(range(1, len(columns)))
        default_title = "Detection ACC and AUC per set"
    elif layout == "wild":
        columns = (
            "Method",
            *chosen,
            "Average",
            "Detection ACC",
            "Detection AUC",
            "Params (M)",
            "GMACs",
            "GFLOPs",
            "s / image",
        )
        for row in rows:
            members = _set_metrics(row, chosen)
            cells.append(
                (row.label, *(_pct(s.open_set_acc) for s in members), *_averages(members), *_efficiency(row))
            )
        marked = tuple(range(1, len(chosen) + 4))
        default_title = f"Open-set attribution ACC (tau = {tau:g}), detection and cost (layout of Table VII)"
        notes += _efficiency_notes(rows)
    else:  # ablation
        settings = _differing_settings(rows)
        with_cost = any(r.result.efficiency is not None for r in rows)
        columns = ("Run", *settings, "Attribution ACC", "Detection ACC", "Detection AUC")
        columns += ("Params (M)", "GMACs") if with_cost else ()
        for row in rows:
            flat = _flat(row.result.config)
            cost = _efficiency(row)[:2] if with_cost else ()
            cells.append(
                (
                    row.label,
                    *(_setting(flat.get(k)) for k in settings),
                    *_averages(_set_metrics(row, chosen)),
                    *cost,
                )
            )
        first_metric = 1 + len(settings)
        marked = tuple(range(first_metric, first_metric + 3))
        default_title = f"Ablation: runs over {len(chosen)} sets (attribution open set, tau = {tau:g})"
        notes.append(
            "Settings: the config values that differ between the runs. Metrics: means over "
            + ", ".join(chosen)
            + "."
        )
        if with_cost:
            notes += _efficiency_notes(rows)
    return Comparison(
        layout=layout,
        table=_marked_table(layout, title or default_title, columns, cells, marked, notes, digits),
        rows=tuple(rows),
        sets=chosen,
        marked_columns=marked,
    )


def _robustness(rows: list[CompareRow], title: str | None, digits: int, notes: list[str]) -> Comparison:
    from gazeclip_cli.core.evaluate.corruptions import CORRUPTIONS

    results = _check_robustness(rows)
    first = next(iter(results.values()))
    titles = [CORRUPTIONS[c].title if c in CORRUPTIONS else c for c in first.corruptions]
    corrupted_severities = [s for s in first.severities if s > 0]
    span = f"{min(corrupted_severities)}-{max(corrupted_severities)}" if corrupted_severities else "-"
    columns = ("Method", "Clean", *titles, f"Mean {span}")
    cells: list[tuple[Cell, ...]] = []
    for row in rows:
        res = results[row.label]
        corrupted = [[v for s, v in zip(res.severities, vals, strict=True) if s > 0] for vals in res.values]
        clean = res.values[0][res.severities.index(0)] if 0 in res.severities else None
        per = [_pct(_mean(v)) for v in corrupted]
        cells.append((row.label, _pct(clean), *per, _pct(_mean([v for vs in corrupted for v in vs]))))
    notes.append(f"Metric: {first.metric}; each corruption is the mean over severities {span}.")
    marked = tuple(range(1, len(columns)))
    return Comparison(
        layout="robustness",
        table=_marked_table(
            "robustness", title or "Robustness (layout of Fig. 6)", columns, cells, marked, notes, digits
        ),
        rows=tuple(rows),
        sets=(),
        marked_columns=marked,
    )


def _marked_table(
    key: str,
    title: str,
    columns: Sequence[str],
    cells: Sequence[tuple[Cell, ...]],
    marked: Sequence[int],
    notes: Sequence[str],
    digits: int,
) -> Table:
    marks = [[""] * len(columns) for _ in cells]
    for c in marked:
        column = [row[c] if isinstance(row[c], float) else None for row in cells]
        for r, mark in enumerate(rank_marks(column, digits)):
            marks[r][c] = mark
    return Table(
        key=key,
        title=title,
        columns=tuple(columns),
        rows=tuple(tuple(r) for r in cells),
        notes=tuple(notes),
        marks=tuple(tuple(m) for m in marks),
    )


def write_comparison(
    comparison: Comparison, out_dir: str | Path, digits: int = 2, plot: bool = True
) -> WrittenComparison:
    """Write ``compare-<layout>.md``, ``.csv``, ``.json`` (and ``.png`` for robustness) into ``out_dir``."""
    stem = f"compare-{comparison.layout}"
    written = write_tables(
        (comparison.table,), comparison.to_dict(), Path(out_dir), stem, [f"{stem}.csv"], digits
    )
    png = None
    if plot and comparison.layout == "robustness":
        series = {row.label: row.result.robustness for row in comparison.rows}
        png = plot_robustness(series, Path(out_dir) / f"{stem}.png")  # type: ignore[arg-type]
    return WrittenComparison(comparison, written.markdown, written.csv[0], written.json, png)
