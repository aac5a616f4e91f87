"""`gazeclip train`: train GazeCLIP on a preprocessing cache (CPU or CUDA; torchrun for several GPUs)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from gazeclip_cli.cli import options, output
from gazeclip_cli.core.errors import ConfigError


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``--set agpm.layers=2 --set use_gi=false`` -> nested dict of TOML values."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set use_agpm=false")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is a string
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def train_command(
    ctx: typer.Context,
    cache: Path = typer.Argument(..., metavar="CACHE", help="A `gazeclip preprocess` output folder."),
    out: Path = options.out_option("DIR", "Run folder (checkpoint, metrics.jsonl, run.toml, model/)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", metavar="FILE", help="Run config TOML (e.g. configs/train-paper.toml)."
    ),
    architecture: str | None = typer.Option(
        None,
        "--architecture",
        "-a",
        metavar="NAME",
        help="Named architecture (`gazeclip models`) or .toml path.",
    ),
    epochs: int | None = typer.Option(None, "--epochs", metavar="N", help="Epochs (paper: 30)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", metavar="N", help="Global batch size (paper: 32)."
    ),
    lr: float | None = typer.Option(None, "--lr", metavar="LR", help="Adam learning rate (paper: 1e-4)."),
    seed: int | None = typer.Option(None, "--seed", metavar="N", help="Seed for init and data order."),
    workers: int | None = typer.Option(None, "--workers", metavar="N", help="DataLoader workers."),
    device: str = options.device_option(),
    amp: str | None = typer.Option(None, "--amp", metavar="MODE", help="auto (bf16 on CUDA), bf16 or off."),
    sets: list[str] = typer.Option(
        None,
        "--set",
        metavar="KEY=VALUE",
        help="Architecture override (ablations), repeatable.",
        show_default=False,
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out exactly where it stopped."
    ),
    weights_dir: Path | None = options.weights_dir_option(),
    quiet: bool = options.quiet_option("No progress bar."),
) -> None:
    """Train with the paper's recipe (Adam 1e-4, wd 1e-3, lr/10 every 15 epochs, batch 32); every value overridable.

    Several GPUs: torchrun --nproc_per_node N -m gazeclip_cli train CACHE --out RUN.
    A run config's device applies when --device is not given.
    """
    from gazeclip_cli.core.model.builder import WeightSources
    from gazeclip_cli.core.train.run_config import load_run_config
    from gazeclip_cli.core.train.trainer import train

    run = load_run_config(
        config,
        architecture=architecture,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        workers=workers,
        device=device if options.given(ctx, "device") else None,  # else the run config's (auto by default)
        amp=amp,
    )
    if sets:
        from dataclasses import replace

        run = replace(run, model=_merge(run.model, parse_sets(sets)))
    with output.progress("epoch", "steps", quiet=quiet) as bar:
        result = train(
            run,
            cache,
            out,
            resume=resume,
            weights=WeightSources(directory=weights_dir),
            progress=training_reporter(bar),
        )
    output.prose(f"model folder: {result.model_dir} (best epoch {result.best_epoch})")


def training_reporter(bar: output.Bar) -> Callable[[str, dict[str, Any]], None]:
    """The trainer's progress on the bar: a line at the start and per epoch, the bar per step."""
    last_epoch = None

    def report(kind: str, info: dict[str, Any]) -> None:
        nonlocal last_epoch
        if kind == "start":
            last_epoch = info["epochs"] - 1
            bar.print(
                f"training on {info['train']} faces (validation {info['val']}) on {info['device']}, "
                f"epochs {info['state']['epoch']}..{last_epoch}"
            )
        elif kind == "step":
            bar.update(
                info["step_in_epoch"],
                info["steps_in_epoch"],
                label=f"epoch {info['epoch']}/{last_epoch}",
                status=f"loss {info['loss']:.4f}, {info['images_per_s']:,.1f} img/s",
                restart=info["step_in_epoch"] == 1,
            )
        elif kind == "epoch":
            bar.print(epoch_line(info))

    return report


def epoch_line(info: dict[str, Any]) -> str:
    """One epoch's summary: training loss, the validation metrics, time, and whether it is the best."""
    val = ", ".join(f"{k[4:]} {v:.3f}" for k, v in info.items() if k.startswith("val_") and v == v)
    best = " (best)" if info.get("best_epoch") == info["epoch"] else ""
    return f"epoch {info['epoch']}: loss {info['train_loss']:.4f}; {val}; {info['seconds']:.1f} s{best}"


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
