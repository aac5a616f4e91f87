"""Options that several commands share, defined once so that every command speaks one dialect.

``--device`` (default ``auto``), ``--format table|json``, ``--model DIR`` (``$GAZECLIP_MODEL``),
``--frames-per-video N`` and ``--quiet``; each command takes them from here.
"""

from __future__ import annotations

from typing import Any

import typer

from gazeclip_cli.cli.output import FORMATS
from gazeclip_cli.core.data.frame_sampling import DEFAULT_FRAMES_PER_VIDEO

DEFAULT_MODEL = "models/gazeclip"
MODEL_ENV = "GAZECLIP_MODEL"
DEVICE_HELP = "Where the networks run: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N."


def device_option() -> Any:
    """``--device DEVICE``, default ``auto`` in every command."""
    return typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP)


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given (command line or environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _check_format(value: str) -> str:
    if value not in FORMATS:
        raise typer.BadParameter(f"'{value}': use {' or '.join(FORMATS)}")
    return value


def format_option(json_means: str = "the result as JSON") -> Any:
    """``--format table|json``: tables for reading, or JSON alone on stdout (messages go to stderr)."""
    return typer.Option(
        "table",
        "--format",
        metavar="table|json",
        callback=_check_format,
        help=f"table: for reading; json: {json_means}, alone on stdout.",
    )


def model_option() -> Any:
    """``--model DIR``, ``$GAZECLIP_MODEL`` when set, else ``models/gazeclip``."""
    return typer.Option(
        DEFAULT_MODEL,
        "--model",
        "-m",
        envvar=MODEL_ENV,
        metavar="DIR",
        help="Model folder (config.toml, weights.safetensors, meta.json).",
    )


def frames_option() -> Any:
    """``--frames-per-video N``: one name and one default wherever videos are sampled."""
    return typer.Option(
        DEFAULT_FRAMES_PER_VIDEO,
        "--frames-per-video",
        metavar="N",
        min=1,
        help="Frames taken from each video: the centres of N equal parts.",
    )


def out_option(metavar: str, what: str) -> Any:
    """The required ``--out`` / ``-o`` of a command that writes one thing (a file or a folder)."""
    return typer.Option(..., "--out", "-o", metavar=metavar, help=what, show_default=False)


def quiet_option(what: str = "No progress bar and no summary.") -> Any:
    return typer.Option(False, "--quiet", "-q", help=what)


def weights_dir_option() -> Any:
    return typer.Option(
        None,
        "--weights-dir",
        metavar="DIR",
        help="Pretrained weights folder (default: $GAZECLIP_WEIGHTS_DIR or models/weights).",
        show_default=False,
    )


def threshold_option() -> Any:
    return typer.Option(
        0.9,
        "--threshold",
        metavar="TAU",
        help="Open-set threshold: below this top attribution probability the generator is 'unknown'.",
    )
