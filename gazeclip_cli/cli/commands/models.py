"""`gazeclip models`: the named architectures, the registered gaze estimators, and the model folders found."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from gazeclip_cli.cli import options, output


def models_command(
    folder: Path = typer.Option(
        Path("models"), "--dir", metavar="DIR", help="Where to look for model folders (3 levels deep)."
    ),
    fmt: str = options.format_option("architectures and model folders"),
) -> None:
    """Named architectures (for `train -a` and `model-info -a`), gaze estimators (for
    `preprocess --gaze-estimator`) and the trained model folders found."""
    from gazeclip_cli.core.model.builder import weight_names
    from gazeclip_cli.core.model.config import architecture_summary, list_architectures, load_architecture
    from gazeclip_cli.core.model.folder import find_model_folders, summarise_folder
    from gazeclip_cli.core.model.gaze_estimator import GAZE_ESTIMATORS, estimator_summary

    architectures = []
    for name in list_architectures():
        cfg = load_architecture(name)
        architectures.append(
            {
                "name": name,
                "image_size": cfg.image_size,
                "pretrained_weights": weight_names(cfg),
                "summary": architecture_summary(name),
            }
        )
    estimators = [
        {"name": name, "weights": cls.weights_name or None, "summary": estimator_summary(name)}
        for name, cls in GAZE_ESTIMATORS.items()
    ]
    folders = find_model_folders(folder)
    default = os.environ.get(options.MODEL_ENV) or options.DEFAULT_MODEL
    if Path(default).is_dir() and all(f.path.resolve() != Path(default).resolve() for f in folders):
        folders.append(summarise_folder(default))
    rows = [
        {
            "path": str(f.path),
            "default": Path(f.path).resolve() == Path(default).resolve(),
            "architecture": f.architecture,
            "classes": f.classes,
            "created": f.created,
            "synthetic": f.synthetic,
            "problem": f.problem,
        }
        for f in folders
    ]
    if fmt == "json":
        output.print_json(
            {
                "architectures": architectures,
                "gaze_estimators": estimators,
                "model_folders": rows,
                "default_model": default,
            }
        )
        return
    output.print_table(
        "architectures",
        ["name", "image", "pretrained weights", "what"],
        [
            [
                a["name"],
                a["image_size"],
                ", ".join(a["pretrained_weights"]) or "none (random towers)",
                a["summary"],
            ]
            for a in architectures
        ],
    )
    output.print_table(
        "gaze estimators (preprocess --gaze-estimator)",
        ["name", "released weights", "what"],
        [[e["name"], e["weights"] or "none", e["summary"]] for e in estimators],
    )
    if not rows:
        output.prose(f"no model folder under {folder}; train one with `gazeclip train` (or `gazeclip demo`)")
        return
    output.print_table(
        f"model folders under {folder}",
        ["folder", "architecture", "classes", "created", "trained on"],
        [
            [
                r["path"] + (" (default)" if r["default"] else ""),
                r["architecture"] or "-",
                r["classes"],
                r["created"] or "-",
                "synthetic demo" if r["synthetic"] else ("-" if r["problem"] else "data"),
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r["problem"]:
            output.warn(r["problem"])
    output.prose(f"default model (attribute, scan, evaluate): {default} (${options.MODEL_ENV} or --model)")


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
