"""Every malformed input to the metrics is one exact, named error; edge shapes that are valid pass.

Messages are compared whole: a user reads them, so a changed word is a changed behaviour.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.evaluate.metrics import SetPredictions, evaluate_sets

ATTR = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
DET = np.array([[0.6, 0.4], [0.3, 0.7]])
LABELS = np.array([0, 1])


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def one_set(attr=ATTR, det=DET, dfa=LABELS, dfd=LABELS, video_ids=None) -> dict[str, SetPredictions]:
    return {"S": SetPredictions(attr, det, dfa, dfd, video_ids)}


@pytest.mark.parametrize(
    "inputs, message",
    [
        (dict(attr=None, det=None), "neither attribution nor detection probabilities given"),
        (
            dict(attr=np.array([0.5, 0.5])),
            "attribution_probs has shape (2,); expected (N, classes) with N >= 1",
        ),
        (
            dict(attr=np.zeros((0, 3)), det=None, dfa=np.zeros(0, int), dfd=np.zeros(0, int)),
            "attribution_probs has shape (0, 3); expected (N, classes) with N >= 1",
        ),
        (dict(attr=np.ones((2, 1))), "attribution_probs has shape (2, 1); expected (N, classes) with N >= 1"),
        # With attribution given, the detection rows must match its N.
        (dict(det=np.array([0.5, 0.5])), "detection_probs has shape (2,); expected (2, 2)"),
        (dict(det=np.tile([0.5, 0.5], (3, 1))), "detection_probs has shape (3, 2); expected (2, 2)"),
        # Detection alone: its own N.
        (
            dict(attr=None, det=np.array([0.5, 0.5]), dfa=np.array([0]), dfd=np.array([0])),
            "detection_probs has shape (2,); expected (N, 2) with N >= 1",
        ),
        (
            dict(attr=None, det=np.zeros((0, 2)), dfa=np.zeros(0, int), dfd=np.zeros(0, int)),
            "detection_probs has shape (0, 2); expected (N, 2) with N >= 1",
        ),
        (
            dict(attr=None, det=np.tile([0.5, 0.5], (3, 2)), dfa=np.zeros(3, int), dfd=np.zeros(3, int)),
            "detection_probs has shape (3, 4); expected (3, 2)",
        ),
        (dict(dfa=np.array([0, 1, 1])), "dfa_labels must be 2 integers, got shape (3,) int64"),
        (dict(dfa=np.array([0.0, 1.0])), "dfa_labels must be 2 integers, got shape (2,) float64"),
        (dict(dfd=np.array([0])), "dfd_labels must be 2 integers, got shape (1,) int64"),
        (dict(dfd=np.array([0.0, 1.0])), "dfd_labels must be 2 integers, got shape (2,) float64"),
        (dict(attr=np.array([[1, 0, 0], [0, 1, 0]])), "attribution_probs must be finite floats"),
        (
            dict(attr=np.array([[np.nan, 0.5, 0.5], [0.1, 0.8, 0.1]])),
            "attribution_probs must be finite floats",
        ),
        (dict(det=np.array([[1, 0], [0, 1]])), "detection_probs must be finite floats"),
        (dict(det=np.array([[np.inf, 0.0], [0.3, 0.7]])), "detection_probs must be finite floats"),
        # Rows inside [0, 1] that do not sum to 1 (logits or scores, not a softmax).
        (
            dict(attr=np.array([[0.2, 0.2, 0.2], [0.1, 0.8, 0.1]])),
            "attribution_probs rows must be softmax probabilities (apply softmax to the logits)",
        ),
        # A negative entry in a row that sums to 1.
        (
            dict(attr=np.array([[-0.1, 0.6, 0.5], [0.1, 0.8, 0.1]])),
            "attribution_probs rows must be softmax probabilities (apply softmax to the logits)",
        ),
        # Above 1 yet within the sum tolerance.
        (
            dict(det=np.array([[1.01, 0.0], [0.3, 0.7]])),
            "detection_probs rows must be softmax probabilities (apply softmax to the logits)",
        ),
        (dict(dfa=np.array([0, 3])), "dfa_labels must lie in -1..2 for 3 attribution classes"),
        (dict(dfa=np.array([-2, 0])), "dfa_labels must lie in -1..2 for 3 attribution classes"),
        (dict(attr=None, dfa=np.array([-2, 0])), "dfa_labels must lie in -1 or above"),
        (dict(dfd=np.array([0, 2])), "dfd_labels must be 0 (real) or 1 (fake)"),
        (
            dict(dfa=np.array([-1, 0])),
            "mixes seen (DFA label >= 0) and unseen (DFA label -1) samples; evaluate each generator as its own set",
        ),
        (dict(video_ids=["a"]), "video_ids has 1 entries; expected 2"),
    ],
)
def test_malformed_set_is_one_exact_error(inputs, message):
    with pytest.raises(DataError, match=exactly(f"test set 'S': {message}")):
        evaluate_sets(one_set(**inputs))


def test_valid_edges_pass():
    # One sample, two classes; probabilities exactly 0 and 1; float32; rows summing to 1 within
    # a bf16 softmax's rounding (1.01, 0.99).
    report = evaluate_sets(
        {
            "one": SetPredictions(
                np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([0]), np.array([1])
            ),
            "f32": SetPredictions(
                np.array([[0.51, 0.5], [0.2, 0.79]], dtype=np.float32),
                np.array([[0.5, 0.5], [0.99, 0.0]], dtype=np.float32),
                np.array([0, 1]),
                np.array([0, 0]),
            ),
        }
    )
    one, f32 = report.set("one"), report.set("f32")
    assert (one.num_samples, one.open_set_acc, one.closed_set_acc, one.detection_acc) == (1, 1.0, 1.0, 1.0)
    # tops 0.51 (class 0, right) and 0.79 (class 1, right), both below tau; detection: tie -> real, real
    assert (f32.open_set_acc, f32.closed_set_acc, f32.detection_acc) == (0.0, 1.0, 1.0)


def test_detection_only_set_of_one_and_of_three_samples():
    # N = 3 differs from the 2 columns, so a shape mix-up of rows and columns shows.
    p_fake = np.array([0.2, 0.9, 0.6])
    report = evaluate_sets(
        {
            "one": SetPredictions(None, np.array([[0.3, 0.7]]), np.array([1]), np.array([1])),
            "three": SetPredictions(
                None, np.stack([1 - p_fake, p_fake], 1), np.full(3, 1), np.array([0, 1, 1])
            ),
        }
    )
    three = report.set("three")
    assert report.heads == ("detection",)
    assert (three.num_samples, three.detection_acc, three.detection_auc) == (3, 1.0, 1.0)
    assert report.set("one").detection_acc == 1.0


def test_video_ids_none_is_a_still_and_stills_are_not_videos():
    det = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    attr = np.tile([0.8, 0.1, 0.1], (3, 1))
    s = evaluate_sets(
        {"S": SetPredictions(attr, det, np.zeros(3, int), np.zeros(3, int), ["v1", None, "v1"])}
    ).set("S")
    assert s.num_videos == 1


def test_sets_with_different_experts_are_one_exact_error():
    sets = {"A": SetPredictions(ATTR, DET, LABELS, LABELS), "B": SetPredictions(None, DET, LABELS, LABELS)}
    message = (
        "test set 'B' has probabilities of ['detection'] but others of ['attribution', 'detection']; "
        "give every set the same experts' outputs"
    )
    with pytest.raises(DataError, match=exactly(message)):
        evaluate_sets(sets)


def test_no_sets_and_tau_bounds():
    with pytest.raises(
        DataError,
        match=exactly("no test sets to evaluate; check that the manifest has rows in the test split"),
    ):
        evaluate_sets({})
    for tau in (0.0, -0.1, 1.0001):
        with pytest.raises(
            ConfigError,
            match=exactly(f"open-set threshold tau = {tau} is outside (0, 1]; the paper uses 0.9"),
        ):
            evaluate_sets(one_set(), tau=tau)
    # tau = 1 is allowed: only a probability of exactly 1 is "known".
    assert evaluate_sets(one_set(), tau=1.0).set("S").open_set_acc == 0.0


def test_video_with_two_labels_names_the_set():
    sets = one_set(dfd=np.array([0, 1]), video_ids=["v", "v"])
    message = (
        "test set 'S': video 'v' has frames labelled both real and fake; give each video one detection label in "
        "the manifest"
    )
    with pytest.raises(DataError, match=exactly(message)):
        evaluate_sets(sets)


@pytest.mark.parametrize(
    "pair_reals, message",
    [
        ("R", "pairing of all-fake sets with reals: no test set named 'R' (did you mean 'RR'?)"),
        ("Zzz", "pairing of all-fake sets with reals: no test set named 'Zzz' (sets: RR, F, M)"),
        ("M", "test set 'M' is named to pair all-fake sets with, but it is not all real (DFD label 0)"),
        (
            {"M": "RR"},
            "test set 'M' is paired with reals, but it is not all fake; only all-fake sets need pairing "
            "(a set with both labels uses its own)",
        ),
    ],
)
def test_bad_pairing_is_one_exact_error(pair_reals, message):
    sets = {
        "RR": SetPredictions(ATTR, DET, np.array([-1, -1]), np.array([0, 0])),
        "F": SetPredictions(ATTR, DET, np.array([-1, -1]), np.array([1, 1])),
        "M": SetPredictions(ATTR, DET, np.array([-1, -1]), np.array([0, 1])),
    }
    with pytest.raises(DataError, match=exactly(message)):
        evaluate_sets(sets, pair_reals=pair_reals)
