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
    present_timm_weights,
    sha256_file,
    weight_spec,
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
    names = list(KNOWN_WEIGHTS) + [n for n in present_timm_weights(folder) if n not in KNOWN_WEIGHTS]
    for name in names:
        spec = weight_spec(name)
        path = find_weight(name, folder)
        rows.append(
            {
                "name": name,
                "present": path is not None,
                "path": str(path) if path else None,
                "size_mb": round(path.stat().st_size / 1e6, 1) if path else None,
                "sha256": sha256_file(path) if path else None,
                "description": spec.description,
                "source": spec.source,
                "missing": None if path else missing_message(name, folder),
            }
        )
    if fmt == "json":
        output.print_json({"weights_dir": str(folder), "weights": rows})
        return
    output.print_table(
        f"weights in {folder}",
        ["name", "status", "size (MB)", "sha256", "what", "from"],
        [
            [
                r["name"],
                "present" if r["present"] else "MISSING",
                r["size_mb"],
                (r["sha256"] or "")[:16],
                r["description"],
                r["source"],
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
        None,
        metavar="NAME...",
        help="Weights (timm-<model>.<tag> for any timm backbone) or architectures (their weights); default: all known.",
        show_default=False,
    ),
    directory: Path | None = options.weights_dir_option(),
) -> None:
    """Download CLIP (open_clip) and timm backbone weights (needs internet); say how to get the gaze estimators' by hand."""
    from gazeclip_cli.core.model.builder import resolve_weight_names

    folder = weights_dir(directory)
    for name in resolve_weight_names(names) if names else list(KNOWN_WEIGHTS):
        result = fetch_weight(name, folder)
        if result.path:
            output.prose(f"{name}: {result.instructions} -> {result.path} (sha256 {result.sha256})")
        else:
            output.prose(f"{name}: {result.instructions}")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
