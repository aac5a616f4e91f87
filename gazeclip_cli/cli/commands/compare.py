"""`gazeclip compare`: one table from several `evaluate` result folders, in the paper's layouts."""

from __future__ import annotations

from pathlib import Path

import typer

from gazeclip_cli.cli import options, output

_STYLE = {"best": "bold", "second": "underline"}


def compare_command(
    folders: list[str] = typer.Argument(
        ...,
        metavar="FOLDER...",
        help="evaluate --out folders, one per row, in row order; LABEL=FOLDER names a row.",
        show_default=False,
    ),
    out: Path = typer.Option(
        Path("comparison"), "--out", "-o", metavar="DIR", help="Folder for the table (Markdown, CSV, JSON)."
    ),
    layout: str = typer.Option(
        "attribution",
        "--layout",
        "-l",
        metavar="LAYOUT",
        help="attribution, detection, wild, ablation or robustness.",
    ),
    sets: str | None = typer.Option(
        None,
        "--sets",
        metavar="A,B,...",
        help="Comma-separated test sets as columns, in order (default: the unseen sets).",
    ),
    group: str | None = typer.Option(
        None,
        "--group",
        metavar="NAME",
        help="Columns from a [groups] table of --protocol, e.g. table2 (Table II's sets).",
    ),
    protocol: Path | None = typer.Option(
        None, "--protocol", metavar="FILE", help="Protocol TOML whose --group is used."
    ),
    title: str | None = typer.Option(None, "--title", metavar="TEXT", help="Table title."),
    fmt: str = options.format_option("the comparison, as its JSON file holds it"),
) -> None:
    """Compare methods (Tables II, III, VII, VIII), runs (ablations) or robustness (Fig. 6); bold best, underline second."""
    import json

    from gazeclip_cli.core.errors import ConfigError
    from gazeclip_cli.core.evaluate.compare import compare, load_rows, parse_folder_spec, write_comparison

    if sets and group:
        raise typer.BadParameter("give --sets or --group, not both", param_hint="--group")
    columns = [s.strip() for s in sets.split(",") if s.strip()] if sets else None
    if group:
        if protocol is None:
            raise typer.BadParameter("--group needs --protocol", param_hint="--group")
        from gazeclip_cli.core.data.protocol import load_protocol

        groups = load_protocol(protocol).groups
        if group not in groups:
            raise ConfigError(f"{protocol}: no group '{group}' (groups: {', '.join(groups)})")
        columns = list(groups[group].members)
        title = title or groups[group].title
    rows = load_rows([parse_folder_spec(f) for f in folders])
    comparison = compare(rows, layout, columns, title)
    written = write_comparison(comparison, out)
    if fmt == "json":
        output.print_json(json.loads(written.json.read_text(encoding="utf-8")))
        output.info(f"written to {written.markdown}, {written.csv.name}, {written.json.name}")
        return
    table = comparison.table
    cells = [list(row) for row in table.rows]  # numbers stay numbers: right-aligned, 2 decimals
    styles = [[_STYLE.get(table.mark(r, c)) for c in range(len(row))] for r, row in enumerate(table.rows)]
    output.print_table(table.title, list(table.columns), cells, styles=styles)
    for note in table.notes:
        output.prose(f"- {note}", indent=2)
    output.prose(f"written to {written.markdown}, {written.csv.name}, {written.json.name}")
    if written.plot:
        output.prose(f"plot: {written.plot}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
