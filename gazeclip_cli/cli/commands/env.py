"""`gazeclip env`: versions, devices, CPU and weights of this machine, for a bug report."""

from __future__ import annotations

from pathlib import Path

import typer

from gazeclip_cli.cli import options, output


def env_command(
    weights_dir: Path | None = options.weights_dir_option(),
    fmt: str = options.format_option("the whole environment"),
) -> None:
    """What a bug report needs: gazeclip, Python and library versions, CUDA devices, CPU, weights found."""
    from gazeclip_cli.core.environment import describe_environment

    env = describe_environment(weights_dir)
    if fmt == "json":
        output.print_json(env.as_dict())
        return
    rows: list[list[object]] = [
        ["gazeclip", env.gazeclip],
        ["python", f"{env.python} ({env.executable})"],
        ["platform", env.platform],
        ["torch CUDA build", env.torch_cuda_build or "none (CPU build)"],
        ["cuDNN", env.cudnn or "-"],
        ["CUDA available", env.cuda_available],
    ]
    rows += [
        [f"cuda:{d.index}", f"{d.name}, {d.memory_gb} GiB, compute capability {d.capability}"]
        for d in env.cuda_devices
    ]
    quota = "" if env.cpu_quota is None else f", container quota {env.cpu_quota:g}"
    rows += [
        [
            "CPU",
            f"{env.cpu_capability}; {env.cpu_cores} usable cores{quota}; torch threads {env.torch_threads}",
        ],
    ]
    output.print_table("gazeclip env", ["", "value"], rows)
    output.print_table("libraries", ["distribution", "version"], [[k, v] for k, v in env.libraries.items()])
    output.print_table(
        f"weights in {env.weights_dir}",
        ["name", "found"],
        [
            [w.name, f"{w.path} ({w.size_mb} MB)" if w.path else "MISSING (see gazeclip weights)"]
            for w in env.weights
        ],
    )
    if env.environment:
        output.print_table("environment", ["variable", "value"], [[k, v] for k, v in env.environment.items()])


def register(app: typer.Typer) -> None:
    app.command("env")(env_command)
