"""Hand-built test sets whose metrics are worked out by hand in the tests that use them.

Three attribution classes (0 real, 1 and 2 seen generators). Top probability per sample and
P(fake) per sample are listed beside each set; the expected values are derived in the tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from gazeclip_cli.core.evaluate.metrics import SetPredictions


def _attr(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def _det(p_fake: list[float]) -> np.ndarray:
    p = np.array(p_fake, dtype=np.float64)
    return np.stack([1.0 - p, p], axis=1)


def _preds(
    rows: list[list[float]], p_fake: list[float], dfa: int, dfd: int, video_ids=None
) -> SetPredictions:
    n = len(rows)
    return SetPredictions(_attr(rows), _det(p_fake), np.full(n, dfa), np.full(n, dfd), video_ids)


@pytest.fixture
def hand_sets() -> dict[str, SetPredictions]:
    return {
        # seen real: tops 0.95 (class 0), 0.6 (class 0); P(fake) 0.2, 0.7
        "CelebA-HQ": _preds([[0.95, 0.03, 0.02], [0.6, 0.3, 0.1]], [0.2, 0.7], dfa=0, dfd=0),
        # seen generator 1: tops 0.92 (class 1), 0.7 (class 2, wrong); P(fake) 0.9, 0.6
        "GenA": _preds([[0.05, 0.92, 0.03], [0.1, 0.2, 0.7]], [0.9, 0.6], dfa=1, dfd=1),
        # unseen real: tops 0.5, 0.91; P(fake) 0.1, 0.4
        "FFHQ": _preds([[0.5, 0.3, 0.2], [0.91, 0.05, 0.04]], [0.1, 0.4], dfa=-1, dfd=0),
        # unseen fake: tops 0.5, 0.6, 0.95, 0.7; P(fake) 0.8, 0.3, 0.6, 0.9
        "UnseenX": _preds(
            [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.02, 0.03, 0.95], [0.1, 0.2, 0.7]],
            [0.8, 0.3, 0.6, 0.9],
            dfa=-1,
            dfd=1,
        ),
        # unseen fake: tops 0.99, 0.4; P(fake) 0.45, 0.2
        "UnseenY": _preds([[0.99, 0.005, 0.005], [0.3, 0.4, 0.3]], [0.45, 0.2], dfa=-1, dfd=1),
    }
