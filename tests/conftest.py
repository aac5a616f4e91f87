"""Shared fixtures: tiny models on the CPU, deterministic."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True, scope="session")
def _checksum_cache_in_tmp(tmp_path_factory):
    """The weight checksum cache (core/weights/checksums.py) in a temporary folder, not the user's."""
    old = os.environ.get("GAZECLIP_CACHE_DIR")
    os.environ["GAZECLIP_CACHE_DIR"] = str(tmp_path_factory.mktemp("checksum-cache"))
    yield
    if old is None:
        os.environ.pop("GAZECLIP_CACHE_DIR", None)
    else:
        os.environ["GAZECLIP_CACHE_DIR"] = old


@pytest.fixture
def tiny_cfg():
    from gazeclip_cli.core.model.config import load_architecture

    return load_architecture("tiny-test")


@pytest.fixture
def tiny_model(tiny_cfg):
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip

    return build_gazeclip(tiny_cfg, WeightSources(pretrained=False), seed=0)


@pytest.fixture
def tiny_batch(tiny_cfg):
    g = torch.Generator().manual_seed(0)
    size = tiny_cfg.clip.vision.image_size
    images = torch.rand(4, 3, size, size, generator=g)
    patches = torch.rand(4, 3, 224, 224, generator=g)
    dfa = torch.tensor([0, 1, 1, 3])
    dfd = (dfa > 0).long()
    return images, patches, dfa, dfd
