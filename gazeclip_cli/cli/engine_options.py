"""The engine options of ``scan`` and ``preprocess``: ``--engine local|ray`` and the Ray cluster's sizes.

docs/SCALE-OUT.md says which flag maps to which Ray resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from gazeclip_cli.core.errors import ConfigError

if TYPE_CHECKING:
    from gazeclip_cli.core.ray_engine import RayOptions

ENGINES = ("local", "ray")


def engine_option() -> Any:
    return typer.Option(
        "local",
        "--engine",
        help='local: threads of this process; ray: a Ray cluster (the extra: pip install "gazeclip[ray]").',
    )


def address_option() -> Any:
    return typer.Option(
        None,
        "--address",
        help="With --engine ray: the cluster to join (auto, HOST:6379 or ray://HOST:10001); "
        "default: a Ray instance of this machine.",
        show_default=False,
    )


def actors_option() -> Any:
    return typer.Option(
        0,
        "--actors",
        help="With --engine ray: model workers, each loading the model once "
        "(0: one per GPU, or the cluster's CPUs / --cpus-per-task).",
        show_default=False,
    )


def cpus_per_task_option() -> Any:
    return typer.Option(1, "--cpus-per-task", help="With --engine ray: CPUs of each worker preparing files.")


def ray_options(
    engine: str, address: str | None, actors: int, cpus_per_task: int, device: str, local_flags: list[str]
) -> RayOptions | None:
    """The Ray engine's options, or None for the local engine; checked before anything loads.

    Args:
        local_flags: local-engine flags the user set (refused with the Ray engine).

    Raises:
        ConfigError: an unknown engine, Ray flags without ``--engine ray`` (or local flags with
            it), bad sizes, or Ray not installed (with how to install the extra).
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine}: use local or ray")
    ray_flags = [
        flag
        for flag, given in (
            ("--address", address is not None),
            ("--actors", actors != 0),
            ("--cpus-per-task", cpus_per_task != 1),
        )
        if given
    ]
    if engine == "local":
        if ray_flags:
            raise ConfigError(f"{', '.join(ray_flags)}: Ray engine options; add --engine ray")
        return None
    if local_flags:
        raise ConfigError(
            f"{', '.join(local_flags)}: the local engine's threads; with --engine ray size the workers "
            "with --actors and --cpus-per-task"
        )
    from gazeclip_cli.core.ray_engine import RayOptions, import_ray

    import_ray()  # not installed: one line saying how to install it, before the model loads
    return RayOptions(
        address=address, actors=actors or None, cpus_per_task=cpus_per_task, device=device.strip().lower()
    )
