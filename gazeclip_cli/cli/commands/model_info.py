"""`gazeclip model-info`: parameters per module and FLOPs per image, beside the paper's Table VII."""

from __future__ import annotations

import typer

from gazeclip_cli.cli import output


def model_info_command(
    architecture: str = typer.Option(
        "gazeclip-vit-b-32", "--architecture", "-a", help="Named architecture or a .toml path."
    ),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Parameters (total, trainable, frozen) per module and FLOPs per image (test and train paths).

    Counts need no weight files: the towers are built with random values of the right shapes.
    """
    if fmt not in ("table", "json"):
        raise typer.BadParameter("must be 'table' or 'json'", param_hint="--format")
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.info import PAPER_TABLE_VII, model_info

    cfg = load_architecture(architecture)
    info = model_info(build_gazeclip(cfg, WeightSources(pretrained=False)))
    if fmt == "json":
        output.print_json(info.as_dict())
        return
    m, g = 1e6, 1e9
    rows = [[c.module, c.total / m, c.trainable / m, c.frozen / m] for c in info.modules if c.total]
    rows.append(["total", info.total / m, info.trainable / m, (info.total - info.trainable) / m])
    output.print_table(f"{cfg.name}: parameters (M)", ["module", "total", "trainable", "frozen"], rows)
    flops = [
        [c.module, c.test_flops / g, c.test_flops / 2 / g, c.train_flops / g, c.train_flops / 2 / g]
        for c in info.modules
        if c.train_flops
    ]
    flops.append(
        [
            "total",
            info.test_path_flops / g,
            info.test_path_flops / 2 / g,
            info.train_path_flops / g,
            info.train_path_flops / 2 / g,
        ]
    )
    output.print_table(
        "per image: test path (gaze estimator included) and train path (+ text tower, one prompt set)",
        ["module", "test GFLOPs", "test GMACs", "train GFLOPs", "train GMACs"],
        flops,
    )
    output.out.print(
        "GFLOPs count a multiply-add as 2 FLOPs; GMACs count it once. "
        f"Paper, Table VII: {PAPER_TABLE_VII['params_m']:.2f} M parameters, {PAPER_TABLE_VII['gflops']:.2f} G "
        f'"FLOPs" (convention not stated), {PAPER_TABLE_VII["seconds_per_image_a100"]} s per image on an A100. '
        "Why ours differs: README, 'Why model-info differs'."
    )


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info_command)
