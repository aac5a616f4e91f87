"""Fixtures for the preprocessing tests: real face photos shipped by installed packages, one detector."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """MTCNN's many small operations run faster on one thread, and far faster on a busy CPU
    (each multi-threaded call waits for a free core); restored after this folder's tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut.png (Eileen Collins): one frontal face, 512 x 512 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    """matplotlib's grace_hopper.jpg: one face with glasses, 512 x 600 RGB."""
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        return np.asarray(Image.open(fh).convert("RGB"))


@pytest.fixture(scope="session")
def detector():
    from gazeclip_cli.core.data.faces import FaceDetector

    return FaceDetector("cpu")


@pytest.fixture(scope="session")
def astronaut_face(detector, astronaut):
    return detector.detect_one(astronaut)[0]


@pytest.fixture(scope="session")
def grace_hopper_face(detector, grace_hopper):
    return detector.detect_one(grace_hopper)[0]
