"""Table XIII "w/ finetuned GE": the estimator trains on the gaze patches, is saved, and evaluation runs it."""

from __future__ import annotations

import pytest
import torch

from gazeclip_cli.core.data.cache import classes_of, read_cache
from gazeclip_cli.core.evaluate.runner import evaluate_model
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.folder import load_model_folder
from gazeclip_cli.core.model.gaze_encoder import GazeEncoder
from gazeclip_cli.core.train.run_config import RunConfig, model_config
from gazeclip_cli.core.train.trainer import train
from tests.train.conftest import make_cache

RUN = RunConfig(
    architecture="tiny-test",
    workers=0,
    device="cpu",
    batch_size=4,
    epochs=1,
    max_steps_per_epoch=1,
    model={"finetune_gaze_estimator": True},
)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    cache = make_cache(root / "cache", {"train": 2, "test": 2})  # the cache has cached gaze angles
    return cache, train(RUN, cache, root / "run"), root


def test_the_estimator_trains_on_the_patches_and_the_folder_keeps_it(finetuned):
    cache, result, _ = finetuned
    rows = read_cache(cache).split("train")
    assert all(r.gaze is not None for r in rows)
    initial = build_gazeclip(
        model_config(RUN, classes_of(rows)), WeightSources(pretrained=False), seed=RUN.seed
    )
    trained = load_model_folder(result.model_dir).model
    before = dict(initial.gaze_encoder.estimator.named_parameters())
    after = dict(trained.gaze_encoder.estimator.named_parameters())
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert unchanged == [], unchanged  # one step moved every estimator weight


def test_evaluation_runs_the_fine_tuned_estimator_on_the_patches(finetuned, monkeypatch):
    cache, result, root = finetuned
    seen = []
    estimate = GazeEncoder.estimate

    def spy(self, patches):
        seen.append(patches.shape)
        return estimate(self, patches)

    monkeypatch.setattr(GazeEncoder, "estimate", spy)
    evaluate_model(result.model_dir, cache, root / "eval", batch_size=16)
    test_rows = read_cache(cache).split("test")
    assert [s[0] for s in seen] == [len(test_rows)] and tuple(seen[0][1:]) == (3, 224, 224)


def test_a_fine_tuned_estimator_refuses_cached_angles_and_gets_gradients(tiny_cfg, tiny_batch):
    from dataclasses import replace

    from gazeclip_cli.core.model.loss import gazeclip_loss

    model = build_gazeclip(replace(tiny_cfg, finetune_gaze_estimator=True), WeightSources(pretrained=False))
    images, patches, dfa, dfd = tiny_batch
    with pytest.raises(ValueError, match="needs the gaze patches"):
        model(images, gaze=torch.zeros(4, 2))
    out = model(images, patches, gaze=torch.zeros(4, 2), attribution_labels=dfa)  # angles ignored
    gazeclip_loss(out, dfa, dfd, model.logit_scale).total.backward()
    grads = [p.grad for p in model.gaze_encoder.estimator.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
