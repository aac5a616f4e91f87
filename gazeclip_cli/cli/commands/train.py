"""`gazeclip train`: train GazeCLIP on a preprocessing cache (CPU or CUDA; torchrun for several GPUs)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gazeclip_cli.cli import output
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
    cache: Path = typer.Argument(..., help="A `gazeclip preprocess` output folder."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder (checkpoint, metrics.jsonl, run.toml, model/)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Run config TOML (e.g. configs/train-paper.toml)."
    ),
    architecture: str | None = typer.Option(
        None, "--architecture", "-a", help="Named architecture or .toml path."
    ),
    epochs: int | None = typer.Option(None, help="Epochs (paper: 30)."),
    batch_size: int | None = typer.Option(None, help="Global batch size (paper: 32)."),
    lr: float | None = typer.Option(None, help="Adam learning rate (paper: 1e-4)."),
    seed: int | None = typer.Option(None, help="Seed for init and data order."),
    workers: int | None = typer.Option(None, help="DataLoader workers."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    amp: str | None = typer.Option(None, help="auto (bf16 on CUDA), bf16 or off."),
    sets: list[str] = typer.Option(
        None, "--set", help="Architecture override KEY=VALUE (ablations), repeatable."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out exactly where it stopped."
    ),
    weights_dir: Path | None = typer.Option(None, "--weights-dir", help="Pretrained weights folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train with the paper's recipe (Adam 1e-4, wd 1e-3, lr/10 every 15 epochs, batch 32); every value overridable.

    Several GPUs: torchrun --nproc_per_node N -m gazeclip_cli train CACHE --out RUN
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
        device=device,
        amp=amp,
    )
    if sets:
        from dataclasses import replace

        run = replace(run, model=_merge(run.model, parse_sets(sets)))
    show = not quiet and output.err.is_terminal
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=output.err,
        disable=not show,
    )
    task = None

    def report(kind: str, info: dict[str, Any]) -> None:
        nonlocal task
        if kind == "start":
            output.info(
                f"training on {info['train']} faces (validation {info['val']}) on {info['device']}, "
                f"epochs {info['state']['epoch']}..{info['epochs'] - 1}"
            )
        elif kind == "step":
            if task is None:
                task = progress.add_task(
                    "train", total=info["steps_in_epoch"], epoch=info["epoch"], loss=0.0, rate=0.0
                )
            progress.update(
                task,
                completed=info["step_in_epoch"],
                total=info["steps_in_epoch"],
                epoch=info["epoch"],
                loss=info["loss"],
                rate=info["images_per_s"],
            )
        elif kind == "epoch":
            val = " ".join(f"{k[4:]} {v:.3f}" for k, v in info.items() if k.startswith("val_") and v == v)
            progress.console.print(
                f"epoch {info['epoch']}: loss {info['train_loss']:.4f} {val} ({info['seconds']:.1f} s)"
                + (" best" if info.get("best_epoch") == info["epoch"] else "")
            )

    with progress:
        result = train(
            run, cache, out, resume=resume, weights=WeightSources(directory=weights_dir), progress=report
        )
    output.out.print(f"model folder: {result.model_dir} (best epoch {result.best_epoch})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
