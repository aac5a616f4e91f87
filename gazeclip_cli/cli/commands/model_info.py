"""`gazeclip model-info`: parameters per module and FLOPs per image, beside the paper's Table VII."""

from __future__ import annotations

import typer

from gazeclip_cli.cli import output


def model_info_command(
    architecture: str = typer.Option(
        "gazeclip-vit-b-32",
        "--architecture",
        "-a",
        help="Named architecture, timm:<model name>, or a .toml path.",
    ),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Parameters (total, trainable, frozen) per module and FLOPs per image (test and train paths).

    Counts need no weight files: the towers are built with random values of the right shapes.
    """
    if fmt not in ("table", "json"):
        raise typer.BadParameter("must be 'table' or 'json'", param_hint="--format")
    from gazeclip_cli.core.model.builder import WeightSources, build_model
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.info import model_info
    from gazeclip_cli.core.model.paper import paper_row

    cfg = load_architecture(architecture)
    info = model_info(build_model(cfg, WeightSources(pretrained=False)))
    if fmt == "json":
        output.print_json(info.as_dict())
        return
    m = 1e6
    rows = [[c.module, c.total / m, c.trainable / m, c.frozen / m] for c in info.modules]
    rows.append(["total", info.total / m, info.trainable / m, (info.total - info.trainable) / m])
    output.print_table(f"{cfg.name}: parameters (M)", ["module", "total", "trainable", "frozen"], rows)
    g = 1e9
    paths = [["test path" + (" (gaze estimator included)" if cfg.uses_gaze else ""), info.test_path_flops]]
    if info.text_flops_per_prompt_set:
        paths.append(["train path (+ LRE, one prompt set)", info.train_path_flops])
    output.print_table(
        f"per image at {cfg.image_size} x {cfg.image_size}",
        ["path", "GFLOPs", "GMACs"],
        [[label, flops / g, flops / 2 / g] for label, flops in paths],
    )
    row = paper_row(cfg.name)
    if row is None:
        output.out.print("The paper reports no row for this architecture.")
        return
    seconds = f", {row.seconds_per_image} s per image on an A100" if row.seconds_per_image else ""
    output.print_table(
        f"ours beside the paper's Table {row.table} ({row.method})",
        ["", "params (M)", "G (paper's FLOPs = MACs)"],
        [["paper", row.params_m, row.gflops], ["ours", info.total / m, info.test_path_flops / 2 / g]],
    )
    output.out.print(
        f"Paper{seconds}. Why ours differs: docs/DECISIONS.md, 'Baselines' (README, 'model-info', for GazeCLIP)."
    )


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info_command)
