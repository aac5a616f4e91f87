"""Corruptions on a real photo (scikit-image's astronaut): shape, dtype, identity at 0, monotone damage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gazeclip_cli.core.errors import ConfigError, InputError
from gazeclip_cli.core.evaluate.corruptions import CORRUPTION_NAMES, CORRUPTIONS, SEVERITIES, corrupt

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    # A 128x128 face crop of a real photograph, the kind of input the network sees (smaller, for speed).
    face = skimage_data.astronaut()[0:256, 128:384]
    return cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_the_set_has_ten_corruptions_with_five_levels():
    assert len(CORRUPTION_NAMES) == 10
    assert SEVERITIES == (0, 1, 2, 3, 4, 5)
    for c in CORRUPTIONS.values():
        assert len(c.values) == 5, c.name


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_shape_dtype_and_input_untouched(photo, name):
    before = photo.copy()
    for severity in SEVERITIES:
        out = corrupt(photo, name, severity, seed=3)
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert out is not photo
    np.testing.assert_array_equal(photo, before)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_severity_zero_is_the_identity(photo, name):
    np.testing.assert_array_equal(corrupt(photo, name, 0, seed=3), photo)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_damage_grows_with_severity(photo, name):
    values = [psnr(photo, corrupt(photo, name, s, seed=3)) for s in SEVERITIES]
    assert values[0] == float("inf")
    # strictly decreasing PSNR to the original: every level is stronger than the one before
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), [round(v, 2) for v in values]


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_odd_sizes_keep_shape(name):
    # Not a multiple of the 8-pixel macroblock, smaller than the pixelation cell in places.
    image = np.random.default_rng(0).integers(0, 256, size=(37, 50, 3), dtype=np.uint8)
    for shape_image in (image, image[:5, :7]):
        out = corrupt(shape_image, name, 5, seed=1)
        assert out.shape == shape_image.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", ["gaussian_noise", "block_occlusion"])
def test_random_corruptions_are_deterministic_given_the_seed(photo, name):
    np.testing.assert_array_equal(corrupt(photo, name, 3, seed=7), corrupt(photo, name, 3, seed=7))
    assert not np.array_equal(corrupt(photo, name, 3, seed=7), corrupt(photo, name, 3, seed=8))


def test_known_values(photo):
    # Saturation 0 at severity 5 leaves gray: the three channels agree to rounding.
    gray = corrupt(photo, "saturation", 5).astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 1 and np.abs(gray[..., 1] - gray[..., 2]).max() <= 1
    # Brightness multiplies by 0.35 at severity 5.
    np.testing.assert_array_equal(corrupt(photo, "brightness", 5), np.rint(photo * 0.35).astype(np.uint8))
    # Occlusion at severity 1: 16 gray blocks of side 128 / 32 = 4 cover at most 16 * 16 pixels.
    changed = np.any(corrupt(photo, "block_occlusion", 1, seed=0) != photo, axis=2)
    assert 0 < changed.sum() <= 16 * 16


def test_bad_inputs():
    with pytest.raises(InputError, match="uint8 RGB"):
        corrupt(np.zeros((8, 8, 3), dtype=np.float32), "jpeg", 1)
    with pytest.raises(InputError, match="uint8 RGB"):
        corrupt(np.zeros((8, 8), dtype=np.uint8), "jpeg", 1)
    with pytest.raises(ConfigError, match="did you mean 'gaussian_blur'"):
        corrupt(np.zeros((8, 8, 3), dtype=np.uint8), "gaussian_blurr", 1)
    with pytest.raises(ConfigError, match="0..5"):
        corrupt(np.zeros((8, 8, 3), dtype=np.uint8), "jpeg", 6)


def test_robustness_reads_crops_exactly_as_the_clean_evaluation(tmp_path):
    import torch

    from gazeclip_cli.core.data.cache import CacheDataset, read_cache
    from gazeclip_cli.core.evaluate.runner import CorruptedDataset
    from tests.train.conftest import make_cache

    cache = make_cache(tmp_path / "cache", {"test": 1})  # 64 x 64 crops
    clean = CacheDataset(read_cache(cache).rows, image_size=48, use_cached_gaze=False)  # resized on reading
    severity_zero = CorruptedDataset(clean, CORRUPTION_NAMES[0], 0)
    assert len(clean) > 1
    for i in range(len(clean)):
        assert torch.equal(severity_zero[i]["image"], clean[i]["image"])
        assert torch.equal(severity_zero[i]["patch"], clean[i]["patch"])
