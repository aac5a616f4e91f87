"""`gazeclip model-info`: parameters per module and FLOPs per image, beside the paper's Table VII."""

from __future__ import annotations

import typer

from gazeclip_cli.cli import options, output


def model_info_command(
    architecture: str = typer.Option(
        "gazeclip-vit-b-32",
        "--architecture",
        "-a",
        metavar="NAME",
        help="Named architecture (listed by `gazeclip models`) or a .toml path.",
    ),
    fmt: str = options.format_option("the counts"),
) -> None:
    """Parameters (total, trainable, frozen) per module and FLOPs per image (test and train paths).

    Counts need no weight files: the towers are built with random values of the right shapes.
    """
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.info import PAPER_TABLE_VII, model_info

    cfg = load_architecture(architecture)
    info = model_info(build_gazeclip(cfg, WeightSources(pretrained=False)))
    if fmt == "json":
        output.print_json(info.as_dict())
        return
    m = 1e6
    rows = [[c.module, c.total / m, c.trainable / m, c.frozen / m] for c in info.modules]
    rows.append(["total", info.total / m, info.trainable / m, (info.total - info.trainable) / m])
    output.print_table(f"{cfg.name}: parameters (M)", ["module", "total", "trainable", "frozen"], rows)
    g = 1e9
    output.print_table(
        "per image",
        ["path", "GFLOPs", "GMACs"],
        [
            [
                "test (VPE + GIE, gaze estimator included)",
                info.test_path_flops / g,
                info.test_path_flops / 2 / g,
            ],
            ["train (+ LRE, one prompt set)", info.train_path_flops / g, info.train_path_flops / 2 / g],
        ],
    )
    output.prose(
        f"Paper, Table VII: {PAPER_TABLE_VII['params_m']:.2f} M parameters, {PAPER_TABLE_VII['gflops']:.2f} GFLOPs, "
        f"{PAPER_TABLE_VII['seconds_per_image_a100']} s per image on an A100. Why ours differs: README, 'model-info'."
    )


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info_command)
