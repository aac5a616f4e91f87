"""The ten image corruptions of the robustness study (the paper's Fig. 6), severities 0-5.

Each corruption maps a uint8 RGB image (H, W, 3) to a new uint8 RGB image of the same shape;
severity 0 is the identity and 1..5 get stronger. Noise and occlusion draw from
``numpy.random.default_rng(seed)``, so the result is a function of (image, name, severity,
seed); pass a per-sample seed (e.g. from the sample id) to vary the noise across images.

The set follows DeeperForensics-1.0's perturbations and their five levels where they exist
(saturation, contrast, block-wise occlusion, Gaussian noise, Gaussian blur, video compression
at its CRF levels) and adds JPEG, resizing, pixelation and brightness. Pixel-sized parameters
are chosen for the 256x256 face crops the network sees. Table of parameters and the reasons:
``docs/EVALUATION.md``.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from gazeclip_cli.core.errors import ConfigError, InputError

SEVERITIES = (0, 1, 2, 3, 4, 5)
"""Severity 0 is the clean image; 1..5 index :attr:`Corruption.values`."""

_Apply = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One corruption type: its name, what its parameter means, the parameter per severity 1..5."""

    name: str  # identifier used on the command line and in tables, e.g. "jpeg"
    title: str  # human name, e.g. "JPEG compression"
    parameter: str  # what the values are, e.g. "quality"
    values: tuple[float, ...]  # the parameter at severities 1..5, weakest first
    apply: _Apply = field(repr=False, compare=False)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# BT.601 full-range YCbCr, the colour space of JPEG and of most H.264 face videos.
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def _jpeg(img: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c  # orthonormal DCT-II: coefficients = C @ block @ C.T


_DCT4 = _dct_matrix(4)
# H.264 maps the luma QP to a lower chroma QP above 29 (ITU-T H.264 Table 8-15).
_CHROMA_QP = dict(
    zip(
        range(30, 52),
        (29, 30, 31, 32, 32, 33, 34, 34, 35, 35, 36, 36, 37, 37, 37, 38, 38, 38, 39, 39, 39, 39),
        strict=True,
    )
)


def _quantise_plane(plane: np.ndarray, qp: int) -> np.ndarray:
    """4x4 DCT, dead-zone uniform quantisation at H.264's step for ``qp``, inverse DCT."""
    h, w = plane.shape
    step = 0.625 * 2.0 ** (qp / 6.0)  # H.264 quantiser step size: doubles every 6 QP
    blocks = plane.reshape(h // 4, 4, w // 4, 4)  # (H, W) -> (H/4, 4, W/4, 4)
    coef = np.einsum("ki,aibj,lj->akbl", _DCT4, blocks, _DCT4)
    # Rounding offset 1/3 of a step, as the H.264 reference encoder uses for intra blocks.
    levels = np.sign(coef) * np.floor(np.abs(coef) / step + 1.0 / 3.0)
    rec = np.einsum("ki,akbl,lj->aibj", _DCT4, levels * step, _DCT4)
    return rec.reshape(h, w)


def _video_compression(img: np.ndarray, qp: float, rng: np.random.Generator) -> np.ndarray:
    # No H.264 encoder ships with opencv-python-headless (its VideoWriter opens only mp4v and
    # MJPG, without a rate control), so this simulates H.264 intra coding: 4:2:0 chroma, 4x4
    # integer-like DCT, QP-driven dead-zone quantisation. No intra prediction or deblocking.
    h, w = img.shape[:2]
    ph, pw = -h % 8, -w % 8
    padded = np.pad(img.astype(np.float64), ((0, ph), (0, pw), (0, 0)), mode="edge")
    ycc = padded @ _RGB_TO_YCC.T  # chroma centred on 0 (no +128 offset), so the DCT needs none
    hp, wp = ycc.shape[:2]
    luma = _quantise_plane(ycc[..., 0], int(qp))
    qp_chroma = _CHROMA_QP.get(int(qp), int(qp))
    chroma = []
    for c in (1, 2):
        small = ycc[..., c].reshape(hp // 2, 2, wp // 2, 2).mean(axis=(1, 3))  # 4:2:0 subsampling
        small = _quantise_plane(small, qp_chroma)
        chroma.append(cv2.resize(small, (wp, hp), interpolation=cv2.INTER_LINEAR))
    rgb = np.stack([luma, *chroma], axis=-1) @ _YCC_TO_RGB.T
    return _to_uint8(rgb[:h, :w])


def _gaussian_noise(img: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    sigma = np.sqrt(variance) * 255.0  # variance is on the [0, 1] intensity scale
    return _to_uint8(img.astype(np.float64) + rng.normal(0.0, sigma, size=img.shape))


def _gaussian_blur(img: np.ndarray, kernel: float, rng: np.random.Generator) -> np.ndarray:
    k = int(kernel)
    return cv2.GaussianBlur(img, (k, k), k / 6.0)


def _luma(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float64) @ _LUMA)[..., None]  # (H, W, 3) -> (H, W, 1)


def _saturation(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    gray = _luma(img)
    return _to_uint8(gray + factor * (img - gray))


def _contrast(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = float(_luma(img).mean())
    return _to_uint8(mean + factor * (img.astype(np.float64) - mean))


_OCCLUSION_GRAY = 128


def _block_occlusion(img: np.ndarray, count: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    side = max(1, round(min(h, w) / 32))  # 8 pixels on a 256-pixel crop
    # Draw positions for the strongest severity and use a prefix: a stronger severity covers
    # every block of a weaker one (with the same seed), so damage grows monotonically.
    most = int(max(_BLOCK_COUNTS))
    ys = rng.integers(0, h - side + 1, size=most)
    xs = rng.integers(0, w - side + 1, size=most)
    out = img.copy()
    for y, x in zip(ys[: int(count)], xs[: int(count)], strict=True):
        out[y : y + side, x : x + side] = _OCCLUSION_GRAY
    return out


def _resize(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(
        img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _pixelation(img: np.ndarray, cell: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / cell)), max(1, round(h / cell))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _brightness(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    return _to_uint8(img.astype(np.float64) * factor)


_BLOCK_COUNTS = (16, 32, 48, 64, 80)

_CORRUPTIONS = (
    Corruption("jpeg", "JPEG compression", "quality", (80, 60, 40, 20, 10), _jpeg),
    Corruption(
        "video_compression", "Video compression (H.264-like)", "QP", (30, 32, 35, 38, 40), _video_compression
    ),
    Corruption(
        "gaussian_noise", "Gaussian noise", "variance", (0.001, 0.002, 0.005, 0.01, 0.05), _gaussian_noise
    ),
    Corruption("gaussian_blur", "Gaussian blur", "kernel size", (7, 9, 13, 17, 21), _gaussian_blur),
    Corruption("saturation", "Colour saturation", "chroma factor", (0.4, 0.3, 0.2, 0.1, 0.0), _saturation),
    Corruption("contrast", "Colour contrast", "contrast factor", (0.85, 0.725, 0.6, 0.475, 0.35), _contrast),
    Corruption("block_occlusion", "Block-wise occlusion", "blocks", _BLOCK_COUNTS, _block_occlusion),
    Corruption("resize", "Resizing (down-up)", "downscale factor", (2, 3, 4, 5, 6), _resize),
    Corruption("pixelation", "Pixelation", "cell size", (2, 3, 4, 6, 8), _pixelation),
    Corruption("brightness", "Brightness", "intensity factor", (0.85, 0.725, 0.6, 0.475, 0.35), _brightness),
)
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in _CORRUPTIONS}
"""Every corruption by name, in the order tables and plots list them."""

CORRUPTION_NAMES: tuple[str, ...] = tuple(CORRUPTIONS)


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name``; :class:`ConfigError` naming the near miss otherwise."""
    if name not in CORRUPTIONS:
        close = difflib.get_close_matches(name, CORRUPTION_NAMES, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(CORRUPTION_NAMES)}"
        raise ConfigError(f"unknown corruption '{name}' ({hint})")
    return CORRUPTIONS[name]


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply one corruption at one severity.

    Args:
        image: (H, W, 3) uint8 RGB image; left unchanged.
        name: one of :data:`CORRUPTION_NAMES`.
        severity: 0 (identity) to 5 (strongest).
        seed: seeds the noise and the occlusion positions; the same seed gives the same output.

    Returns:
        A new (H, W, 3) uint8 RGB image.

    Raises:
        InputError: ``image`` is not a uint8 RGB array.
        ConfigError: unknown ``name`` or ``severity`` outside 0..5.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InputError(
            f"corruption input must be a uint8 RGB array of shape (H, W, 3), got {shape} {dtype}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"corruption input is empty: shape {image.shape}")
    corruption = get_corruption(name)
    if severity not in SEVERITIES:
        raise ConfigError(f"corruption severity {severity} is outside 0..5 (0 is the clean image)")
    if severity == 0:
        return image.copy()
    value = corruption.values[severity - 1]
    out = corruption.apply(np.ascontiguousarray(image), value, np.random.default_rng(seed))
    return np.ascontiguousarray(out, dtype=np.uint8)
