"""Fixtures of the inference tests: tiny model folders, real face photos, generated inputs.

Real photos come from installed packages: scikit-image's astronaut (Eileen Collins) and
matplotlib's Grace Hopper. ``face_photo`` is the astronaut cut down around her face (and
its bounding box in the original), so MTCNN runs in a fraction of a second.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.folder import save_model_folder
from tests.image_bytes import png_declaring


def astronaut_path() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / "astronaut.png"


def grace_hopper_path() -> Path:
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def make_model_folder(path: Path, fake_bias: float | None = None, seed: int = 0) -> Path:
    """A tiny-test model folder; ``fake_bias`` pushes every detection verdict to fake (> 0) or real (< 0)."""
    model = build_gazeclip(load_architecture("tiny-test"), WeightSources(pretrained=False), seed=seed)
    if fake_bias is not None:
        with torch.no_grad():
            model.detection_expert.weight.zero_()
            model.detection_expert.bias.copy_(torch.tensor([0.0, fake_bias]))
    return save_model_folder(model, path)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("model") / "gazeclip")


@pytest.fixture(scope="session")
def face_photo() -> np.ndarray:
    """The astronaut's head and shoulders, 200 x 200 RGB uint8 (a real photo, small enough for a fast MTCNN)."""
    image = np.asarray(Image.open(astronaut_path()).convert("RGB"))
    return np.ascontiguousarray(image[10:210, 125:325])


@pytest.fixture(scope="session")
def hopper_photo() -> np.ndarray:
    """Grace Hopper's head, from matplotlib's photo at half size, 160 x 135 RGB uint8."""
    image = Image.open(grace_hopper_path()).convert("RGB").crop((130, 80, 400, 400))
    return np.asarray(image.resize((135, 160), Image.BILINEAR))


def png_bytes(image: np.ndarray | Image.Image, **kwargs) -> bytes:
    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (3.6 G), with almost no data."""
    return png_declaring(width, height)


def aligned_images(folder: Path, n: int, size: int = 64, seed: int = 0) -> list[Path]:
    """``n`` generated RGB PNGs (smooth random colour fields) for aligned-mode scans."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR))
        path = folder / f"img_{i:04d}.png"
        path.write_bytes(png_bytes(image))
        paths.append(path)
    return paths


def make_unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``path`` unreadable: chmod 000, and as root (who reads anything) deny it in ``os.access`` too."""
    path.chmod(0)
    if os.geteuid() == 0:
        real_access = os.access
        target = os.fsencode(path)

        def access(p, mode, *args, **kwargs):
            if os.fsencode(p) == target and mode & os.R_OK:
                return False
            return real_access(p, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
