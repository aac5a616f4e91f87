"""The training loop: the paper's recipe, resumable exactly, CPU or CUDA, one process or torchrun.

Exact resume: the data order of epoch e is a permutation drawn from ``seed`` and ``e``
alone, and the network has no dropout, so model + optimiser + scheduler + (epoch, step)
is the whole state; a resumed run reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from gazeclip_cli.core import distributed as D
from gazeclip_cli.core.config_io import dumps_toml, to_dict
from gazeclip_cli.core.data.cache import (
    CacheDataset,
    cache_fingerprint,
    check_cached_gaze,
    classes_of,
    read_cache,
)
from gazeclip_cli.core.devices import autocast_for, resolve_device
from gazeclip_cli.core.errors import ConfigError, DataError, GazeclipError
from gazeclip_cli.core.evaluate.predictions import check_classes, evaluate_rows, predict_dataset
from gazeclip_cli.core.model.builder import WeightSources, build_model
from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.folder import pretrained_keys, save_model_folder
from gazeclip_cli.core.model.loss import gazeclip_loss
from gazeclip_cli.core.train.optim import build_optimizer, clamp_temperature
from gazeclip_cli.core.train.run_config import RunConfig, check_val_metric, model_config

CHECKPOINT = "checkpoint.pt"
NO_CACHED_GAZE = "or train without cached gaze (use_cached_gaze = false in the run config)"
Progress = Callable[[str, dict[str, Any]], None]


class TrainingInterrupted(GazeclipError):
    """Raised when a progress callback asks to stop; the last checkpoint is intact."""


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path
    epochs_done: int
    best_metric: float | None
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The data order of one epoch, from the seed and the epoch number only."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _forward(model, batch, with_text: bool):
    return model(
        batch["image"],
        gaze_patches=batch.get("patch"),
        gaze=batch.get("gaze"),
        attribution_labels=batch["dfa"] if with_text else None,
    )


def trainable_state(model: Detector) -> dict[str, torch.Tensor]:
    """Every tensor that is not a frozen pretrained weight (what a checkpoint must hold)."""
    skip = pretrained_keys(model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k not in skip}


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def train(
    run: RunConfig,
    cache_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    weights: WeightSources | None = None,
    progress: Progress | None = None,
    prepare_model: Callable[[Detector], None] | None = None,
    folder_meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train on the ``train`` split of a preprocessing cache, validate on ``val``, write a model folder.

    Args:
        run: the run configuration.
        cache_dir: a `gazeclip preprocess` output folder.
        out_dir: run folder: ``run.toml``, ``metrics.jsonl``, ``checkpoint.pt``, ``model/``.
        resume: continue from ``out_dir/checkpoint.pt``.
        weights: where pretrained weights come from.
        progress: called with ("step" | "epoch" | "start", info); may raise to stop.
        prepare_model: called on the freshly built model before training (e.g. the demo's fitted
            gaze estimator).
        folder_meta: more fields for the model folder's ``meta.json`` (the demo's ``synthetic``).
    """
    out_dir = Path(out_dir)
    device = resolve_device(run.device)
    ctx = D.init_from_env(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    try:
        return _train(
            run,
            Path(cache_dir),
            out_dir,
            resume,
            weights,
            progress,
            prepare_model,
            device,
            ctx,
            folder_meta or {},
        )
    finally:
        D.shutdown(ctx)


def _train(
    run, cache_dir, out_dir, resume, weights, progress, prepare_model, device, ctx, folder_meta
) -> TrainResult:
    cache = read_cache(cache_dir)
    train_rows, val_rows = cache.split("train"), cache.split("val")
    if not train_rows:
        raise DataError(f"{cache_dir}: the cache has no rows in the 'train' split")
    cfg = model_config(run, classes_of(train_rows))
    check_val_metric(run, cfg)
    if val_rows:
        check_classes([c.name for c in cfg.classes], val_rows, "val")
        group = run.val_metric.removeprefix("val_").split("_", 1)[0]  # seen or unseen
        if not any((r.dfa >= 0) == (group == "seen") for r in val_rows):
            raise ConfigError(
                f"val_metric {run.val_metric}: the val split of {cache_dir} has no {group} sets; "
                f"pick a val_seen_* metric or add {group} rows to the val split"
            )
    ckpt_path = out_dir / CHECKPOINT
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume and ckpt_path.exists():
            raise GazeclipError(
                f"{out_dir}: a run is already there; pass --resume to continue it or pick a new --out"
            )
        (out_dir / "run.toml").write_text(
            dumps_toml({**to_dict(run), "effective_model": to_dict(cfg)}), encoding="utf-8"
        )
    if resume and not ckpt_path.exists():
        raise GazeclipError(f"{ckpt_path}: no checkpoint to resume from")

    model = build_model(cfg, weights, seed=run.seed)
    if prepare_model is not None:
        prepare_model(model)
    model.to(device)
    optimizer = build_optimizer(model, run.lr, run.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=run.lr_step_epochs, gamma=run.lr_gamma)
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_metric": None, "best_epoch": None}
    if resume:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"], strict=False)
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError:  # written before the decay / no-decay parameter groups
            raise GazeclipError(
                f"{ckpt_path}: its optimiser state has other parameter groups (an older gazeclip); "
                "start a new run with another --out"
            ) from None
        scheduler.load_state_dict(ckpt["scheduler"])
        state.update(ckpt["state"])
    net = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ctx.enabled
        else model
    )

    # Cached angles only from the estimator this model runs, and only while it stays frozen: a
    # fine-tuned one must see the patches to train (Table XIII "w/ finetuned GE"), so it is never
    # stood in for by cached angles; another estimator's angles are refused, with the fix.
    cached_gaze = run.use_cached_gaze and cfg.accepts_cached_gaze
    train_set = CacheDataset(train_rows, cfg.image_size, cached_gaze, model.uses_gaze)
    val_set = CacheDataset(val_rows, cfg.image_size, cached_gaze, model.uses_gaze) if val_rows else None
    check_cached_gaze(cache, model.gaze_estimator, train_set, val_set, also=NO_CACHED_GAZE)
    recorded = None if cache.settings is None else cache.settings.to_dict()  # into the model folder
    per_rank_batch = max(1, run.batch_size // ctx.world_size)
    metrics_path = out_dir / "metrics.jsonl"
    with_text = model.uses_text
    history: list[dict[str, Any]] = []
    if progress:
        progress(
            "start",
            {
                "train": len(train_set),
                "val": len(val_set or []),
                "device": str(device),
                "gaze": "cached angles" if train_set.cached else "patches",
                "epochs": run.epochs,
                "state": dict(state),
            },
        )

    def save_checkpoint() -> None:
        if ctx.is_main:
            _atomic_torch_save(
                {
                    "model": trainable_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "state": dict(state),
                },
                ckpt_path,
            )
        D.barrier(ctx)

    for epoch in range(state["epoch"], run.epochs):
        order = D.shard(epoch_order(len(train_set), run.seed, epoch), ctx)
        batches = [order[i : i + per_rank_batch] for i in range(0, len(order), per_rank_batch)]
        if run.max_steps_per_epoch:
            batches = batches[: run.max_steps_per_epoch]
        start = state["step_in_epoch"]
        flat = [i for b in batches[start:] for i in b]
        loader = DataLoader(
            Subset(train_set, flat), batch_size=per_rank_batch, num_workers=run.workers, shuffle=False
        )
        net.train()
        sums = {"loss": 0.0, "attribution": 0.0, "detection": 0.0, "contrastive": 0.0, "n": 0}
        t_epoch = time.perf_counter()
        for step, batch in enumerate(loader, start=start):
            t0 = time.perf_counter()
            batch = _to(batch, device)
            with autocast_for(device, run.amp):
                out = _forward(net, batch, with_text)
            loss = gazeclip_loss(out, batch["dfa"], batch["dfd"], model.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            optimizer.step()
            clamp_temperature(model)
            state["global_step"] += 1
            state["step_in_epoch"] = step + 1
            record = {
                "epoch": epoch,
                "step": state["global_step"],
                "loss": loss.total.item(),
                "attribution": loss.attribution.item() if loss.attribution is not None else None,
                "detection": loss.detection.item() if loss.detection is not None else None,
                "contrastive": loss.contrastive.item() if loss.contrastive is not None else None,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": len(batch["dfa"]) * ctx.world_size / max(time.perf_counter() - t0, 1e-9),
            }
            for k in ("loss", "attribution", "detection", "contrastive"):
                sums[k] += record[k] or 0.0
            sums["n"] += 1
            if ctx.is_main and run.log_every_steps and state["global_step"] % run.log_every_steps == 0:
                _append_jsonl(metrics_path, {"kind": "step", **record})
            if run.checkpoint_every_steps and state["global_step"] % run.checkpoint_every_steps == 0:
                save_checkpoint()
            if progress:
                progress("step", {**record, "step_in_epoch": step + 1, "steps_in_epoch": len(batches)})
        scheduler.step()
        n = max(sums["n"], 1)
        summary = {
            "kind": "epoch",
            "epoch": epoch,
            "train_loss": D.mean_across(sums["loss"] / n, ctx),
            "train_attribution": D.mean_across(sums["attribution"] / n, ctx)
            if "attribution" in cfg.experts
            else None,
            "train_detection": D.mean_across(sums["detection"] / n, ctx)
            if "detection" in cfg.experts
            else None,
            "train_contrastive": D.mean_across(sums["contrastive"] / n, ctx) if with_text else None,
            "lr_next": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t_epoch,
        }
        D.broadcast_buffers(model, ctx)  # the model rank 0 saves is the model every rank validates
        if val_set is not None:
            # evaluate's loop and metrics: the best epoch is chosen by the numbers evaluate prints.
            att, det = predict_dataset(
                model, val_set, device, per_rank_batch, run.workers, ctx=ctx, amp=run.amp
            )
            summary.update({f"val_{k}": v for k, v in evaluate_rows(val_rows, att, det).averages().items()})
        state["epoch"] = epoch + 1
        state["step_in_epoch"] = 0
        metric = summary.get(run.val_metric)
        improved = (
            metric is not None
            and not np.isnan(metric)
            and (state["best_metric"] is None or metric > state["best_metric"])
        )
        if improved or val_set is None:
            state["best_metric"], state["best_epoch"] = metric, epoch
            if ctx.is_main:
                save_model_folder(
                    model,
                    out_dir / "model",
                    trained_on=cache_fingerprint(cache_dir),
                    preprocessing=recorded,
                    extra={
                        "run": to_dict(run),
                        "epoch": epoch,
                        "val": {k: v for k, v in summary.items() if k.startswith("val_")},
                        **folder_meta,
                    },
                )
        summary["best_epoch"] = state["best_epoch"]
        history.append(summary)
        if ctx.is_main:
            _append_jsonl(metrics_path, summary)
        save_checkpoint()
        if progress:
            progress("epoch", summary)
    if ctx.is_main and not (out_dir / "model").exists():
        save_model_folder(
            model,
            out_dir / "model",
            trained_on=cache_fingerprint(cache_dir),
            preprocessing=recorded,
            extra={"run": to_dict(run), "epoch": None, **folder_meta},
        )
    return TrainResult(
        out_dir, out_dir / "model", state["epoch"], state["best_metric"], state["best_epoch"], history
    )


__all__ = ["RunConfig", "TrainResult", "TrainingInterrupted", "asdict", "train"]
