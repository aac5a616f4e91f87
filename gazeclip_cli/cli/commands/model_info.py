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
        help="Named architecture (listed by `gazeclip models`), timm:<model name>, or a .toml path.",
    ),
    fmt: str = options.format_option("the counts"),
) -> None:
    """Parameters (total, trainable, frozen) per module and FLOPs per image (test and train paths).

    Counts need no weight files: the towers are built with random values of the right shapes.
    """
    from gazeclip_cli.core.model.builder import WeightSources, build_model
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.info import model_info
    from gazeclip_cli.core.model.paper import paper_row

    cfg = load_architecture(architecture)
    info = model_info(build_model(cfg, WeightSources(pretrained=False)))
    if fmt == "json":
        output.print_json(info.as_dict())
        return
    m, g = 1e6, 1e9
    rows = [[c.module, c.total / m, c.trainable / m, c.frozen / m] for c in info.modules if c.total]
    rows.append(["total", info.total / m, info.trainable / m, (info.total - info.trainable) / m])
    output.print_table(f"{cfg.name}: parameters (M)", ["module", "total", "trainable", "frozen"], rows)
    text = bool(info.text_flops_per_prompt_set)  # a train path that differs: the text tower
    flops = [
        [c.module, c.test_flops / g, c.test_flops / 2 / g]
        + ([c.train_flops / g, c.train_flops / 2 / g] if text else [])
        for c in info.modules
        if c.train_flops
    ]
    flops.append(
        ["total", info.test_path_flops / g, info.test_path_flops / 2 / g]
        + ([info.train_path_flops / g, info.train_path_flops / 2 / g] if text else [])
    )
    gaze = " (gaze estimator included)" if cfg.uses_gaze else ""
    output.print_table(
        f"per image at {cfg.image_size} x {cfg.image_size}: test path{gaze}"
        + (" and train path (+ text tower, one prompt set)" if text else ""),
        ["module", "test GFLOPs", "test GMACs"] + (["train GFLOPs", "train GMACs"] if text else []),
        flops,
    )
    output.out.print("GFLOPs count a multiply-add as 2 FLOPs; GMACs count it once.")
    row = paper_row(cfg.name)
    if row is None:
        output.prose("The paper reports no row for this architecture.")
        return
    seconds = f", {row.seconds_per_image} s per image on an A100" if row.seconds_per_image else ""
    output.print_table(
        f"ours beside the paper's Table {row.table} ({row.method})",
        ["", "params (M)", "G (paper's FLOPs = MACs)"],
        [["paper", row.params_m, row.gflops], ["ours", info.total / m, info.test_path_flops / 2 / g]],
    )
    output.prose(
        f"Paper{seconds}. Why ours differs: docs/DECISIONS.md, 'Baselines' (README, 'model-info', for GazeCLIP)."
    )


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info_command)
