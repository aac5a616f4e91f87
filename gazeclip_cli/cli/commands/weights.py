"""`gazeclip weights` (what is present, with checksums) and `gazeclip weights fetch`."""

from __future__ import annotations

from pathlib import Path

import typer

from gazeclip_cli.cli import options, output
from gazeclip_cli.core.weights.fetch import fetch_weight
from gazeclip_cli.core.weights.locate import (
    KNOWN_WEIGHTS,
    find_weight,
    missing_message,
    sha256_file,
    weights_dir,
)

weights_app = typer.Typer(
    help="Pretrained weights: what is present, and fetching them.", invoke_without_command=True
)


@weights_app.callback()
def weights_status(
    ctx: typer.Context,
    directory: Path | None = options.weights_dir_option(),
    fmt: str = options.format_option("each weight's status"),
) -> None:
    """Show which pretrained weights are present (with SHA-256) and what is missing."""
    if ctx.invoked_subcommand is not None:
        return
    folder = weights_dir(directory)
    rows = []
    for name, spec in KNOWN_WEIGHTS.items():
        path = find_weight(name, folder)
        rows.append(
            {
                "name": name,
                "present": path is not None,
                "path": str(path) if path else None,
                "size_mb": round(path.stat().st_size / 1e6, 1) if path else None,
                "sha256": sha256_file(path) if path else None,
                "description": spec.description,
                "missing": None if path else missing_message(name, folder),
            }
        )
    if fmt == "json":
        output.print_json({"weights_dir": str(folder), "weights": rows})
        return
    output.print_table(
        f"weights in {folder}",
        ["name", "status", "size (MB)", "sha256", "what"],
        [
            [
                r["name"],
                "present" if r["present"] else "MISSING",
                r["size_mb"],
                (r["sha256"] or "")[:16],
                r["description"],
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r["missing"]:
            output.prose(f"- {r['missing']}")


@weights_app.command("fetch")
def weights_fetch(
    names: list[str] = typer.Argument(
        None, metavar="NAME...", help="Weights to fetch (default: all).", show_default=False
    ),
    directory: Path | None = options.weights_dir_option(),
) -> None:
    """Download CLIP weights through open_clip (needs internet); say how to get ETH-XGaze's by hand."""
    folder = weights_dir(directory)
    for name in names or list(KNOWN_WEIGHTS):
        result = fetch_weight(name, folder)
        if result.path:
            output.prose(f"{name}: {result.instructions} -> {result.path} (sha256 {result.sha256})")
        else:
            output.prose(f"{name}: {result.instructions}")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
