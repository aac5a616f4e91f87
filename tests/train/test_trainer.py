"""Training on the tiny configuration: the loss falls, resume is exact, the model folder is written."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from gazeclip_cli.core.data.cache import CacheDataset, classes_of, read_cache
from gazeclip_cli.core.errors import DataError, GazeclipError
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.folder import load_model_folder
from gazeclip_cli.core.model.loss import gazeclip_loss
from gazeclip_cli.core.train.run_config import RunConfig, load_run_config, model_config
from gazeclip_cli.core.train.trainer import TrainingInterrupted, epoch_order, train

TINY = dict(architecture="tiny-test", workers=0, device="cpu", batch_size=4, log_every_steps=1)


def test_two_steps_lower_the_loss_on_a_fixed_batch(tiny_cache):
    rows = read_cache(tiny_cache).split("train")
    run = RunConfig(**TINY)
    model = build_gazeclip(model_config(run, classes_of(rows)), WeightSources(pretrained=False))
    ds = CacheDataset(rows, 64)
    batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ("image", "gaze", "dfa", "dfd")}
    opt = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=run.lr, weight_decay=run.weight_decay
    )
    model.train()

    def loss_now():
        out = model(batch["image"], gaze=batch["gaze"], attribution_labels=batch["dfa"])
        return gazeclip_loss(out, batch["dfa"], batch["dfd"], model.logit_scale).total

    losses = []
    for _ in range(2):
        loss = loss_now()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = loss_now().item()
    assert final < losses[0]


def test_training_writes_a_model_folder_metrics_and_the_effective_config(tiny_cache, tmp_path):
    result = train(RunConfig(**TINY, epochs=2), tiny_cache, tmp_path / "run")
    assert result.epochs_done == 2 and result.best_epoch is not None
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    assert [e["epoch"] for e in epochs] == [0, 1] and len(steps) == 2 * 3  # 12 train rows / batch 4
    assert {"val_seen_closed_set_acc", "val_seen_detection_auc", "train_loss"} <= set(epochs[0])
    effective = (tmp_path / "run" / "run.toml").read_text()
    assert 'architecture = "tiny-test"' in effective and "[effective_model]" in effective
    loaded = load_model_folder(result.model_dir)
    assert loaded.class_names == ["Real", "GenA", "GenB"]
    assert loaded.meta["trained_on"].startswith("sha256:")


TIMING_FIELDS = ("images_per_s", "seconds")


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines]


def test_resume_between_checkpoints_gives_the_uninterrupted_metrics_and_weights(tiny_cache, tmp_path):
    # 3 steps per epoch, a checkpoint every 2 steps and at each epoch's end. Stopped after step 3,
    # the last checkpoint is step 2's (mid-epoch 0) and step 3 is lost; after step 5 it is step 4's
    # (mid-epoch 1, after epoch 0's record). Both runs in this process use the same thread count.
    run = RunConfig(**TINY, epochs=2, checkpoint_every_steps=2)
    full = train(run, tiny_cache, tmp_path / "full")
    expected = _records(tmp_path / "full")
    assert [r["step"] for r in expected if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    # The epoch average is the mean of the epoch's step losses (log_every_steps=1 lists them all).
    for epoch in (0, 1):
        losses = [r["loss"] for r in expected if r["kind"] == "step" and r["epoch"] == epoch]
        (summary,) = [r for r in expected if r["kind"] == "epoch" and r["epoch"] == epoch]
        assert summary["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-12)
    a = load_file(str(full.model_dir / "weights.safetensors"))

    for stop_after in (3, 5):

        def stop(kind, info, stop_after=stop_after):
            if kind == "step" and info["step"] == stop_after:
                raise TrainingInterrupted("stopped by the test")

        out = tmp_path / f"stopped-after-{stop_after}"
        with pytest.raises(TrainingInterrupted):
            train(run, tiny_cache, out, progress=stop)
        with pytest.raises(GazeclipError, match="--resume"):
            train(run, tiny_cache, out)  # a run is there: continuing it must be asked for
        before = _records(out)
        assert [r["step"] for r in before if r["kind"] == "step"] == list(range(1, stop_after + 1))
        resumed = train(run, tiny_cache, out, resume=True)
        assert _records(out) == expected  # each step once, the same epoch averages
        assert [h["epoch"] for h in resumed.history] == [0, 1]
        assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
        b = load_file(str(resumed.model_dir / "weights.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_truncate_metrics_drops_what_the_checkpoint_did_not_see(tmp_path):
    from gazeclip_cli.core.train.trainer import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    lines = [
        {"kind": "step", "epoch": 0, "step": 1},
        {"kind": "step", "epoch": 0, "step": 2},
        {"kind": "epoch", "epoch": 0, "train_loss": 1.5},
        {"kind": "step", "epoch": 1, "step": 3},
        {"kind": "step", "epoch": 1, "step": 4},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "st')  # torn last line
    assert truncate_metrics(path, global_step=3, epochs_done=1) == [lines[2]]
    assert [json.loads(x) for x in path.read_text().splitlines()] == lines[:4]
    path.write_text("not json\n" + json.dumps(lines[0]) + "\n")
    with pytest.raises(DataError, match="line 1 is not JSON"):
        truncate_metrics(path, global_step=3, epochs_done=1)


def test_epoch_order_depends_only_on_seed_and_epoch():
    assert epoch_order(10, 0, 3) == epoch_order(10, 0, 3)
    assert epoch_order(10, 0, 3) != epoch_order(10, 0, 4)
    assert sorted(epoch_order(10, 1, 0)) == list(range(10))


def test_run_config_overrides_and_errors(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'architecture = "tiny-test"\nepochs = 3\n[model]\nuse_agpm = false\n[model.agpm]\nlayers = 2\n'
    )
    run = load_run_config(path, lr=5e-4, epochs=None)
    assert (run.epochs, run.lr) == (3, 5e-4)
    cfg = model_config(
        run,
        [
            {"name": "Real", "forgery_type": "Real", "architecture": "Real"},
            {"name": "G", "forgery_type": "FS", "architecture": "GAN"},
        ],
    )
    assert cfg.use_agpm is False and cfg.agpm.layers == 2 and cfg.num_classes == 2
    path.write_text("epoch = 3\n")
    with pytest.raises(GazeclipError, match="did you mean 'epochs'"):
        load_run_config(path)


def test_cache_without_train_rows_is_a_clear_error(tmp_path):
    from tests.train.conftest import make_cache

    cache = make_cache(tmp_path / "c", {"val": 1})
    with pytest.raises(DataError, match="no rows in the 'train' split"):
        train(RunConfig(**TINY), cache, tmp_path / "run")
    with pytest.raises(DataError, match="run `gazeclip preprocess`"):
        train(RunConfig(**TINY), tmp_path / "nowhere", tmp_path / "run2")


def test_cached_angles_are_used_only_when_the_models_estimator_made_them(tiny_cache, tmp_path):
    from gazeclip_cli.core.data.cache import (
        CacheSettings,
        PreprocessSettings,
        estimator_fingerprint,
        write_settings,
    )

    model = build_gazeclip(model_config(RunConfig(**TINY), classes_of(read_cache(tiny_cache).split("train"))))
    ours = estimator_fingerprint(model.gaze_encoder.estimator)  # the tiny model's (seed 0) estimator
    seen = {}

    def start(kind, info):
        if kind == "start":
            seen["gaze"] = info["gaze"]

    run = RunConfig(**TINY, epochs=1, max_steps_per_epoch=1)
    # Another estimator's angles are refused (tests/train/test_cached_gaze_check.py); without
    # cached gaze the model's estimator reads the patches.
    write_settings(tiny_cache, CacheSettings(PreprocessSettings(), "small-cnn", "0" * 16))
    with pytest.raises(DataError, match="come from small-cnn"):
        train(run, tiny_cache, tmp_path / "refused")
    for fingerprint, expected in ((ours, "cached angles"), ("0" * 16, "patches")):
        write_settings(tiny_cache, CacheSettings(PreprocessSettings(), "small-cnn", fingerprint))
        out = tmp_path / expected.replace(" ", "-")
        train(replace(run, use_cached_gaze=expected == "cached angles"), tiny_cache, out, progress=start)
        assert seen["gaze"] == expected
        meta = json.loads((out / "model" / "meta.json").read_text())
        assert meta["preprocessing"]["cache"]["gaze_estimator"] == {
            "name": "small-cnn",
            "fingerprint": fingerprint,
        }
