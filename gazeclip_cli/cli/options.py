"""Options that several commands share, defined once so that every command speaks one dialect.

``--device`` (default ``auto``), ``--format table|json``, ``--model DIR`` (``$GAZECLIP_MODEL``),
``--frames-per-video N``, ``--runtime``, ``--quiet`` and the engine options of ``scan`` and ``preprocess``
(``--engine local|ray`` and the Ray cluster's sizes, docs/SCALE-OUT.md); each command takes them from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from gazeclip_cli.cli.output import FORMATS
from gazeclip_cli.core.data.frame_sampling import DEFAULT_FRAMES_PER_VIDEO
from gazeclip_cli.core.errors import ConfigError

if TYPE_CHECKING:
    from gazeclip_cli.core.ray_engine import RayOptions

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


RUNTIME_HELP = (
    "What runs the network: auto (the folder's ONNX export on the CPU when it has one, else torch), "
    "torch, onnx or onnx-int8 (made once by `gazeclip export`; docs/INFERENCE.md)."
)


def _check_runtime(value: str) -> str:
    from gazeclip_cli.core.inference.fast_cpu import RUNTIMES

    if value not in RUNTIMES:
        raise typer.BadParameter(f"'{value}': use {', '.join(RUNTIMES)}")
    return value


def runtime_option() -> Any:
    """``--runtime auto|torch|onnx|onnx-int8``: what runs the forward (faces are prepared alike)."""
    return typer.Option(
        "auto", "--runtime", metavar="auto|torch|onnx|onnx-int8", callback=_check_runtime, help=RUNTIME_HELP
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


# Engines (scan, preprocess)

ENGINES = ("local", "ray")


def _check_engine(value: str) -> str:
    if value not in ENGINES:
        raise typer.BadParameter(f"'{value}': use {' or '.join(ENGINES)}")
    return value


def engine_option() -> Any:
    """``--engine local|ray``: this process's threads, or a Ray cluster."""
    return typer.Option(
        "local",
        "--engine",
        metavar="local|ray",
        callback=_check_engine,
        help='local: threads of this process; ray: a Ray cluster (the extra: pip install "gazeclip\\[ray]").',
    )


def _ray_option(default: Any, flag: str, metavar: str, what: str, **kwargs: Any) -> Any:
    """An option of the Ray engine alone (given without ``--engine ray``: a usage error)."""
    return typer.Option(default, flag, metavar=metavar, help=f"With --engine ray: {what}", **kwargs)


def address_option() -> Any:
    return _ray_option(
        None,
        "--address",
        "ADDRESS",
        "the cluster to join (auto, HOST:6379 or ray://HOST:10001); default: a Ray instance of this machine.",
        show_default=False,
    )


def actors_option() -> Any:
    return _ray_option(
        0,
        "--actors",
        "N",
        "model workers, each loading the model once (0: one per GPU, or the cluster's CPUs / --cpus-per-task).",
        min=0,
        show_default=False,
    )


def cpus_per_task_option() -> Any:
    return _ray_option(1, "--cpus-per-task", "N", "CPUs of each worker preparing files.", min=1)


def files_per_task_option() -> Any:
    return _ray_option(
        64,
        "--files-per-task",
        "N",
        "files a Ray task carries, rounded up to whole batches (fewer, larger tasks: less scheduling).",
        min=1,
    )


_RAY_PARAMS = (
    ("address", "--address"),
    ("actors", "--actors"),
    ("cpus_per_task", "--cpus-per-task"),
    ("files_per_task", "--files-per-task"),
)


def ray_options(ctx: typer.Context, device: str, local_flags: list[str]) -> RayOptions | None:
    """The Ray engine's options from the command's ``--engine`` and Ray flags, or None for the local
    engine; checked before anything loads.

    Args:
        local_flags: local-engine flags the user gave (refused with the Ray engine).

    Raises:
        typer.BadParameter: Ray flags without ``--engine ray``, local flags with it, or a
            ``--device`` the Ray engine cannot place (usage errors: exit 2).
        ConfigError: Ray is not installed (the message says how to install the extra).
    """
    ray_flags = [flag for name, flag in _RAY_PARAMS if given(ctx, name)]
    if ctx.params["engine"] == "local":
        if ray_flags:
            raise typer.BadParameter("Ray engine options; add --engine ray", param_hint=", ".join(ray_flags))
        return None
    if local_flags:
        raise typer.BadParameter(
            "the local engine's threads; with --engine ray size the workers with --actors and --cpus-per-task",
            param_hint=", ".join(local_flags),
        )
    from gazeclip_cli.core.ray_engine import RayOptions, import_ray

    try:
        ray = RayOptions(
            address=ctx.params["address"],
            actors=ctx.params["actors"] or None,
            cpus_per_task=ctx.params["cpus_per_task"],
            device=device.strip().lower(),
            **({"files_per_task": ctx.params["files_per_task"]} if "files_per_task" in ctx.params else {}),
        )
    except ConfigError as exc:  # names the flag: the command line is wrong
        raise typer.BadParameter(str(exc)) from None
    import_ray()  # not installed: one line saying how to install it, before the model loads
    return ray
