"""Run configuration of `gazeclip train`: the paper's recipe by default, every value overridable.

A run config is a TOML file (see ``configs/train-paper.toml``) whose ``[model]`` table
overrides fields of the architecture (ablations), nested tables included. An architecture
file's own ``[train]`` table replaces the paper's defaults for that architecture; the run
config and the command line override both. The effective config is saved with the run.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gazeclip_cli.core.config_io import from_dict, read_toml
from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.evaluate.metrics import AVERAGE_KEYS, AVERAGED_METRICS, expert_of
from gazeclip_cli.core.model.config import (
    RECIPE_TABLE,
    DetectorConfig,
    architecture_data,
    config_from_toml_data,
    deep_merge,
)


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults are the paper's Section IV-A."""

    architecture: str = "gazeclip-vit-b-32"  # named architecture or .toml path
    model: dict[str, Any] = field(default_factory=dict)  # overrides of architecture fields (ablations)
    epochs: int = 30  # full passes over the training split
    batch_size: int = 32  # global batch (split across processes under torchrun)
    lr: float = 1e-4  # Adam learning rate
    weight_decay: float = 1e-3  # Adam weight decay
    lr_step_epochs: int = 15  # StepLR period in epochs
    lr_gamma: float = 0.1  # StepLR factor (lr / 10)
    seed: int = 0  # model init and data order
    workers: int = 2  # DataLoader worker processes
    device: str = "auto"  # auto (CUDA if present), cpu, cuda, cuda:N
    amp: str = "auto"  # auto (bf16 autocast on CUDA, off on CPU), bf16, off
    checkpoint_every_steps: int = 0  # also checkpoint inside an epoch every N steps (0 = end of epoch only)
    log_every_steps: int = 10  # step records in metrics.jsonl
    max_steps_per_epoch: int = 0  # cap on steps per epoch (0 = the whole split); for smoke runs
    val_metric: str = (
        "val_seen_closed_set_acc"  # picks the best epoch (higher is better); evaluate's averages
    )
    use_cached_gaze: bool = True  # read (pitch, yaw) from the preprocessing cache when it has them

    def __post_init__(self) -> None:
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError("amp must be auto, bf16 or off")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ValueError("batch_size >= 1, epochs >= 0 and lr > 0 are required")
        if self.val_metric not in VAL_METRICS:
            close = difflib.get_close_matches(self.val_metric, VAL_METRICS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(
                f"unknown val_metric '{self.val_metric}'; {hint}use val_<seen|unseen>_<metric>, "
                f"metric one of {', '.join(AVERAGED_METRICS)}"
            )


# The averages evaluate prints, over the val split's seen or unseen sets (core/evaluate/metrics.py).
VAL_METRICS = tuple(f"val_{key}" for key in AVERAGE_KEYS)


def architecture_recipe(architecture: str) -> dict[str, Any]:
    """The ``[train]`` table of an architecture file (run settings that differ from the paper's), checked."""
    recipe = architecture_data(architecture).get(RECIPE_TABLE, {})
    where = f"architecture {architecture}: [{RECIPE_TABLE}]"
    if not isinstance(recipe, dict):
        raise ConfigError(f"{where}: must be a table of run settings")
    for key in ("architecture", "model"):
        if key in recipe:
            raise ConfigError(f"{where}: '{key}' is not a training setting")
    from_dict(RunConfig, recipe, where)  # unknown keys and bad values named here, not in the run config
    return recipe


def _val_expert(metric: str) -> str:
    return expert_of(metric.removeprefix("val_").split("_", 1)[1])  # val_<seen|unseen>_<metric>


def check_val_metric(run: RunConfig, cfg: DetectorConfig) -> None:
    """The metric that picks the best epoch must come from an expert the model has (Fig. 9's ablation)."""
    expert = _val_expert(run.val_metric)
    if expert not in cfg.experts:
        usable = [m for m in VAL_METRICS if _val_expert(m) in cfg.experts and m.startswith("val_seen_")]
        raise ConfigError(
            f"val_metric '{run.val_metric}' needs the {expert} expert, but the model has experts = "
            f"{list(cfg.experts)}; set val_metric to one of {', '.join(usable)}"
        )


def load_run_config(path: str | Path | None, **overrides: Any) -> RunConfig:
    """A run config from TOML (or the defaults), with command-line overrides (None values ignored).

    Precedence, lowest first: the paper's defaults, the architecture's ``[train]`` table, the
    run config file, the command line.
    """
    data = read_toml(Path(path)) if path else {}
    architecture = overrides.get("architecture") or data.get("architecture") or RunConfig.architecture
    recipe = architecture_recipe(str(architecture))
    cfg = from_dict(RunConfig, {**recipe, **data}, str(path) if path else "run config")
    given = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(RunConfig)}
    for key in given:
        if key not in known:
            raise ConfigError(f"unknown run setting '{key}'")
    try:
        return replace(cfg, **given) if given else cfg
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"run config: {exc}") from None


def model_config(run: RunConfig, classes: list[dict[str, str]] | None = None) -> DetectorConfig:
    """The architecture with the run's ``[model]`` overrides and the data's classes."""
    data = deep_merge(architecture_data(run.architecture), run.model)
    data.pop(RECIPE_TABLE, None)
    if classes is not None:
        data["classes"] = classes
    return config_from_toml_data(data, f"architecture {run.architecture} with run overrides")
