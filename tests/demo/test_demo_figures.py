"""The demo's headline and per-class figures, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from gazeclip_cli.core.demo.pipeline import DemoConfig, headline_figures, seen_class_figures
from gazeclip_cli.core.errors import ConfigError
from gazeclip_cli.core.evaluate.metrics import SetPredictions, evaluate_sets


def _set(attribution, p_fake, dfa, dfd):
    att = np.asarray(attribution, float)
    p = np.asarray(p_fake, float)
    n = len(att)
    return SetPredictions(
        att, np.stack([1 - p, p], axis=1), np.full(n, dfa, np.int64), np.full(n, dfd, np.int64)
    )


def test_headline_and_per_class_figures_are_the_hand_computed_ones():
    report = evaluate_sets(
        {
            # Real (class 0): 3 of 4 attributed to class 0; P(fake) 0.1, 0.2, 0.6, 0.3 -> 3 of 4 called real.
            "Real": _set(
                [[0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2]],
                [0.1, 0.2, 0.6, 0.3],
                0,
                0,
            ),
            # A (class 1): 2 of 4 right; P(fake) 0.7, 0.8, 0.4, 0.9 -> 3 of 4 called fake.
            "A": _set(
                [[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.05, 0.9, 0.05]],
                [0.7, 0.8, 0.4, 0.9],
                1,
                1,
            ),
            # B (class 2): both right, both called fake.
            "B": _set([[0.0, 0.1, 0.9], [0.1, 0.2, 0.7]], [0.95, 0.55], 2, 1),
            # Unseen fakes: top probabilities 0.95, 0.5, 0.6, 0.91 -> 2 of 4 below tau 0.9 (rejected).
            "U": _set(
                [[0.95, 0.03, 0.02], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.04, 0.05, 0.91]],
                [0.6, 0.5, 0.9, 0.2],
                -1,
                1,
            ),
            # Unseen reals: tops 0.4 and 0.92 -> 1 of 2 rejected.
            "R2": _set([[0.4, 0.3, 0.3], [0.92, 0.04, 0.04]], [0.3, 0.1], -1, 0),
        },
        tau=0.9,
        pair_reals={"A": "Real", "B": "Real", "U": "R2"},
    )
    figures = seen_class_figures(report)
    assert [(c.name, c.num_samples) for c in figures] == [("Real", 4), ("A", 4), ("B", 2)]
    assert [c.closed_set_acc for c in figures] == [0.75, 0.5, 1.0]
    # Right class with p >= 0.9: Real's [0.9, ...], A's [0.05, 0.9, 0.05], B's [0.0, 0.1, 0.9].
    assert [c.open_set_acc for c in figures] == [0.25, 0.25, 0.5]
    assert [c.detection_acc for c in figures] == [0.75, 0.75, 1.0]
    h = headline_figures(report, num_classes=3)
    assert h["seen_closed_set_acc"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert h["chance_closed_set_acc"] == pytest.approx(1 / 3)
    # Open-set at tau 0.9 (argmax right and top p >= 0.9): Real 1 of 4 ([0.9, ...]), A 1 of 4
    # ([0.05, 0.9, 0.05]), B 1 of 2 ([0.0, 0.1, 0.9]).
    assert h["seen_open_set_acc"] == pytest.approx((1 / 4 + 1 / 4 + 1 / 2) / 3)
    # AUC of A against Real's P(fake) {0.1, 0.2, 0.6, 0.3}: of A's 0.7, 0.8, 0.9 each beats all 4
    # reals, 0.4 beats 3 -> 15 / 16. B's 0.95 beats 4, 0.55 beats 3 -> 7 / 8. Real alone has none.
    assert h["seen_detection_auc"] == pytest.approx((15 / 16 + 7 / 8) / 2)
    assert h["unseen_rejected_as_unknown"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert (h["seen_test_faces"], h["unseen_test_faces"]) == (4 + 4 + 2, 4 + 2)


def test_demo_configs_carry_one_seed_and_a_thread_count():
    for make in (DemoConfig.standard, DemoConfig.quick):
        cfg = make(7, threads=2)
        assert (cfg.seed, cfg.benchmark.seed, cfg.gaze_fit.seed, cfg.threads) == (7, 7, 7, 2)
    assert DemoConfig.standard().threads == 1
    with pytest.raises(ConfigError, match="demo threads 0"):
        DemoConfig(threads=0)
