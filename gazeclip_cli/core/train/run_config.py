"""Run configuration of `gazeclip train`: the paper's recipe by default, every value overridable.

A run config is a TOML file (see ``configs/train-paper.toml``) whose ``[model]`` table
overrides fields of the architecture (ablations), nested tables included. The effective
config is saved with the run.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from gazeclip_cli.core.config_io import from_dict, read_toml
from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.model.config import (
    ARCHITECTURES_PACKAGE,
    GazeCLIPConfig,
    config_from_toml_data,
    list_architectures,
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
    val_metric: str = "val_closed_set_acc"  # validation metric that picks the best epoch (higher is better)
    use_cached_gaze: bool = True  # read (pitch, yaw) from the preprocessing cache when it has them

    def __post_init__(self) -> None:
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError("amp must be auto, bf16 or off")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ValueError("batch_size >= 1, epochs >= 0 and lr > 0 are required")
        if self.val_metric not in VAL_METRICS:
            raise ValueError(f"val_metric must be one of {VAL_METRICS}")


VAL_METRICS = (
    "val_closed_set_acc",
    "val_open_set_acc",
    "val_detection_auc",
    "val_detection_acc",
    "neg_val_loss",
)


# The expert each validation metric reads (neg_val_loss reads none).
VAL_METRIC_EXPERT = {
    "val_closed_set_acc": "attribution",
    "val_open_set_acc": "attribution",
    "val_detection_auc": "detection",
    "val_detection_acc": "detection",
}


def check_val_metric(run: RunConfig, cfg: GazeCLIPConfig) -> None:
    """The metric that picks the best epoch must come from an expert the model has."""
    expert = VAL_METRIC_EXPERT.get(run.val_metric)
    if expert is not None and expert not in cfg.experts:
        usable = [m for m, e in VAL_METRIC_EXPERT.items() if e in cfg.experts]
        raise ConfigError(
            f"val_metric '{run.val_metric}' needs the {expert} expert, but the model has experts = "
            f"{list(cfg.experts)}; set val_metric to one of {', '.join(usable)}"
        )


def load_run_config(path: str | Path | None, **overrides: Any) -> RunConfig:
    """A run config from TOML (or the defaults), with command-line overrides (None values ignored)."""
    data = read_toml(Path(path)) if path else {}
    cfg = from_dict(RunConfig, data, str(path) if path else "run config")
    given = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(RunConfig)}
    for key in given:
        if key not in known:
            raise ConfigError(f"unknown run setting '{key}'")
    try:
        return replace(cfg, **given) if given else cfg
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"run config: {exc}") from None


def architecture_data(name_or_path: str) -> dict[str, Any]:
    """The raw TOML table of a named architecture or a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return read_toml(path)
    if name_or_path not in list_architectures():
        raise ConfigError(f"unknown architecture '{name_or_path}' (known: {', '.join(list_architectures())})")
    text = (resources.files(ARCHITECTURES_PACKAGE) / f"{name_or_path}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def model_config(run: RunConfig, classes: list[dict[str, str]] | None = None) -> GazeCLIPConfig:
    """The architecture with the run's ``[model]`` overrides and the data's classes."""
    data = _deep_merge(architecture_data(run.architecture), run.model)
    if classes is not None:
        data["classes"] = classes
    return config_from_toml_data(data, f"architecture {run.architecture} with run overrides")
